// One benchmark run of CreateVolume then DeleteVolume over the CSI socket,
// shared by bench/provision and bench/nfs.
//
// Order: `warmup` unmeasured creates (the rate keeps rising for about three
// seconds of calls while the JIT warms up), `n` measured creates, the
// warm-up volumes' deletes, `n` measured deletes. Measured creates never
// follow deletes (fresh-fs.ts says why that matters here).
import type * as grpc from '@grpc/grpc-js';
import { rpc } from '../cli/client.js';
import { median, percentile, runConcurrently } from './stats.js';

export interface Phase {
  rate: number;
  p50: number;
  p99: number;
}

export const CONCURRENCY = 16;

export async function timedPhase(n: number, task: (i: number) => Promise<void>): Promise<Phase> {
  const t0 = process.hrtime.bigint();
  const lat = await runConcurrently(n, CONCURRENCY, task);
  return { rate: n / (Number(process.hrtime.bigint() - t0) / 1e9), p50: percentile(lat, 50), p99: percentile(lat, 99) };
}

/** The median of each figure over runs. */
export const medianPhase = (runs: Phase[]): Phase => ({
  rate: median(runs.map((p) => p.rate)),
  p50: median(runs.map((p) => p.p50)),
  p99: median(runs.map((p) => p.p99)),
});

export async function createDeleteRun(opts: {
  controller: grpc.Client;
  n: number;
  warmup: number;
  /** The CreateVolume request for volume i (warm-up volumes are n, n+1, ...). */
  request: (i: number) => object;
  /** Runs after the warm-up deletes, before the measured ones. */
  beforeDeletes?: () => Promise<void>;
}): Promise<{ create: Phase; del: Phase }> {
  const { controller, n, warmup, request } = opts;
  const create = async (i: number) =>
    (await rpc<{ volume: { volume_id: string } }>(controller, 'CreateVolume', request(i))).volume.volume_id;
  const remove = async (id: string) => void (await rpc(controller, 'DeleteVolume', { volume_id: id }));
  const warm: string[] = new Array(warmup);
  await runConcurrently(warmup, CONCURRENCY, async (i) => {
    warm[i] = await create(n + i);
  });
  const ids: string[] = new Array(n);
  const created = await timedPhase(n, async (i) => {
    ids[i] = await create(i);
  });
  await runConcurrently(warmup, CONCURRENCY, (i) => remove(warm[i] as string));
  await opts.beforeDeletes?.();
  const deleted = await timedPhase(n, (i) => remove(ids[i] as string));
  return { create: created, del: deleted };
}
