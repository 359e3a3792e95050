// bench/provision: CreateVolume then DeleteVolume over the CSI socket on a
// local pool, concurrency 16, N = 1,000 and N = 10,000: shares, thick block
// images (1 MiB raw, reserved with fallocate: 13,000 of them fit the 16 GiB
// test filesystem) and thin ones (1 GiB, sparse; the overprovisioning limit
// raised so that they all fit).
// Prints ops/s and p50/p99 latency (median over runs), the N=10,000/N=1,000
// rate ratio, and the driver's idle and peak RSS. Each run's pool is on a
// fresh filesystem; one more row runs on the root filesystem (fresh-fs.ts
// says why). Run it inside a private mount namespace (npm run bench:provision).
import fs from 'node:fs/promises';
import path from 'node:path';
import { DriverProcess } from '../test/helpers/driver-process.js';
import { FreshFilesystem, quietenFilesystems } from '../test/helpers/fresh-fs.js';
import { CONCURRENCY, createDeleteRun, medianPhase, type Phase } from './create-delete.js';
import { fmt, memoryOf } from './stats.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SIZES = (process.env.BENCH_SIZES ?? '1000,10000').split(',').map(Number);
const KINDS = (process.env.BENCH_KINDS ?? 'share,block,block-thin').split(',');
/** Unmeasured creates per run (see create-delete.ts); they stay in the pool while the measured creates run. */
const WARMUP = 3000;

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
  let idle = 0;
  let peak = 0;
  for (let run = 0; run < RUNS; run++) {
    await quietenFilesystems(poolFs === 'root');
    const fresh = poolFs === 'fresh' ? await FreshFilesystem.make() : undefined;
    const d = await DriverProcess.start({
      ...(fresh ? { poolDir: path.join(fresh.mountpoint, 'pool') } : {}),
      extraArgs: ['--thin-overprovision', '1000'],
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
    } finally {
      await d.cleanup();
      await fresh?.remove();
    }
  }
  const c = medianPhase(creates);
  const del = medianPhase(deletes);
  console.log(
    `${kind.padEnd(6)} ${String(n).padEnd(6)} ${poolFs.padEnd(5)} ${fmt(c.rate, 0).padStart(8)}  ${fmt(c.p50, 2).padStart(6)}  ${fmt(c.p99, 2).padStart(6)}   ${fmt(del.rate, 0).padStart(8)}  ${fmt(del.p50, 2).padStart(6)}  ${fmt(del.p99, 2).padStart(6)}   ${fmt(idle).padStart(5)} MB  ${fmt(peak).padStart(5)} MB   ${creates.map((p) => fmt(p.rate, 0)).join(', ')}`,
  );
  return c.rate;
}

async function main() {
  console.log(
    `bench/provision: local pool, concurrency ${CONCURRENCY}, median of ${RUNS} runs, ${WARMUP} unmeasured warm-up creates per run`,
  );
  console.log(`pool fs: fresh = ${FreshFilesystem.description}; root = this machine's /, after the earlier runs`);
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
