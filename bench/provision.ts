// bench/provision: CreateVolume then DeleteVolume over the CSI socket on a
// local pool, concurrency 16, N = 1,000 and N = 10,000: shares, thick block
// images (1 MiB raw, reserved with fallocate: 13,000 of them fit the 16 GiB
// test filesystem) and thin ones (1 GiB, sparse; the overprovisioning limit
// raised so that they all fit).
// Prints ops/s and p50/p99 latency (median over runs), the N=10,000/N=1,000
// rate ratio, and the driver's idle and peak RSS. Each run's pool is on a
// fresh filesystem (--pool-fs: ext4 with a journal, what a node's disk has,
// by default; xfs; or ext4-nojournal, as this machine's /); one more row
// runs on the root filesystem (fresh-fs.ts says why).
//
// In the same run, round by round:
// - the durable-create limit on a fresh filesystem of the same kind: what
//   a create must do at least (mkdir, write the record, fsync it, link it
//   into place, one grouped directory fsync), 16 at a time, in this process,
//   no gRPC;
// - a CSI server that does nothing (bench/noop-csi.ts, its own process),
//   driven by the same client: what the gRPC calls alone cost here;
// - with --metrics, berth serving --metrics-address with /metrics scraped
//   every second (BENCH_SCRAPE_MS) during the run: what metrics cost on the
//   create path;
// - with --compare unix:///path, another CSI driver's socket driven by the
//   same client with the same requests (its data where it keeps it: start
//   it on a fresh filesystem of the same kind for a fair row).
// Run it inside a private mount namespace (npm run bench:provision).
import { linkSync, mkdirSync, unlinkSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { csiClients } from '../cli/client.js';
import { createUnsynced, DirectorySync, makeThenSync, writeContent } from '../host/durable.js';
import { DriverProcess } from '../test/helpers/driver-process.js';
import { quietenFilesystems } from '../test/helpers/fresh-fs.js';
import { freePort } from '../test/helpers/prometheus.js';
import { CONCURRENCY, createDeleteRun, medianPhase, type Phase, timedPhase } from './create-delete.js';
import { withNoopCsi } from './noop-process.js';
import { option, poolFilesystem } from './options.js';
import { cpuProfileSummary, fmt, memoryOf, runConcurrently } from './stats.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SIZES = (process.env.BENCH_SIZES ?? '1000,10000').split(',').map(Number);
const KINDS = (process.env.BENCH_KINDS ?? 'share,block,block-thin').split(',');
/** Unmeasured creates per run (see create-delete.ts); they stay in the pool while the measured creates run. */
const WARMUP = 3000;

const COMPARE = option('compare');
/** --profile: the first run of each row runs the driver under node --cpu-prof; its busiest functions are printed. */
const PROFILE = process.argv.includes('--profile');
/** --metrics: each run also drives a berth serving --metrics-address, scraped every second while it creates. */
const METRICS = process.argv.includes('--metrics');
const POOL_FS = poolFilesystem();
const freshFs = POOL_FS.make;
const FS_DESCRIPTION = POOL_FS.description;

function request(kind: string, i: number) {
  const mode = { access_mode: { mode: 'SINGLE_NODE_WRITER' } };
  if (kind === 'block')
    return {
      name: `pvc-bench-${i}`,
      capacity_range: { required_bytes: 1 << 20 },
      volume_capabilities: [{ block: {}, ...mode }],
      parameters: { kind },
    };
  const cap = { mount: { fs_type: kind === 'block-thin' ? 'ext4' : '' }, ...mode };
  const parameters = kind === 'block-thin' ? { kind: 'block', provisioning: 'thin' } : { kind };
  return { name: `pvc-bench-${i}`, capacity_range: { required_bytes: 1 << 30 }, volume_capabilities: [cap], parameters };
}

/** Deleted volumes are freed in the background: let that finish before timing deletes. */
async function trashEmptied(poolDir: string): Promise<void> {
  while ((await fs.readdir(path.join(poolDir, '.trash'))).length > 0) await new Promise((r) => setTimeout(r, 50));
}

type PoolFs = 'fresh' | 'root';

/** One row: `RUNS` runs of WARMUP + n creates and deletes, each on a new driver. */
async function measure(kind: string, n: number, poolFs: PoolFs): Promise<number> {
  const creates: Phase[] = [];
  const deletes: Phase[] = [];
  const otherCreates: Phase[] = [];
  const limits: Phase[] = [];
  const noops: Phase[] = [];
  const withMetrics: Phase[] = [];
  let profile: string[] = [];
  let idle = 0;
  let peak = 0;
  for (let run = 0; run < RUNS; run++) {
    // Half the runs measure with metrics first: neither side always follows the other's writeback.
    if (poolFs === 'fresh' && METRICS && run % 2 === 1) withMetrics.push(await metricsRound(kind, n));
    await quietenFilesystems(poolFs === 'root');
    const fresh = poolFs === 'fresh' ? await freshFs() : undefined;
    const profileDir = PROFILE && run === 0 ? await fs.mkdtemp(path.join(os.tmpdir(), 'berth-profile-')) : undefined;
    const d = await DriverProcess.start({
      ...(fresh ? { poolDir: path.join(fresh.mountpoint, 'pool') } : {}),
      extraArgs: ['--thin-overprovision', '1000'],
      ...(profileDir ? { nodeOptions: ['--cpu-prof', '--cpu-prof-dir', profileDir] } : {}),
    });
    try {
      await new Promise((r) => setTimeout(r, 300));
      idle = Math.max(idle, memoryOf(d.pid).rssMiB);
      const run = await createDeleteRun({
        controller: d.clients.controller,
        n,
        warmup: WARMUP,
        request: (i) => request(kind, i),
        beforeDeletes: () => trashEmptied(d.poolDir),
      });
      creates.push(run.create);
      deletes.push(run.del);
      peak = Math.max(peak, memoryOf(d.pid).peakMiB);
      if (profileDir) {
        await d.stop('SIGTERM'); // a clean exit writes the profile
        const [file] = await fs.readdir(profileDir);
        profile = cpuProfileSummary(path.join(profileDir, file as string));
      }
    } finally {
      await d.cleanup();
      await fresh?.remove();
      if (profileDir) await fs.rm(profileDir, { recursive: true, force: true });
    }
    if (poolFs === 'fresh' && COMPARE) otherCreates.push(await compareRound(COMPARE, kind, n, run));
    if (poolFs === 'fresh' && METRICS && run % 2 === 0) withMetrics.push(await metricsRound(kind, n));
    if (poolFs === 'fresh' && kind === 'share') {
      limits.push(await durableCreateLimit(n));
      noops.push(await noopRound(kind, n, run));
    }
  }
  const c = medianPhase(creates);
  const del = medianPhase(deletes);
  console.log(
    `${kind.padEnd(6)} ${String(n).padEnd(6)} ${poolFs.padEnd(5)} ${fmt(c.rate, 0).padStart(8)}  ${fmt(c.p50, 2).padStart(6)}  ${fmt(c.p99, 2).padStart(6)}   ${fmt(del.rate, 0).padStart(8)}  ${fmt(del.p50, 2).padStart(6)}  ${fmt(del.p99, 2).padStart(6)}   ${fmt(idle).padStart(5)} MB  ${fmt(peak).padStart(5)} MB   ${creates.map((p) => fmt(p.rate, 0)).join(', ')}`,
  );
  if (profile.length) console.log(`  driver CPU by function, first run (self time, idle left out):\n    ${profile.join('\n    ')}`);
  if (otherCreates.length) {
    const o = medianPhase(otherCreates);
    console.log(
      `${kind.padEnd(6)} ${String(n).padEnd(6)} --compare ${fmt(o.rate, 0).padStart(5)}  ${fmt(o.p50, 2).padStart(6)}  ${fmt(o.p99, 2).padStart(6)}   (${COMPARE}; runs: ${otherCreates.map((p) => fmt(p.rate, 0)).join(', ')})`,
    );
    console.log(`  berth / --compare create rate = ${fmt(c.rate / o.rate, 2)}`);
  }
  if (withMetrics.length) {
    const m = medianPhase(withMetrics);
    console.log(
      `${kind.padEnd(6)} ${String(n).padEnd(6)} metrics ${fmt(m.rate, 0).padStart(7)}  ${fmt(m.p50, 2).padStart(6)}  ${fmt(m.p99, 2).padStart(6)}   (--metrics-address, /metrics scraped every ${SCRAPE_MS / 1000} s; runs: ${withMetrics.map((p) => fmt(p.rate, 0)).join(', ')})`,
    );
    console.log(`  with metrics / without, create rate = ${fmt(m.rate / c.rate, 2)}`);
  }
  if (limits.length) {
    const l = medianPhase(limits);
    console.log(
      `${kind.padEnd(6)} ${String(n).padEnd(6)} limit ${fmt(l.rate, 0).padStart(9)}  (durable creates in-process, runs: ${limits.map((p) => fmt(p.rate, 0)).join(', ')})`,
    );
    console.log(`  berth / durable-create limit = ${fmt(c.rate / l.rate, 2)}`);
  }
  if (noops.length) {
    const o = medianPhase(noops);
    console.log(
      `${kind.padEnd(6)} ${String(n).padEnd(6)} no-op ${fmt(o.rate, 0).padStart(9)}  ${fmt(o.p50, 2).padStart(6)}  ${fmt(o.p99, 2).padStart(6)}   (a CSI server that answers at once, same client; runs: ${noops.map((p) => fmt(p.rate, 0)).join(', ')})`,
    );
    console.log(`  berth / no-op server = ${fmt(c.rate / o.rate, 2)}`);
  }
  return c.rate;
}

/** How often the metrics round scrapes /metrics (BENCH_SCRAPE_MS; Prometheus' default is 60 s, 15 s a common choice). */
const SCRAPE_MS = Number(process.env.BENCH_SCRAPE_MS ?? 1000);

/** One round of berth with metrics served and scraped every SCRAPE_MS, on a fresh filesystem of the same kind. */
async function metricsRound(kind: string, n: number): Promise<Phase> {
  await quietenFilesystems(false);
  const fresh = await freshFs();
  const address = `127.0.0.1:${await freePort()}`;
  const d = await DriverProcess.start({
    poolDir: path.join(fresh.mountpoint, 'pool'),
    extraArgs: ['--thin-overprovision', '1000', '--metrics-address', address],
  });
  let scrapes = 0;
  const scraper = setInterval(() => {
    void fetch(`http://${address}/metrics`).then(
      (r) => r.text().then(() => scrapes++),
      () => undefined,
    );
  }, SCRAPE_MS);
  try {
    await new Promise((r) => setTimeout(r, 300));
    const run = await createDeleteRun({
      controller: d.clients.controller,
      n,
      warmup: WARMUP,
      request: (i) => request(kind, i),
      beforeDeletes: () => trashEmptied(d.poolDir),
    });
    if (scrapes === 0) throw new Error('no scrape of /metrics succeeded during the run');
    return run.create;
  } finally {
    clearInterval(scraper);
    await d.cleanup();
    await fresh.remove();
  }
}

/** One round against another CSI driver: the same client, requests and warm-up; share as a mount volume, block as raw block. */
async function compareRound(endpoint: string, kind: string, n: number, run: number): Promise<Phase> {
  const clients = csiClients(endpoint.replace(/^unix:\/\//, ''));
  try {
    const r = await createDeleteRun({
      controller: clients.controller,
      n,
      warmup: WARMUP,
      request: (i) => {
        const { volume_capabilities, capacity_range } = request(kind, i) as { volume_capabilities: object[]; capacity_range: object };
        return { name: `pvc-cmp-${run}-${i}`, capacity_range, volume_capabilities, parameters: {} };
      },
    });
    return r.create;
  } finally {
    clients.close();
  }
}

/** One round against bench/noop-csi.ts in its own process: what the gRPC calls cost without any work. */
function noopRound(kind: string, n: number, run: number): Promise<Phase> {
  return withNoopCsi([], (socket) => compareRound(`unix://${socket}`, kind, n, run));
}

/**
 * What a durable create must do at least, on a fresh filesystem of the pool's
 * kind: mkdir the volume, write its record under a temporary name, fsync it,
 * link it into place, and one directory fsync shared by the creates in flight.
 */
async function durableCreateLimit(n: number): Promise<Phase> {
  const fresh = await freshFs();
  try {
    const dir = path.join(fresh.mountpoint, 'limit');
    await fs.mkdir(path.join(dir, 'tmp'), { recursive: true });
    const sync = new DirectorySync(dir);
    const record = JSON.stringify({ version: 1, name: 'x'.repeat(40), parameters: { kind: 'share' }, attachments: {} });
    const create = async (i: number) => {
      const tmp = path.join(dir, 'tmp', `r${i}`);
      await makeThenSync((keep) => {
        mkdirSync(path.join(dir, `v${i}`), { mode: 0o777 });
        keep(createUnsynced(tmp, writeContent(record)));
      });
      linkSync(tmp, path.join(dir, `v${i}.json`));
      unlinkSync(tmp);
      await sync.sync();
    };
    await runConcurrently(WARMUP, CONCURRENCY, (i) => create(n + i));
    return await timedPhase(n, create);
  } finally {
    await fresh.remove();
  }
}

async function main() {
  console.log(
    `bench/provision: local pool, concurrency ${CONCURRENCY}, median of ${RUNS} runs, ${WARMUP} unmeasured warm-up creates per run`,
  );
  console.log(`pool fs: fresh = ${FS_DESCRIPTION}, loop-mounted, per run; root = this machine's /, after the earlier runs`);
  console.log('kind   N      fs     create/s  p50 ms  p99 ms   delete/s  p50 ms  p99 ms   idle RSS  peak RSS   create/s per run');
  const rates = new Map<string, number>();
  for (const kind of KINDS) {
    for (const n of SIZES) rates.set(`${kind}/${n}`, await measure(kind, n, 'fresh'));
  }
  if (KINDS.includes('share')) await measure('share', SIZES[0] as number, 'root');
  if (SIZES.length >= 2) {
    const [small, large] = [SIZES[0], SIZES[SIZES.length - 1]];
    for (const kind of KINDS) {
      const ratio = (rates.get(`${kind}/${large}`) ?? NaN) / (rates.get(`${kind}/${small}`) ?? NaN);
      console.log(`${kind}: create rate at N=${large} / N=${small} (fresh fs) = ${fmt(ratio, 2)}`);
    }
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
