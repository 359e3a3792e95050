// bench/nfs: NFS provisioning against nfs-ganesha on loopback.
// - the server's own rate: MKDIR calls driven directly through the
//   nfs-client library, 16 at a time (then RMDIR, untimed);
// - the server's rate on the calls one create makes (SYMLINK, MKDIR, CREATE,
//   WRITE FILE_SYNC, in series per create), driven the same way;
// - the same creates made by bench/noop-csi.ts --nfs, a CSI server that makes
//   those calls and nothing else, through the same CSI client: what any
//   controller built on gRPC and this client reaches on this machine;
// - CreateVolume + DeleteVolume over the CSI socket, N = 1,000, concurrency
//   16, share and block kinds: ops/s and p50/p99 (median of runs);
// - the NFS calls each CreateVolume and DeleteVolume costs, counted by a TCP
//   proxy in front of the NFS port (a separate pass, so it does not slow the
//   timed one), and so the NFS calls per second that creates make, beside
//   the server's MKDIR calls per second.
// With --profile, the first share run's driver runs under node --cpu-prof.
// Rounds interleave the server's rate and the rows; each run restarts
// ganesha on a fresh export filesystem (--pool-fs, as in bench/provision);
// one more row runs on the root filesystem (fresh-fs.ts says why). Run it
// inside a private mount namespace (npm run bench:nfs).
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { csiClients, rpc } from '../cli/client.js';
import { type FileHandle, NfsClient } from '../nfs-client/index.js';
import { DriverProcess } from '../test/helpers/driver-process.js';
import { type FreshFilesystem, quietenFilesystems } from '../test/helpers/fresh-fs.js';
import { Ganesha } from '../test/helpers/ganesha.js';
import { CONCURRENCY, createDeleteRun, medianPhase, type Phase, timedPhase } from './create-delete.js';
import { withNoopCsi } from './noop-process.js';
import { poolFilesystem } from './options.js';
import { cpuProfileSummary, fmt, median, runConcurrently } from './stats.js';

const N = Number(process.env.BENCH_N ?? 1000);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
/** Unmeasured creates per run (see create-delete.ts). */
const WARMUP = 3000;
const EXPORT_FS = poolFilesystem();
/** --profile: the first share run's driver under node --cpu-prof; its busiest functions are printed. */
const PROFILE = process.argv.includes('--profile');

/** Counts ONC RPC records (calls) that clients send through it to `target`. */
async function countingProxy(target: number): Promise<{ port: number; calls: () => number; reset: () => void; close: () => void }> {
  let calls = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(target, '127.0.0.1');
    let pending = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 4) {
        const mark = pending.readUInt32BE(0);
        const size = mark & 0x7fffffff;
        if (pending.length < 4 + size) break;
        if (mark & 0x80000000) calls++;
        pending = pending.subarray(4 + size);
      }
      upstream.write(chunk);
    });
    upstream.pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, calls: () => calls, reset: () => (calls = 0), close: () => server.close() };
}

function request(kind: string, i: number, params: Record<string, string>) {
  return {
    name: `pvc-nfsbench-${kind}-${i}`,
    capacity_range: { required_bytes: 1 << 30 },
    volume_capabilities: [{ mount: { fs_type: kind === 'block' ? 'ext4' : '' }, access_mode: { mode: 'SINGLE_NODE_WRITER' } }],
    parameters: { ...params, kind },
  };
}

/** The export's filesystem for each run: fresh, or the root filesystem as it is (see fresh-fs.ts). */
class Exports {
  private current: FreshFilesystem | undefined;
  constructor(private readonly g: Ganesha) {}

  /** Restarts ganesha on a new fresh filesystem, or on the root filesystem. */
  async next(fresh: boolean): Promise<void> {
    await this.g.stopGanesha();
    await this.current?.remove();
    this.current = undefined;
    await quietenFilesystems(!fresh);
    if (fresh) this.current = await EXPORT_FS.make(this.g.exportDir);
    await this.g.startGanesha();
  }

  async close(): Promise<void> {
    await this.g.stopGanesha();
    await this.current?.remove();
  }
}

/**
 * One run (see create-delete.ts) on a new driver (all-in-one: the central
 * controller would want the API server's CSINode objects). With a profile
 * directory the driver runs under node --cpu-prof and its busiest functions
 * are returned too.
 */
