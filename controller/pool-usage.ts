// What a pool holds, for metrics and `berth-ctl status`: its filesystem's
// size and free space, and per volume kind how many volumes there are, what
// they were promised (their capacity) and what they take on disk: the
// capacities from the records (an NFS pool reads them, a local pool keeps
// them as it writes them), the allocation from the bytes themselves.
import type { VolumeKind } from '../volume/volume-id.js';

export interface KindUsage {
  volumes: number;
  /** Sum of the volumes' capacities: what the pool has promised them. */
  provisionedBytes: number;
  /** Bytes their data takes on disk; undefined where reading it is not cheap (shares on NFS). */
  allocatedBytes: number | undefined;
}

export interface PoolUsage {
  totalBytes: number;
  freeBytes: number;
  kinds: Record<VolumeKind, KindUsage>;
  snapshots: { count: number; allocatedBytes: number | undefined };
}

/** One pool as metrics and `berth-ctl status` show it: its usage, or why it could not be read. */
export interface PoolReport {
  /** `local/<node>`, or `<server>:<export>`. */
  pool: string;
  type: 'local' | 'nfs';
  usage?: PoolUsage;
  error?: string;
}

export const emptyKinds = (): Record<VolumeKind, KindUsage> => ({
  share: { volumes: 0, provisionedBytes: 0, allocatedBytes: 0 },
  block: { volumes: 0, provisionedBytes: 0, allocatedBytes: 0 },
});

/** Adds one volume to its kind; an unknown allocation makes the kind's sum unknown. */
export function addVolume(
  kinds: Record<VolumeKind, KindUsage>,
  kind: VolumeKind,
  capacityBytes: number,
  allocated: number | undefined,
): void {
  const k = kinds[kind];
  k.volumes++;
  k.provisionedBytes += capacityBytes;
  k.allocatedBytes = k.allocatedBytes === undefined || allocated === undefined ? undefined : k.allocatedBytes + allocated;
}

/** Runs `fn` over `items`, at most `limit` at a time (a scan of thousands of records must not open them all at once). */
export async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * A scan reused while it is young: a scrape every few seconds from several
 * Prometheus servers reads the pool once, and concurrent callers share one scan.
 */
export class CachedScan<T> {
  private last: { at: number; value: Promise<T> } | undefined;
  constructor(
    private readonly scan: () => Promise<T>,
    private readonly maxAgeMs: number,
  ) {}

  get(): Promise<T> {
    const now = Date.now();
    if (!this.last || now - this.last.at > this.maxAgeMs) {
      const value = this.scan();
      this.last = { at: now, value };
      // A failed scan is not reused.
      value.catch(() => {
        if (this.last?.value === value) this.last = undefined;
      });
    }
    return this.last.value;
  }
}
