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
 * Prometheus servers reads the pool once, and concurrent callers share one
 * scan. A scan still running is shared however old it is: one stuck in the
 * kernel (a hung disk or NFS mount) holds one thread, not one per scrape.
 */
export class CachedScan<T> {
  private last: { at: number; value: Promise<T>; settled: boolean } | undefined;
  constructor(
    private readonly scan: () => Promise<T>,
    private readonly maxAgeMs: number,
  ) {}

  get(): Promise<T> {
    const now = Date.now();
    if (!this.last || (this.last.settled && now - this.last.at > this.maxAgeMs)) {
      const entry = { at: now, value: this.scan(), settled: false };
      this.last = entry;
      entry.value.then(
        () => {
          // Its age counts from when it was read: a slow scan is not stale the moment it ends.
          entry.at = Date.now();
          entry.settled = true;
        },
        () => {
          if (this.last === entry) this.last = undefined; // a failed scan is not reused
        },
      );
    }
    return this.last.value;
  }
}

/** `work`, or a rejection saying `what` did not answer within `ms` (the work itself goes on). */
export async function within<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}