async function provisionRun(
  kind: string,
  params: Record<string, string>,
  profileDir?: string,
): Promise<{ create: Phase; del: Phase; profile?: string[] }> {
  const d = await DriverProcess.start({
    mode: 'all',
    ...(profileDir ? { nodeOptions: ['--cpu-prof', '--cpu-prof-dir', profileDir] } : {}),
  });
  try {
    const run = await createDeleteRun({ controller: d.clients.controller, n: N, warmup: WARMUP, request: (i) => request(kind, i, params) });
    if (!profileDir) return run;
    await d.stop('SIGTERM'); // a clean exit writes the profile
    const [file] = await fs.readdir(profileDir);
    return { ...run, profile: cpuProfileSummary(path.join(profileDir, file as string)) };
  } finally {
    await d.cleanup();
    if (profileDir) await fs.rm(profileDir, { recursive: true, force: true });
  }
}

/** NFS calls per CreateVolume and DeleteVolume, counted by a proxy in front of the NFS port. */
async function callsPerOperation(kind: string, params: Record<string, string>): Promise<{ perCreate: number; perDelete: number }> {
  const proxy = await countingProxy(2049);
  const d = await DriverProcess.start({ mode: 'all' });
  try {
    const counted = { ...params, nfsPort: String(proxy.port) };
    const M = 100;
    const ids: string[] = [];
    const warm = await rpc<{ volume: { volume_id: string } }>(d.clients.controller, 'CreateVolume', request(kind, 900_000, counted)); // connects the pool
    proxy.reset();
    for (let i = 0; i < M; i++)
      ids.push(
        (await rpc<{ volume: { volume_id: string } }>(d.clients.controller, 'CreateVolume', request(kind, 500_000 + i, counted))).volume
          .volume_id,
      );
    const perCreate = proxy.calls() / M;
    proxy.reset();
    for (const id of ids) await rpc(d.clients.controller, 'DeleteVolume', { volume_id: id });
    const perDelete = proxy.calls() / M;
    await rpc(d.clients.controller, 'DeleteVolume', { volume_id: warm.volume.volume_id });
    return { perCreate, perDelete };
  } finally {
    await d.cleanup();
    proxy.close();
  }
}

/** The server's MKDIR calls per second through nfs-client, 16 at a time; the directories are removed afterwards. */
async function mkdirRate(exportPath: string): Promise<number> {
  const client = await NfsClient.connect({ host: '127.0.0.1', exportPath });
  try {
    const t0 = process.hrtime.bigint();
    await runConcurrently(N, CONCURRENCY, async (i) => {
      await client.nfs.mkdir(client.root, `ceiling-${i}`, { mode: 0o755 });
    });
    const rate = N / (Number(process.hrtime.bigint() - t0) / 1e9);
    await runConcurrently(N, CONCURRENCY, async (i) => {
      await client.nfs.rmdir(client.root, `ceiling-${i}`);
    });
    return rate;
  } finally {
    client.close();
  }
}

/** The server's rate on a create's NFS calls (a claim SYMLINK, MKDIR, CREATE and FILE_SYNC WRITE of a record), in creates/s. */
async function createCallsRate(exportPath: string): Promise<number> {
  const client = await NfsClient.connect({ host: '127.0.0.1', exportPath });
  try {
    const [claims, volumes, records] = (await Promise.all(['claims', 'volumes', 'records'].map((d) => client.mkdirp(d, 0o700)))) as [
      FileHandle,
      FileHandle,
      FileHandle,
    ];
    const record = JSON.stringify({ version: 1, name: 'x'.repeat(40), parameters: { kind: 'share' }, attachments: {} });
    const phase = await timedPhase(N, async (i) => {
      await client.nfs.symlink(claims, `c${i}`, `v${i}`);
      await client.nfs.mkdir(volumes, `v${i}`, { mode: 0o777 });
      await client.writeFileAt(records, `v${i}.json`, record, { mode: 0o600, exclusive: true });
    });
    return phase.rate;
  } finally {
    client.close();
  }
}

/** The same creates through bench/noop-csi.ts --nfs and the bench's CSI client (same warm-up as berth's runs). */
async function minimalControllerRun(exportPath: string): Promise<Phase> {
  return withNoopCsi(['--nfs', '127.0.0.1', exportPath], async (socket) => {
    const clients = csiClients(socket);
    try {
      return (await createDeleteRun({ controller: clients.controller, n: N, warmup: WARMUP, request: (i) => request('share', i, {}) }))
        .create;
    } finally {
      clients.close();
    }
  });
}

