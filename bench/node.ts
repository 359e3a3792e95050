// bench/node: the node path, step by step.
// - block volumes with ext4 and with xfs (1 GiB): the first stage (which
//   formats) apart, then p50 of each step (stage, publish, unpublish,
//   unstage) over the cycles;
// - the share and raw block cycles step by step and, with --compare
//   unix:///path, the same cycles on another CSI driver's socket,
//   interleaved cycle by cycle, with the ratios;
// - the processes each step starts (strace -f on execve, one more cycle,
//   when strace is installed), for berth and the --compare driver;
// - 1 GiB sequential write and read with direct I/O through a published
//   volume and, in the same run, in the pool's own directory;
// - the driver's peak RSS; with --profile, where its CPU went.
// The pool is a fresh filesystem on a loop device (--pool-fs, as in
// bench/provision). Run inside a private mount namespace (npm run bench:node does).
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type CsiClients, csiClients, rpc } from '../cli/client.js';
import { DriverProcess } from '../test/helpers/driver-process.js';
import { option, poolFilesystem } from './options.js';
import { cpuProfileSummary, fmt, median, memoryOf } from './stats.js';

const exec = promisify(execFile);
const GiB = 1024 ** 3;
const CYCLES = Number(process.env.BENCH_CYCLES ?? 20);
const IO_RUNS = Number(process.env.BENCH_IO_RUNS ?? 3);

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

const STEPS = ['NodeStageVolume', 'NodePublishVolume', 'NodeUnpublishVolume', 'NodeUnstageVolume'] as const;
type Step = (typeof STEPS)[number];
const short = (s: Step) => s.replace('Node', '').replace('Volume', '');
/** The steps that make a mount. */
const MOUNTING: Step[] = ['NodeStageVolume', 'NodePublishVolume'];

interface Driver {
  name: string;
  clients: CsiClients;
  stages: boolean;
  pid?: number;
}

interface Vol {
  drv: Driver;
  id: string;
  cap: object;
  staging: string;
  target: string;
}

/** One stage, publish, unpublish, unstage cycle; the milliseconds of each step. `around` wraps each step. */
async function cycle(v: Vol, around = (_s: Step, f: () => Promise<void>) => f()): Promise<Partial<Record<Step, number>>> {
  const times: Partial<Record<Step, number>> = {};
  const step = (method: Step, req: object) =>
    around(method, async () => {
      const t0 = process.hrtime.bigint();
      await rpc(v.drv.clients.node, method, req);
      times[method] = ms(t0);
    });
  const stages = v.drv.stages;
  if (stages) await step('NodeStageVolume', { volume_id: v.id, staging_target_path: v.staging, volume_capability: v.cap });
  await step('NodePublishVolume', {
    volume_id: v.id,
    ...(stages ? { staging_target_path: v.staging } : {}),
    target_path: v.target,
    volume_capability: v.cap,
    volume_context: {},
  });
  await step('NodeUnpublishVolume', { volume_id: v.id, target_path: v.target });
  if (stages) await step('NodeUnstageVolume', { volume_id: v.id, staging_target_path: v.staging });
  return times;
}

async function createVolume(drv: Driver, d: DriverProcess, name: string, cap: object, bytes: number, parameters: object): Promise<Vol> {
  const res = await rpc<{ volume: { volume_id: string } }>(drv.clients.controller, 'CreateVolume', {
    name,
    capacity_range: { required_bytes: bytes },
    volume_capabilities: [cap],
    parameters,
  });
  const base = path.join(d.kubeletDir, 'bench', name);
  await fs.mkdir(path.join(base, 'staging'), { recursive: true });
  await fs.mkdir(path.join(base, 'pod'), { recursive: true });
  return { drv, id: res.volume.volume_id, cap, staging: path.join(base, 'staging'), target: path.join(base, 'pod', 'mount') };
}

type Samples = Array<Partial<Record<Step, number>>>;
const stepP50 = (rows: Samples, s: Step) => median(rows.map((r) => r[s]).filter((x): x is number => x !== undefined));
const cycleP50 = (rows: Samples) => median(rows.map((r) => Object.values(r).reduce((a, b) => a + b, 0)));
const stepLine = (rows: Samples) => STEPS.map((s) => `${short(s)} ${fmt(stepP50(rows, s))}`).join(', ');

