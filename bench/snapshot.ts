// bench/snapshot: snapshot, restore and clone of a 10 GiB block image with
// 1 GiB written, and GetMetadataDelta for 1 GiB changed in it:
// - on a fresh xfs with reflink (berth reflinks), a fresh ext4 (berth copies
//   sparse) and an NFS pool (nfs-ganesha on loopback over a fresh ext4: the
//   controller copies over its own NFS client);
// - beside each, this machine's own limit on the same filesystem: GNU cp of
//   the same image (--reflink=always on xfs, --sparse=always elsewhere);
// - and, with --compare unix:///path, another CSI driver through the same
//   calls (its volume written through NodePublishVolume as raw block);
//   --compare-dir says where that driver keeps its data, for the space used.
// Times are medians of --runs runs (default 3); space is the pool
// filesystem's free space before and after. Run inside a private mount
// namespace (npm run bench:snapshot).
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { type CsiClients, csiClients, rpc, rpcStream } from '../cli/client.js';
import { DriverProcess } from '../test/helpers/driver-process.js';
import { FreshFilesystem } from '../test/helpers/fresh-fs.js';
import { Ganesha } from '../test/helpers/ganesha.js';
import { fmt, median, memoryOf } from './stats.js';

const exec = promisify(execFile);
const GiB = 2 ** 30;
const MiB = 2 ** 20;

function option(name: string, fallback?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}
const RUNS = Number(option('runs', '3'));
const SIZE = Number(option('size-gib', '10')) * GiB;
const WRITTEN = Number(option('written-gib', '1')) * GiB;
const COMPARE = option('compare');
const COMPARE_DIR = option('compare-dir');
/** Which phases run (default all): xfs, ext4, nfs, compare. */
const PHASES = (option('phases', 'xfs,ext4,nfs,compare') as string).split(',');

interface Row {
  where: string;
  op: string;
  ms: number[];
  spaceMiB: number[];
}
const rows: Row[] = [];
function record(where: string, op: string, ms: number, spaceMiB: number) {
  let row = rows.find((r) => r.where === where && r.op === op);
  if (!row) {
    row = { where, op, ms: [], spaceMiB: [] };
    rows.push(row);
  }
  row.ms.push(ms);
  row.spaceMiB.push(spaceMiB);
}

const freeBytes = async (dir: string) => {
  await exec('sync', ['-f', dir]);
  const st = await fs.statfs(dir);
  return st.bavail * st.bsize;
};

/** Runs `op`, returning its milliseconds and the MiB the filesystem under `dir` lost meanwhile. */
async function measure<T>(dir: string | undefined, op: () => Promise<T>): Promise<{ ms: number; spaceMiB: number; value: T }> {
  const before = dir ? await freeBytes(dir) : 0;
  const t0 = process.hrtime.bigint();
  const value = await op();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const spaceMiB = dir ? (before - (await freeBytes(dir))) / MiB : NaN;
  return { ms, spaceMiB, value };
}

/** Writes `bytes` of random data into a file or device, in four runs spread over `span` from `base`. */
async function writeSpread(target: string, bytes: number, base: number, span: number) {
  const piece = bytes / 4;
  for (let i = 0; i < 4; i++) {
    const seek = (base + (i * span) / 4) / MiB;
    await exec('dd', [
      'if=/dev/urandom',
      `of=${target}`,
      'bs=1M',
      `count=${piece / MiB}`,
      `seek=${Math.floor(seek)}`,
      'conv=notrunc',
      'status=none',
    ]);
  }
  await exec('sync');
}

const blockCap = { block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } };

interface Target {
  where: string;
  clients: CsiClients;
  parameters: Record<string, string>;
  /** Where the driver keeps its bytes (for the space used); undefined: not measured. */
  dataDir?: string;
  /** Writes `bytes` into the volume. */
  write(volumeId: string, bytes: number, base: number): Promise<void>;
  cbt: boolean;
}