async function main() {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-nfsbench-'));
  const g = new Ganesha(dir);
  await g.start();
  const exports = new Exports(g);
  try {
    console.log(
      `bench/nfs: nfs-ganesha on loopback, N = ${N}, concurrency ${CONCURRENCY}, median of ${RUNS} interleaved rounds (${WARMUP} unmeasured warm-up creates per run)`,
    );
    console.log(`export fs: fresh = ${EXPORT_FS.description}, loop-mounted, per run; root = this machine's /, after the earlier runs`);
    const params = { pool: 'nfs', server: '127.0.0.1', share: g.exportPath };
    const rows: Array<[string, boolean]> = [
      ['share', true],
      ['block', true],
      ['share', false],
    ];
    let profile: string[] = [];
    const mkdirs: number[] = [];
    const createCalls: number[] = [];
    const minimal: Phase[] = [];
    const runs = rows.map(() => [] as Array<{ create: Phase; del: Phase }>);
    for (let round = 0; round < RUNS; round++) {
      await exports.next(true);
      mkdirs.push(await mkdirRate(g.exportPath));
      await exports.next(true);
      createCalls.push(await createCallsRate(g.exportPath));
      await exports.next(true);
      minimal.push(await minimalControllerRun(g.exportPath));
      for (const [i, [kind, fresh]] of rows.entries()) {
        await exports.next(fresh);
        const profileDir = PROFILE && round === 0 && i === 0 ? await fs.mkdtemp(path.join(os.tmpdir(), 'berth-profile-')) : undefined;
        const run = await provisionRun(kind, params, profileDir);
        profile = run.profile ?? profile;
        runs[i]?.push(run);
      }
    }
    const serverRate = median(mkdirs);
    const createCallRate = median(createCalls);
    const minimalRate = medianPhase(minimal).rate;
    const rounds = (rates: number[]) => rates.map((r) => fmt(r, 0)).join(', ');
    console.log(`server (fresh fs): MKDIR through nfs-client   ${fmt(serverRate, 0)} calls/s (rounds: ${rounds(mkdirs)})`);
    console.log(
      `server (fresh fs): a create's 4 calls through nfs-client   ${fmt(createCallRate, 0)} creates/s = ${fmt(createCallRate * 4, 0)} calls/s, ${fmt((createCallRate * 4) / serverRate, 2)}x MKDIR's (rounds: ${rounds(createCalls)})`,
    );
    console.log(
      `minimal CSI controller (noop-csi --nfs: those 4 calls per CreateVolume, nothing else; same client)   ${fmt(minimalRate, 0)} creates/s = ${fmt(minimalRate * 4, 0)} calls/s, ${fmt((minimalRate * 4) / serverRate, 2)}x MKDIR's (rounds: ${rounds(minimal.map((p) => p.rate))})`,
    );
    console.log(
      'kind   fs     create/s  p50 ms  p99 ms   delete/s  p50 ms  p99 ms   NFS calls/create  NFS calls/delete   create/s per run',
    );
    const ratios: string[] = [];
    for (const [i, [kind, fresh]] of rows.entries()) {
      await exports.next(fresh);
      const { perCreate, perDelete } = await callsPerOperation(kind, params);
      const c = medianPhase((runs[i] ?? []).map((r) => r.create));
      const del = medianPhase((runs[i] ?? []).map((r) => r.del));
      console.log(
        `${kind.padEnd(6)} ${(fresh ? 'fresh' : 'root').padEnd(5)} ${fmt(c.rate, 0).padStart(8)}  ${fmt(c.p50, 2).padStart(6)}  ${fmt(c.p99, 2).padStart(6)}   ${fmt(del.rate, 0).padStart(8)}  ${fmt(del.p50, 2).padStart(6)}  ${fmt(del.p99, 2).padStart(6)}   ${fmt(perCreate, 1).padStart(16)}  ${fmt(perDelete, 1).padStart(16)}   ${(runs[i] ?? []).map((r) => fmt(r.create.rate, 0)).join(', ')}`,
      );
      if (fresh)
        ratios.push(
          `${kind}: ${fmt(c.rate * perCreate, 0)} NFS calls/s while creating / server MKDIR ${fmt(serverRate, 0)} calls/s = ${fmt((c.rate * perCreate) / serverRate, 2)}; creates / the server's create-call rate ${fmt(c.rate / createCallRate, 2)}; / the minimal controller's ${fmt(c.rate / minimalRate, 2)}`,
        );
    }
    for (const line of ratios) console.log(line);
    if (profile.length) console.log(`the driver's busiest functions, share creates and deletes (first run):\n  ${profile.join('\n  ')}`);
  } finally {
    await exports.close();
    await g.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
