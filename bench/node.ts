// bench/node: the node path of a 1 GiB block volume.
// - stage+publish and unpublish+unstage, ext4 and xfs: median ms over 20
//   cycles (the first stage, which formats, reported apart);
// - 1 GiB sequential write and read with direct I/O through a published
//   volume and, in the same run, in the pool's own directory: MB/s and the
//   ratio volume/pool;
// - the driver's peak RSS;
// - the share and raw block cycles step by step (stage, publish, unpublish,
//   unstage: p50 of each), and with --compare unix:///path the same cycles
//   on another CSI driver's socket, interleaved cycle by cycle, with the
//   ratios.
// Run inside a private mount namespace (npm run bench:node does).
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type CsiClients, csiClients, rpc } from '../cli/client.js';
import { DriverProcess } from '../test/helpers/driver-process.js';
import { cpuProfileSummary, fmt, median, memoryOf } from './stats.js';

const exec = promisify(execFile);
const GiB = 1024 ** 3;
const CYCLES = Number(process.env.BENCH_CYCLES ?? 20);
const IO_RUNS = Number(process.env.BENCH_IO_RUNS ?? 3);

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

class Volume {
  readonly staging: string;
  constructor(
    readonly d: DriverProcess,
    readonly id: string,
    readonly cap: object,
  ) {
    const hash = createHash('sha256').update(id).digest('hex');
    this.staging = path.join(d.kubeletDir, 'plugins/kubernetes.io/csi/berth.csi.dev', hash, 'globalmount');
  }
  target(uid: string) {
    return path.join(this.d.kubeletDir, 'pods', uid, 'volumes/kubernetes.io~csi', 'pv', 'mount');
  }
  async up(uid: string): Promise<string> {
    await fs.mkdir(this.staging, { recursive: true, mode: 0o750 });
    const target = this.target(uid);
    await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o750 });
    await rpc(this.d.clients.node, 'NodeStageVolume', {
      volume_id: this.id,
      staging_target_path: this.staging,
      volume_capability: this.cap,
    });
    await rpc(this.d.clients.node, 'NodePublishVolume', {
      volume_id: this.id,
      staging_target_path: this.staging,
      target_path: target,
      volume_capability: this.cap,
    });
    return target;
  }
  async down(uid: string): Promise<void> {
    await rpc(this.d.clients.node, 'NodeUnpublishVolume', { volume_id: this.id, target_path: this.target(uid) });
    await rpc(this.d.clients.node, 'NodeUnstageVolume', { volume_id: this.id, staging_target_path: this.staging });
  }
}