/** One run of snapshot, restore, clone (and the delta) through the CSI calls. */
async function runOnce(t: Target, run: number) {
  const c = t.clients.controller;
  const name = (what: string) => `bench-${what}-${run}`;
  const create = (n: string, extra: object = {}) =>
    rpc<{ volume: { volume_id: string } }>(
      c,
      'CreateVolume',
      {
        name: n,
        capacity_range: { required_bytes: SIZE },
        volume_capabilities: [blockCap],
        parameters: t.parameters,
        ...extra,
      },
      3_600_000,
    );
  const source = (await create(name('src'))).volume.volume_id;
  await t.write(source, WRITTEN, 0);
  const snap = await measure(t.dataDir, () =>
    rpc<{ snapshot: { snapshot_id: string; ready_to_use: boolean } }>(
      c,
      'CreateSnapshot',
      { name: name('snap'), source_volume_id: source },
      3_600_000,
    ),
  );
  record(t.where, 'snapshot', snap.ms, snap.spaceMiB);
  const snapshotId = snap.value.snapshot.snapshot_id;
  const restore = await measure(t.dataDir, () =>
    create(name('restored'), { volume_content_source: { snapshot: { snapshot_id: snapshotId } } }),
  );
  record(t.where, 'restore', restore.ms, restore.spaceMiB);
  const clone = await measure(t.dataDir, () => create(name('clone'), { volume_content_source: { volume: { volume_id: source } } }));
  record(t.where, 'clone', clone.ms, clone.spaceMiB);
  const cleanup = [restore.value.volume.volume_id, clone.value.volume.volume_id];
  const snapshots = [snapshotId];
  if (t.cbt) {
    await t.write(source, WRITTEN, SIZE / 2); // 1 GiB changed, elsewhere than the first
    const target = (
      await rpc<{ snapshot: { snapshot_id: string } }>(c, 'CreateSnapshot', { name: name('snap2'), source_volume_id: source })
    ).snapshot.snapshot_id;
    snapshots.push(target);
    const delta = await measure(undefined, () =>
      rpcStream<{ block_metadata: Array<{ size_bytes: string }> }>(
        t.clients.snapshotMetadata,
        'GetMetadataDelta',
        {
          base_snapshot_id: snapshotId,
          target_snapshot_id: target,
        },
        3_600_000,
      ),
    );
    const changed = delta.value.flatMap((m) => m.block_metadata).reduce((s, b) => s + Number(b.size_bytes), 0);
    record(t.where, `GetMetadataDelta (reports ${fmt(changed / MiB, 0)} MiB)`, delta.ms, NaN);
  }
  for (const id of [...cleanup, source]) await rpc(c, 'DeleteVolume', { volume_id: id });
  for (const id of snapshots) await rpc(c, 'DeleteSnapshot', { snapshot_id: id });
}

/**
 * This machine's own figure on the same filesystem: GNU cp of the same kind
 * of image; for an NFS pool also libnfs's nfs-cat reading it over NFS (what
 * a client can read from this server, a copy's floor: NFSv3 cannot skip holes).
 */
async function machineLimit(where: string, dir: string, reflink: boolean, nfsUrl?: string) {
  const image = path.join(dir, 'bench-machine.img');
  await fs.writeFile(image, '');
  await fs.truncate(image, SIZE);
  await writeSpread(image, WRITTEN, 0, SIZE / 2);
  for (let run = 0; run < RUNS && nfsUrl; run++) {
    const m = await measure(undefined, () => exec('sh', ['-c', `nfs-cat ${nfsUrl}/bench-machine.img > /dev/null`]));
    record(where, "nfs-cat of the image (this machine's NFS read rate)", m.ms, NaN);
  }
  for (let run = 0; run < RUNS; run++) {
    const copy = path.join(dir, `bench-machine-copy-${run}.img`);
    const m = await measure(dir, async () => {
      await exec('cp', reflink ? ['--reflink=always', image, copy] : ['--reflink=never', '--sparse=always', image, copy]);
      await exec('sync', ['-f', copy]);
    });
    record(where, `cp ${reflink ? '--reflink=always' : '--sparse=always'} (this machine's limit)`, m.ms, m.spaceMiB);
    await fs.rm(copy);
  }
  await fs.rm(image);
}

async function berthOn(fsType: 'xfs' | 'ext4') {
  const where = `berth, local pool on ${fsType}`;
  const pfs = await FreshFilesystem.make(undefined, { bytes: 64 * GiB, fsType });
  const poolDir = path.join(pfs.mountpoint, 'pool');
  const d = await DriverProcess.start({ mode: 'all', poolDir, extraArgs: ['--self-register=false', '--snapshot-metadata'] });
  try {
    const target: Target = {
      where,
      clients: d.clients,
      parameters: { kind: 'block', provisioning: 'thin' },
      dataDir: poolDir,
      cbt: true,
      write: (id, bytes, base) => writeSpread(path.join(poolDir, 'volumes', `${id.split(':').at(-1)}.img`), bytes, base, SIZE / 2),
    };
    for (let run = 0; run < RUNS; run++) await runOnce(target, run);
    await machineLimit(where, pfs.mountpoint, fsType === 'xfs');
    console.log(`${where}: the driver's peak RSS ${fmt(memoryOf(d.pid).peakMiB)} MB`);
  } finally {
    await d.cleanup();
    await pfs.remove();
  }
}