/** The PID of the process listening on a unix socket (from /proc/net/unix and each process's fds). */
async function socketOwner(socket: string): Promise<number | undefined> {
  // Fields: Num RefCount Protocol Flags Type St Inode Path; the path as bound (Go keeps "//tmp/x" as given).
  const fields = (await fs.readFile('/proc/net/unix', 'utf8')).split('\n').map((l) => l.trim().split(/\s+/));
  const inode = fields.find((f) => f[7] !== undefined && path.resolve(f[7]) === path.resolve(socket))?.[6];
  if (!inode) return undefined;
  for (const pid of (await fs.readdir('/proc')).filter((p) => /^\d+$/.test(p))) {
    const fds = await fs.readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      if ((await fs.readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')) === `socket:[${inode}]`) return Number(pid);
    }
  }
  return undefined;
}

/** The commands `pid` (every thread of it) and its children start while `f` runs (strace -f on execve), by name. */
async function commandsStarted(pid: number, f: () => Promise<void>): Promise<string[]> {
  const log = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'berth-strace-')), 'log');
  const threads = (await fs.readdir(`/proc/${pid}/task`)).flatMap((t) => ['-p', t]); // a Go server runs on many
  const strace = spawn('strace', ['-f', '-qq', '-e', 'trace=execve', '-e', 'signal=none', '-o', log, ...threads], { stdio: 'ignore' });
  const exited = new Promise((r) => strace.once('exit', r));
  await new Promise((r) => setTimeout(r, 300)); // attached by then
  try {
    await f();
  } finally {
    await new Promise((r) => setTimeout(r, 100));
    strace.kill('SIGINT');
    await exited;
  }
  const text = await fs.readFile(log, 'utf8').catch(() => '');
  await fs.rm(path.dirname(log), { recursive: true, force: true });
  // A PATH search tries execve in each directory: only the call that returned 0 started a command.
  // Lines are "PID execve(...) = R", or split as "PID execve(... <unfinished ...>" and "PID <... execve resumed>...) = R".
  const pending = new Map<string, string>();
  const started: string[] = [];
  for (const line of text.split('\n')) {
    const call = /^(\d+)\s+execve\("([^"]+)"/.exec(line);
    if (call) pending.set(call[1] as string, path.basename(call[2] as string));
    const done = /^(\d+)\s.*\) = (-?\d+)/.exec(line);
    if (!done) continue;
    const name = pending.get(done[1] as string);
    pending.delete(done[1] as string);
    if (done[2] === '0' && name) started.push(name);
  }
  return started;
}

const hasStrace = () =>
  exec('strace', ['-V']).then(
    () => true,
    () => false,
  );

/** MB/s of writing then reading 1 GiB with O_DIRECT in `dir`. */
async function sequentialIo(dir: string): Promise<{ write: number; read: number }> {
  const file = path.join(dir, 'bench.bin');
  let t0 = process.hrtime.bigint();
  await exec('dd', ['if=/dev/zero', `of=${file}`, 'bs=4M', 'count=256', 'oflag=direct', 'conv=fsync']);
  const write = GiB / 1e6 / (ms(t0) / 1000);
  t0 = process.hrtime.bigint();
  await exec('dd', [`if=${file}`, 'of=/dev/null', 'bs=4M', 'iflag=direct']);
  const read = GiB / 1e6 / (ms(t0) / 1000);
  await fs.rm(file);
  return { write, read };
}

const mountCap = (fsType: string) => ({ mount: { fs_type: fsType }, access_mode: { mode: 'SINGLE_NODE_WRITER' } });
const rawCap = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };

/** Block volumes with a filesystem: the first stage (mkfs) apart, then each step's p50. */
async function filesystemCycles(berth: Driver, d: DriverProcess): Promise<void> {
  console.log(`block volumes with a filesystem, 1 GiB, p50 of ${CYCLES} cycles (ms):`);
  const processes: string[] = [];
  for (const fsType of ['ext4', 'xfs']) {
    const v = await createVolume(berth, d, `pvc-fs-${fsType}`, mountCap(fsType), GiB, { kind: 'block' });
    const first = await cycle(v);
    const rows: Samples = [];
    for (let i = 0; i < CYCLES; i++) rows.push(await cycle(v));
    console.log(
      `${fsType.padEnd(5)} first stage (mkfs) ${fmt(first.NodeStageVolume ?? NaN).padStart(6)}   cycle ${fmt(cycleP50(rows)).padStart(5)}  (${stepLine(rows)})`,
    );
    await rpc(berth.clients.controller, 'DeleteVolume', { volume_id: v.id });
    if (!(await hasStrace())) continue;
    // Apart from the timed cycles (strace slows every process start): a new volume's first cycle, and its second.
    const counted = await createVolume(berth, d, `pvc-fs-${fsType}-counted`, mountCap(fsType), GiB, { kind: 'block' });
    for (const which of ['first cycle', 'later cycles'])
      processes.push(`${fsType.padEnd(5)} ${which.padEnd(13)} ${await stepCommands(counted)}`);
    await rpc(berth.clients.controller, 'DeleteVolume', { volume_id: counted.id });
  }
  printProcesses(processes);
}

/** One cycle of `v` under strace: each step's count of commands, and their names. */
async function stepCommands(v: Vol): Promise<string> {
  const perStep: string[] = [];
  await cycle(v, async (s, f) => {
    const names = await commandsStarted(v.drv.pid as number, f);
    perStep.push(`${short(s)} ${names.length}${names.length ? ` (${names.join(' ')})` : ''}`);
  });
  return perStep.join(', ');
}

function printProcesses(lines: string[]): void {
  if (lines.length === 0) return;
  console.log('processes started per step (strace -f, execve):');
  for (const line of lines) console.log(`  ${line}`);
}

/** Share and raw block cycles on berth and, interleaved, on the --compare driver; then the processes of one cycle each. */
async function interleavedCycles(drivers: Driver[], d: DriverProcess): Promise<void> {
  const params = (drv: Driver, kind: string) => (drv.name === 'berth' ? { kind } : {});
  const straced = (await hasStrace()) ? drivers.filter((x) => x.pid !== undefined) : [];
  const processes: string[] = [];
  const publishP50 = new Map<string, number>();
  let slowestMounting = 0;
  for (const [kind, cap, berthKind] of [
    ['share', mountCap(''), 'share'],
    ['raw block', rawCap, 'block'],
  ] as const) {
    const vols = [];
    for (const [i, drv] of drivers.entries())
      vols.push(await createVolume(drv, d, `pvc-${berthKind}-${i}`, cap, 64 << 20, params(drv, berthKind)));
    const samples = vols.map(() => [] as Samples);
    for (let c = 0; c < CYCLES; c++) for (const [i, v] of vols.entries()) samples[i]?.push(await cycle(v));
    for (const [i, v] of vols.entries()) {
      const rows = samples[i] as Samples;
      console.log(`${kind.padEnd(9)} ${v.drv.name.padEnd(24)} cycle p50 ${fmt(cycleP50(rows)).padStart(6)} ms  (${stepLine(rows)})`);
      if (i === 0) for (const s of MOUNTING) slowestMounting = Math.max(slowestMounting, stepP50(rows, s));
      else publishP50.set(kind, stepP50(rows, 'NodePublishVolume'));
    }
    if (vols.length === 2)
      console.log(
        `${kind.padEnd(9)} cycle berth / --compare = ${fmt(cycleP50(samples[0] as Samples) / cycleP50(samples[1] as Samples), 2)}`,
      );
    for (const v of vols)
      if (straced.includes(v.drv)) processes.push(`${kind.padEnd(9)} ${v.drv.name.padEnd(24)} ${await stepCommands(v)}`);
    for (const v of vols) await rpc(v.drv.clients.controller, 'DeleteVolume', { volume_id: v.id });
  }
  if (publishP50.size > 0) {
    const theirs = Math.min(...publishP50.values());
    console.log(
      `berth's slowest mount-making step p50 (share and raw block) ${fmt(slowestMounting)} ms / --compare's NodePublish p50 ${fmt(theirs)} ms = ${fmt(slowestMounting / theirs, 2)}`,
    );
  }
  printProcesses(processes);
}

