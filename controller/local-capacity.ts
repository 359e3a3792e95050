// What a local pool has promised and what it holds. Thick images take their
// bytes at create (free space is the limit); thin images promise theirs,
// and together may promise `thinOverprovision` times the pool's size. The
// promises are summed from the records at start-up, then kept by the pool,
// their one writer, as it commits, grows, converts and removes volumes.
import fs from 'node:fs/promises';
import path from 'node:path';
import { run } from '../host/run.js';
import { exhausted } from '../volume/errors.js';
import { IMAGE_SUFFIX as IMAGE } from '../volume/local-layout.js';
import { isThinImage, type VolumeRecord } from '../volume/record.js';
import { addVolume, CachedScan, emptyKinds, type PoolUsage } from './pool-usage.js';

/** How stale the free-space reading behind a create's check may be. */
const FREE_SPACE_MAX_AGE_MS = 250;

export class LocalCapacity {
  /** Sum of the sizes of thin images: what they may yet claim. */
  private thinPromised = 0;
  /** Every volume's kind and capacity, by key: what usage() sums. */
  private readonly sizes = new Map<string, { kind: VolumeRecord['kind']; capacityBytes: number }>();
  private free: { bytes: number; at: number } | undefined;
  private readonly usageScan: CachedScan<PoolUsage>;

  constructor(
    private readonly root: string,
    private readonly dirs: { volumes: string; snapshots: string },
    /** Thin images may promise, together, this many times the pool filesystem's size (1: never more than the disk). */
    readonly thinOverprovision: number,
    private readonly listSnapshots: () => Promise<string[]>,
    /** How old a usage scan (every record read, one du) a scrape may reuse. */
    usageMaxAgeMs: number,
  ) {
    this.usageScan = new CachedScan(() => this.scanUsage(), usageMaxAgeMs);
  }

  /** A volume's record is in place (created, or found at start-up): what it promises is counted. */
  committed(key: string, record: VolumeRecord): void {
    if (isThinImage(record)) this.thinPromised += record.capacityBytes;
    this.sizes.set(key, { kind: record.kind, capacityBytes: record.capacityBytes });
  }

  /** A volume's record was rewritten (its capacity may have changed; its promise was adjusted by grown()). */
  rewritten(key: string, record: VolumeRecord): void {
    this.sizes.set(key, { kind: record.kind, capacityBytes: record.capacityBytes });
  }

  /** A volume's record left the pool, durably: what it promised is released. */
  released(key: string, record: VolumeRecord): void {
    if (isThinImage(record)) this.thinPromised -= record.capacityBytes;
    this.sizes.delete(key);
  }

  private async limit(): Promise<number> {
    return (await this.totalBytes()) * this.thinOverprovision;
  }

  /** Why a new volume does not fit, or undefined when it does. */
  async doesNotFit(record: VolumeRecord): Promise<string | undefined> {
    if (isThinImage(record)) {
      const limit = await this.limit();
      if (this.thinPromised + record.capacityBytes > limit) {
        return `thin volumes here may promise ${limit} bytes in all (${this.thinOverprovision} × the pool), ${this.thinPromised} are promised, ${record.capacityBytes} asked`;
      }
      return undefined;
    }
    const free = await this.freeBytes(FREE_SPACE_MAX_AGE_MS);
    return record.capacityBytes <= free ? undefined : `the local pool has ${free} bytes free, ${record.capacityBytes} asked`;
  }

  async capacityFor(provisioning: 'thick' | 'thin'): Promise<number> {
    if (provisioning === 'thick') return this.freeBytes();
    return Math.max(0, (await this.limit()) - this.thinPromised);
  }

  /** RESOURCE_EXHAUSTED when thin volumes may not promise `bytes` more. */
  async requireThinRoom(bytes: number, what: string): Promise<void> {
    const limit = await this.limit();
    if (this.thinPromised + bytes > limit)
      throw exhausted(`${what} would promise more than the ${limit} bytes thin volumes here may promise in all`);
  }

  /** Thin images now promise `bytes` more (negative: less). */
  thinChanged(bytes: number): void {
    this.thinPromised += bytes;
  }

  private async totalBytes(): Promise<number> {
    const st = await fs.statfs(this.root);
    return st.blocks * st.bsize;
  }

  /**
   * Free bytes in the pool's filesystem. `maxAgeMs` lets a hot path reuse a
   * reading a few hundred milliseconds old instead of a statfs per call.
   */
  async freeBytes(maxAgeMs = 0): Promise<number> {
    const now = Date.now();
    if (!this.free || now - this.free.at > maxAgeMs) {
      const st = await fs.statfs(this.root);
      this.free = { bytes: st.bavail * st.bsize, at: now };
    }
    return this.free.bytes;
  }

  /** What the pool holds (pool-usage.ts), from a scan at most a few seconds old. */
  usage(): Promise<PoolUsage> {
    return this.usageScan.get();
  }

  private async scanUsage(): Promise<PoolUsage> {
    const st = await fs.statfs(this.root);
    const [onDisk, snapshotsOnDisk] = await Promise.all([allocatedByEntry(this.dirs.volumes), allocatedByEntry(this.dirs.snapshots)]);
    const kinds = emptyKinds();
    for (const [name, v] of this.sizes)
      addVolume(kinds, v.kind, v.capacityBytes, onDisk.get(v.kind === 'block' ? name + IMAGE : name) ?? 0);
    const snapshots = await this.listSnapshots();
    let snapshotBytes = 0;
    for (const key of snapshots) snapshotBytes += (snapshotsOnDisk.get(key + IMAGE) ?? 0) + (snapshotsOnDisk.get(key) ?? 0);
    return {
      totalBytes: st.blocks * st.bsize,
      freeBytes: st.bavail * st.bsize,
      kinds,
      snapshots: { count: snapshots.length, allocatedBytes: snapshotBytes },
    };
  }
}

/**
 * Bytes allocated on disk by each entry of a directory (a tree summed, a
 * sparse or reflinked image counted by its own blocks), in one `du` process
 * rather than a walk in JavaScript. du exits 1 when an entry goes while it
 * reads (a delete): what it printed still stands.
 */
async function allocatedByEntry(dir: string): Promise<Map<string, number>> {
  const { stdout } = await run('du', ['--null', '-B1', '-x', '-a', '--max-depth=1', '--', dir], { okExitCodes: [1] });
  const sizes = new Map<string, number>();
  for (const line of stdout.split('\0')) {
    const tab = line.indexOf('\t');
    if (tab > 0) sizes.set(path.basename(line.slice(tab + 1)), Number(line.slice(0, tab)));
  }
  return sizes;
}
