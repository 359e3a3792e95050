// bench/provision: CreateVolume then DeleteVolume over the CSI socket on a
// local pool, concurrency 16, N = 1,000 and N = 10,000, share and block kinds.
// Prints ops/s and p50/p99 latency (median over runs), the N=10,000/N=1,000
// rate ratio, and the driver's idle and peak RSS.
import fs from 'node:fs/promises';
import path from 'node:path';
import { rpc } from '../driver/client.js';
import { DriverProcess } from './driver-process.js';
import { fmt, median, memoryOf, percentile, runConcurrently } from './stats.js';

const CONCURRENCY = 16;
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const SIZES = (process.env.BENCH_SIZES ?? '1000,10000').split(',').map(Number);
/** Unmeasured creates+deletes first, so the JIT has warmed up before timing. */
const WARMUP = 500;

interface Phase {
  rate: number;
  p50: number;
  p99: number;
}

function request(kind: string, i: number) {
  const cap = { mount: { fs_type: kind === 'block' ? 'ext4' : '' }, access_mode: { mode: 'SINGLE_NODE_WRITER' } };
  return {
    name: `pvc-bench-${i}`,
    capacity_range: { required_bytes: 1 << 30 },
    volume_capabilities: [cap],
    parameters: { kind },
  };
}

/** Deleted volumes are freed in the background: let that finish before timing. */
async function trashEmptied(poolDir: string): Promise<void> {
  while ((await fs.readdir(path.join(poolDir, '.trash'))).length > 0) await new Promise((r) => setTimeout(r, 50));
}

async function phase(n: number, task: (i: number) => Promise<void>): Promise<Phase> {
  const t0 = process.hrtime.bigint();
  const lat = await runConcurrently(n, CONCURRENCY, task);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  return { rate: n / secs, p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

async function main() {
  console.log(`bench/provision: local pool, concurrency ${CONCURRENCY}, median of ${RUNS} runs, ${WARMUP} unmeasured warm-up ops per run`);
  console.log('kind   N       create/s  p50 ms  p99 ms   delete/s  p50 ms  p99 ms   idle RSS  peak RSS');
  const rates = new Map<string, number>();
  for (const kind of ['share', 'block']) {
    for (const n of SIZES) {
      const creates: Phase[] = [];
      const deletes: Phase[] = [];
      let idle = 0;
      let peak = 0;
      for (let run = 0; run < RUNS; run++) {
        const d = await DriverProcess.start();
        await new Promise((r) => setTimeout(r, 300));
        idle = Math.max(idle, memoryOf(d.pid).rssMiB);
        const warm: string[] = new Array(WARMUP);
        await runConcurrently(WARMUP, CONCURRENCY, async (i) => {
          warm[i] = (await rpc<{ volume: { volume_id: string } }>(d.clients.controller, 'CreateVolume', request(kind, n + i))).volume.volume_id;
        });
        await runConcurrently(WARMUP, CONCURRENCY, async (i) => void (await rpc(d.clients.controller, 'DeleteVolume', { volume_id: warm[i] })));
        await trashEmptied(d.poolDir);
        const ids: string[] = new Array(n);
        creates.push(
          await phase(n, async (i) => {
            const res = await rpc<{ volume: { volume_id: string } }>(d.clients.controller, 'CreateVolume', request(kind, i));
            ids[i] = res.volume.volume_id;
          }),
        );
        deletes.push(await phase(n, async (i) => void (await rpc(d.clients.controller, 'DeleteVolume', { volume_id: ids[i] }))));
        peak = Math.max(peak, memoryOf(d.pid).peakMiB);
        await d.cleanup();
      }
      const c = { rate: median(creates.map((p) => p.rate)), p50: median(creates.map((p) => p.p50)), p99: median(creates.map((p) => p.p99)) };
      const del = { rate: median(deletes.map((p) => p.rate)), p50: median(deletes.map((p) => p.p50)), p99: median(deletes.map((p) => p.p99)) };
      rates.set(`${kind}/${n}`, c.rate);
      console.log(
        `${kind.padEnd(6)} ${String(n).padEnd(7)} ${fmt(c.rate, 0).padStart(8)}  ${fmt(c.p50, 2).padStart(6)}  ${fmt(c.p99, 2).padStart(6)}   ${fmt(del.rate, 0).padStart(8)}  ${fmt(del.p50, 2).padStart(6)}  ${fmt(del.p99, 2).padStart(6)}   ${fmt(idle).padStart(5)} MB  ${fmt(peak).padStart(5)} MB`,
      );
    }
  }
  if (SIZES.length >= 2) {
    const [small, large] = [SIZES[0], SIZES[SIZES.length - 1]];
    for (const kind of ['share', 'block']) {
      const ratio = (rates.get(`${kind}/${large}`) ?? NaN) / (rates.get(`${kind}/${small}`) ?? NaN);
      console.log(`${kind}: create rate at N=${large} / N=${small} = ${fmt(ratio, 2)}`);
    }
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