async function main() {
  const compare = option('compare');
  const poolFs = poolFilesystem();
  // --profile: the driver runs under node --cpu-prof, and the busiest functions are printed at the end.
  const profileDir = process.argv.includes('--profile') ? await fs.mkdtemp(path.join(os.tmpdir(), 'berth-profile-')) : undefined;
  const fresh = await poolFs.make();
  let d: DriverProcess | undefined;
  let other: CsiClients | undefined;
  try {
    d = await DriverProcess.start({
      poolDir: path.join(fresh.mountpoint, 'pool'),
      ...(profileDir ? { nodeOptions: ['--cpu-prof', '--cpu-prof-dir', profileDir] } : {}),
    });
    const native = (await fs.readFile(`/proc/${d.pid}/maps`, 'utf8')).includes('berth_sys.node');
    console.log(
      `bench/node: pool on ${poolFs.description}, loop-mounted; system calls ${native ? 'through berth_sys' : 'as commands (no addon)'}`,
    );
    const berth: Driver = { name: 'berth', clients: d.clients, stages: true, pid: d.pid };
    const drivers = [berth];
    if (compare) {
      const socket = compare.replace(/^unix:\/\//, '');
      other = csiClients(socket);
      const caps = await rpc<{ capabilities: Array<{ rpc?: { type: string } }> }>(other.node, 'NodeGetCapabilities');
      const stages = caps.capabilities.some((c) => c.rpc?.type === 'STAGE_UNSTAGE_VOLUME');
      drivers.push({ name: compare, clients: other, stages, pid: await socketOwner(socket) });
    }
    await filesystemCycles(berth, d);
    console.log(`share and raw block cycles, p50 of ${CYCLES}${compare ? ', interleaved with --compare' : ''}:`);
    await interleavedCycles(drivers, d);

    const io = await createVolume(berth, d, 'pvc-io', mountCap('ext4'), 2 * GiB, { kind: 'block' });
    await rpc(d.clients.node, 'NodeStageVolume', { volume_id: io.id, staging_target_path: io.staging, volume_capability: io.cap });
    await rpc(d.clients.node, 'NodePublishVolume', {
      volume_id: io.id,
      staging_target_path: io.staging,
      target_path: io.target,
      volume_capability: io.cap,
    });
    const poolDir = path.join(d.poolDir, 'io-baseline');
    await fs.mkdir(poolDir);
    const vol: Array<{ write: number; read: number }> = [];
    const pool: Array<{ write: number; read: number }> = [];
    for (let i = 0; i < IO_RUNS; i++) {
      vol.push(await sequentialIo(io.target));
      pool.push(await sequentialIo(poolDir));
    }
    await rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: io.id, target_path: io.target });
    await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: io.id, staging_target_path: io.staging });
    const [vw, vr, pw, pr] = [vol.map((r) => r.write), vol.map((r) => r.read), pool.map((r) => r.write), pool.map((r) => r.read)].map(
      median,
    ) as [number, number, number, number];
    console.log(`1 GiB sequential, O_DIRECT, median of ${IO_RUNS}   write MB/s   read MB/s`);
    console.log(`published volume (ext4 on loop)  ${fmt(vw, 0).padStart(9)}  ${fmt(vr, 0).padStart(10)}`);
    console.log(`pool directory                   ${fmt(pw, 0).padStart(9)}  ${fmt(pr, 0).padStart(10)}`);
    console.log(`ratio volume/pool                ${fmt(vw / pw, 2).padStart(9)}  ${fmt(vr / pr, 2).padStart(10)}`);
    console.log(`driver peak RSS: ${fmt(memoryOf(d.pid).peakMiB)} MB`);
    if (profileDir) {
      await d.stop('SIGTERM'); // a clean exit writes the profile
      const [file] = await fs.readdir(profileDir);
      console.log('driver CPU by function (self time, idle left out):');
      for (const line of cpuProfileSummary(path.join(profileDir, file as string))) console.log(`  ${line}`);
    }
  } finally {
    other?.close();
    await d?.cleanup();
    await fresh.remove();
    if (profileDir) await fs.rm(profileDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