async function createVolume(d: DriverProcess, name: string, fsType: string, bytes: number): Promise<Volume> {
  const cap = { mount: { fs_type: fsType }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
  const res = await rpc<{ volume: { volume_id: string } }>(d.clients.controller, 'CreateVolume', {
    name,
    capacity_range: { required_bytes: bytes },
    volume_capabilities: [cap],
    parameters: { kind: 'block' },
  });
  return new Volume(d, res.volume.volume_id, cap);
}

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

const STEPS = ['NodeStageVolume', 'NodePublishVolume', 'NodeUnpublishVolume', 'NodeUnstageVolume'] as const;

/** One stage, publish, unpublish, unstage cycle of a volume; the milliseconds of each step. */
async function cycle(clients: CsiClients, volumeId: string, cap: object, staging: string, target: string, stages: boolean) {
  const times: Record<string, number> = {};
  const step = async (method: (typeof STEPS)[number], req: object) => {
    const t0 = process.hrtime.bigint();
    await rpc(clients.node, method, req);
    times[method] = ms(t0);
  };
  if (stages) await step('NodeStageVolume', { volume_id: volumeId, staging_target_path: staging, volume_capability: cap });
  await step('NodePublishVolume', {
    volume_id: volumeId,
    ...(stages ? { staging_target_path: staging } : {}),
    target_path: target,
    volume_capability: cap,
    volume_context: {},
  });
  await step('NodeUnpublishVolume', { volume_id: volumeId, target_path: target });
  if (stages) await step('NodeUnstageVolume', { volume_id: volumeId, staging_target_path: staging });
  return times;
}

/** Share and raw block cycles on berth and, interleaved, on the --compare driver. */
async function cycles(d: DriverProcess, compare: string | undefined): Promise<void> {
  const mount = { mount: { fs_type: '' }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
  const raw = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
  const drivers: Array<{ name: string; clients: CsiClients; params: Record<string, string>[]; stages: boolean }> = [
    { name: 'berth', clients: d.clients, params: [{ kind: 'share' }, { kind: 'block' }], stages: true },
  ];
  const other = compare ? csiClients(compare.replace(/^unix:\/\//, '')) : undefined;
  if (other) {
    const caps = await rpc<{ capabilities: Array<{ rpc?: { type: string } }> }>(other.node, 'NodeGetCapabilities');
    const stages = caps.capabilities.some((c) => c.rpc?.type === 'STAGE_UNSTAGE_VOLUME');
    drivers.push({ name: compare as string, clients: other, params: [{}, {}], stages });
  }
  try {
    for (const [k, cap] of [
      ['share', mount],
      ['raw block', raw],
    ] as const) {
      const vols = [];
      for (const [i, drv] of drivers.entries()) {
        const res = await rpc<{ volume: { volume_id: string } }>(drv.clients.controller, 'CreateVolume', {
          name: `pvc-cycle-${k.replace(' ', '-')}-${i}`,
          capacity_range: { required_bytes: 64 << 20 },
          volume_capabilities: [cap],
          parameters: drv.params[k === 'share' ? 0 : 1],
        });
        const base = path.join(d.kubeletDir, 'bench-cycles', String(i), k.replace(' ', '-'));
        await fs.mkdir(path.join(base, 'staging'), { recursive: true });
        await fs.mkdir(path.join(base, 'pod'), { recursive: true });
        vols.push({ drv, id: res.volume.volume_id, staging: path.join(base, 'staging'), target: path.join(base, 'pod', 'mount') });
      }
      const samples = vols.map(() => [] as Array<Record<string, number>>);
      for (let c = 0; c < CYCLES; c++) {
        for (const [i, v] of vols.entries()) samples[i]?.push(await cycle(v.drv.clients, v.id, cap, v.staging, v.target, v.drv.stages));
      }
      for (const [i, v] of vols.entries()) {
        const rows = samples[i] as Array<Record<string, number>>;
        const p50 = (m: string) => median(rows.map((r) => r[m]).filter((x): x is number => x !== undefined));
        const total = median(rows.map((r) => Object.values(r).reduce((a, b) => a + b, 0)));
        const steps = STEPS.map((m) => `${m.replace('Node', '').replace('Volume', '')} ${fmt(p50(m))}`).join(', ');
        console.log(`${k.padEnd(9)} ${v.drv.name.padEnd(24)} cycle p50 ${fmt(total).padStart(6)} ms  (${steps})`);
      }
      if (vols.length === 2) {
        const total = (i: number) =>
          median((samples[i] as Array<Record<string, number>>).map((r) => Object.values(r).reduce((a, b) => a + b, 0)));
        console.log(`${k.padEnd(9)} cycle berth / --compare = ${fmt(total(0) / total(1), 2)}`);
      }
      for (const v of vols) await rpc(v.drv.clients.controller, 'DeleteVolume', { volume_id: v.id });
    }
  } finally {
    other?.close();
  }
}

async function main() {
  const compareIndex = process.argv.indexOf('--compare');
  const compare = compareIndex >= 0 ? process.argv[compareIndex + 1] : undefined;
  // --profile: the driver runs under node --cpu-prof, and the busiest functions are printed at the end.
  const profileDir = process.argv.includes('--profile') ? await fs.mkdtemp(path.join(os.tmpdir(), 'berth-profile-')) : undefined;
  const d = await DriverProcess.start(profileDir ? { nodeOptions: ['--cpu-prof', '--cpu-prof-dir', profileDir] } : {});
  try {
    console.log(`bench/node: 1 GiB block volumes on a local pool; ${CYCLES} cycles; I/O median of ${IO_RUNS} runs`);
    console.log('fs     first stage+publish  stage+publish p50  unpublish+unstage p50');
    for (const fsType of ['ext4', 'xfs']) {
      const v = await createVolume(d, `pvc-cycle-${fsType}`, fsType, GiB);
      const uid = randomUUID();
      let t0 = process.hrtime.bigint();
      await v.up(uid);
      const first = ms(t0);
      await v.down(uid);
      const ups: number[] = [];
      const downs: number[] = [];
      for (let i = 0; i < CYCLES; i++) {
        t0 = process.hrtime.bigint();
        await v.up(uid);
        ups.push(ms(t0));
        t0 = process.hrtime.bigint();
        await v.down(uid);
        downs.push(ms(t0));
      }
      console.log(
        `${fsType.padEnd(6)} ${fmt(first).padStart(12)} ms ${fmt(median(ups)).padStart(15)} ms ${fmt(median(downs)).padStart(19)} ms`,
      );
    }

    const v = await createVolume(d, 'pvc-io', 'ext4', 2 * GiB);
    const uid = randomUUID();
    const target = await v.up(uid);
    const poolDir = path.join(d.poolDir, 'io-baseline');
    await fs.mkdir(poolDir);
    const vol: Array<{ write: number; read: number }> = [];
    const pool: Array<{ write: number; read: number }> = [];
    for (let i = 0; i < IO_RUNS; i++) {
      vol.push(await sequentialIo(target));
      pool.push(await sequentialIo(poolDir));
    }
    await v.down(uid);
    const vw = median(vol.map((r) => r.write));
    const vr = median(vol.map((r) => r.read));
    const pw = median(pool.map((r) => r.write));
    const pr = median(pool.map((r) => r.read));
    console.log('1 GiB sequential, O_DIRECT      write MB/s   read MB/s');
    console.log(`published volume (ext4 on loop)  ${fmt(vw, 0).padStart(9)}  ${fmt(vr, 0).padStart(10)}`);
    console.log(`pool directory                   ${fmt(pw, 0).padStart(9)}  ${fmt(pr, 0).padStart(10)}`);
    console.log(`ratio volume/pool                ${fmt(vw / pw, 2).padStart(9)}  ${fmt(vr / pr, 2).padStart(10)}`);
    console.log(`driver peak RSS: ${fmt(memoryOf(d.pid).peakMiB)} MB`);
    console.log(`share and raw block cycles, p50 of ${CYCLES}${compare ? ', interleaved with --compare' : ''}:`);
    await cycles(d, compare);
    if (profileDir) {
      await d.stop('SIGTERM'); // a clean exit writes the profile
      const [file] = await fs.readdir(profileDir);
      console.log('driver CPU by function (self time, idle left out):');
      for (const line of cpuProfileSummary(path.join(profileDir, file as string))) console.log(`  ${line}`);
    }
  } finally {
    await d.cleanup();
    if (profileDir) await fs.rm(profileDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