async function berthOnNfs() {
  const where = 'berth, NFS pool (nfs-ganesha on loopback, fresh ext4)';
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-snapbench-'));
  const g = new Ganesha(dir);
  await fs.mkdir(g.exportDir, { recursive: true });
  const efs = await FreshFilesystem.make(g.exportDir, { bytes: 64 * GiB });
  await g.start();
  // All-in-one (no API server here); --copy-wait long enough that each call returns with its copy done.
  const d = await DriverProcess.start({ mode: 'all', extraArgs: ['--self-register=false', '--copy-wait', '3600000'] });
  try {
    const target: Target = {
      where,
      clients: d.clients,
      parameters: { pool: 'nfs', server: '127.0.0.1', share: g.exportPath, kind: 'block' },
      dataDir: g.exportDir,
      cbt: false,
      write: (id, bytes, base) => writeSpread(path.join(g.exportDir, id.split(':').at(-1) as string, 'disk.img'), bytes, base, SIZE / 2),
    };
    for (let run = 0; run < RUNS; run++) await runOnce(target, run);
    await machineLimit(where, g.exportDir, false, `nfs://127.0.0.1${g.exportPath}`);
    console.log(`${where}: the driver's peak RSS ${fmt(memoryOf(d.pid).peakMiB)} MB`);
  } finally {
    await d.cleanup();
    await g.stop();
    await efs.remove();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

/** Another CSI driver at an endpoint: its volume is written through a raw-block NodePublishVolume. */
async function compareDriver(endpoint: string) {
  const socket = endpoint.replace(/^unix:\/\//, '');
  const clients = csiClients(socket);
  const info = await rpc<{ name: string; vendor_version: string }>(clients.identity, 'GetPluginInfo').catch(() => ({
    name: endpoint,
    vendor_version: '(GetPluginInfo failed)',
  }));
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-snapbench-compare-'));
  const nodeCaps = await rpc<{ capabilities: Array<{ rpc?: { type: string } }> }>(clients.node, 'NodeGetCapabilities');
  const stages = nodeCaps.capabilities.some((x) => x.rpc?.type === 'STAGE_UNSTAGE_VOLUME');
  const target: Target = {
    where: `${info.name} ${info.vendor_version} (--compare)`,
    clients,
    parameters: {},
    dataDir: COMPARE_DIR,
    cbt: false,
    async write(volumeId, bytes, base) {
      const staging = path.join(work, `staging-${Date.now()}`);
      const targetPath = path.join(work, `dev-${Date.now()}`);
      await fs.mkdir(staging);
      if (stages)
        await rpc(clients.node, 'NodeStageVolume', { volume_id: volumeId, staging_target_path: staging, volume_capability: blockCap });
      const req = {
        volume_id: volumeId,
        ...(stages ? { staging_target_path: staging } : {}),
        target_path: targetPath,
        volume_capability: blockCap,
        readonly: false,
        volume_context: {},
      };
      await rpc(clients.node, 'NodePublishVolume', req);
      try {
        await writeSpread(targetPath, bytes, base, SIZE / 2);
      } finally {
        await rpc(clients.node, 'NodeUnpublishVolume', { volume_id: volumeId, target_path: targetPath });
        if (stages) await rpc(clients.node, 'NodeUnstageVolume', { volume_id: volumeId, staging_target_path: staging });
      }
    },
  };
  try {
    for (let run = 0; run < RUNS; run++) await runOnce(target, run);
  } finally {
    clients.close();
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** Every row so far (printed after each phase, so a failure later loses nothing). */
function printTable() {
  const w = Math.max(...rows.map((r) => r.where.length));
  const o = Math.max(...rows.map((r) => r.op.length));
  console.log(`${'where'.padEnd(w)}  ${'operation'.padEnd(o)}  ${'median ms'.padStart(10)}  ${'space MiB'.padStart(10)}`);
  for (const r of rows) {
    const space = median(r.spaceMiB);
    console.log(
      `${r.where.padEnd(w)}  ${r.op.padEnd(o)}  ${fmt(median(r.ms)).padStart(10)}  ${(Number.isNaN(space) ? '-' : fmt(space)).padStart(10)}`,
    );
  }
  // Ratios side by side: each berth copy against this machine's cp on the same filesystem, and against --compare.
  console.log('\nratios (median time / median time of the reference in the same run):');
  for (const where of [...new Set(rows.map((r) => r.where))]) {
    for (const limit of rows.filter((r) => r.where === where && (r.op.startsWith('cp ') || r.op.startsWith('nfs-cat')))) {
      for (const op of ['snapshot', 'restore', 'clone']) {
        const r = rows.find((x) => x.where === where && x.op === op);
        if (r) console.log(`  ${where}: ${op} / ${limit.op.split(' (')[0]} = ${fmt(median(r.ms) / median(limit.ms), 2)}`);
      }
    }
  }
  const other = rows.filter((r) => r.where.endsWith('(--compare)'));
  for (const r of other) {
    for (const fsName of ['xfs', 'ext4']) {
      const ours = rows.find((x) => x.where === `berth, local pool on ${fsName}` && x.op === r.op);
      if (ours) console.log(`  ${r.op}: berth on ${fsName} / ${r.where} = ${(median(ours.ms) / median(r.ms)).toPrecision(3)}`);
    }
  }
  console.log('');
}

async function main() {
  console.log(`bench/snapshot: a ${SIZE / GiB} GiB block image with ${WRITTEN / GiB} GiB written; medians of ${RUNS} runs`);
  const phases: Array<[string, () => Promise<void>]> = [
    ['xfs', () => berthOn('xfs')],
    ['ext4', () => berthOn('ext4')],
    ['nfs', berthOnNfs],
  ];
  if (COMPARE) phases.push(['compare', () => compareDriver(COMPARE)]);
  for (const [name, phase] of phases.filter(([n]) => PHASES.includes(n))) {
    try {
      await phase();
    } catch (err) {
      console.log(`${name}: failed: ${(err as Error).message}`);
      process.exitCode = 1;
    }
    printTable();
  }
}

await main();
