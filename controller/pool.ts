// What the controller needs of a pool, local or NFS. A pool stores each
// volume (a directory or an image) and its record, keyed by the volume's
// directory name (volumeDirName of its CSI name).
import type { OnDelete, SnapshotRecord, VolumeRecord } from '../volume/record.js';
import type { PoolUsage } from './pool-usage.js';

/** Where a new volume's bytes come from: a snapshot or another volume in the same pool, by key, with the record the caller read. */
export type ContentSource = { snapshot: string; record: SnapshotRecord } | { volume: string; record: VolumeRecord };

/** The volume a snapshot is taken of: its key and the record the caller read. */
export interface SnapshotSource {
  key: string;
  record: VolumeRecord;
}

export interface Pool {
  readonly type: 'local' | 'nfs';
  /** Where the pool is, as messages name it: its directory, or `<server>:<export>`. */
  readonly where: string;
  /** Throws FAILED_PRECONDITION (or UNAVAILABLE) with the reason when the pool cannot serve. */
  probe(): Promise<void>;
  read(key: string): Promise<VolumeRecord | undefined>;
  /** Makes the volume (empty, or a copy of `content`); false (leaving nothing behind) when one with this key exists. */
  create(key: string, record: VolumeRecord, mountPermissions: number, content?: ContentSource): Promise<boolean>;
  writeRecord(key: string, record: VolumeRecord): Promise<void>;
  /** Removes a volume (whose record the caller has read) as onDelete says. */
  remove(key: string, record: VolumeRecord, mode: OnDelete): Promise<void>;
  /** Keys of every volume, sorted. */
  list(): Promise<string[]>;
  freeBytes(maxAgeMs?: number): Promise<number>;
  /** Why a new volume of this record's size and provisioning does not fit, or undefined when it does. */
  doesNotFit(record: VolumeRecord): Promise<string | undefined>;
  /** What one new volume of these parameters can really get, given what is already promised. */
  capacityFor(provisioning: 'thick' | 'thin'): Promise<number>;
  /** Why a volume's bytes are not usable, or undefined when they are. */
  problem(key: string, record: VolumeRecord): Promise<string | undefined>;
  growImage(key: string, record: VolumeRecord, bytes: number): Promise<void>;
  /** What the pool holds: size, free space, and per kind volumes, promised and allocated bytes (pool-usage.ts). */
  usage(): Promise<PoolUsage>;

  readSnapshot(key: string): Promise<SnapshotRecord | undefined>;
  /** Keys of every snapshot, sorted. */
  listSnapshots(): Promise<string[]>;
  /**
   * Takes a snapshot; the record as committed, or undefined (making nothing)
   * when one with this key exists. `freeze` (default true): a staged local
   * block volume's filesystem is frozen for the copy (a group freezes its own).
   */
  createSnapshot(
    key: string,
    record: SnapshotRecord,
    source: SnapshotSource,
    opts?: { freeze?: boolean },
  ): Promise<SnapshotRecord | undefined>;
  removeSnapshot(key: string, record: SnapshotRecord): Promise<void>;
  /**
   * A snapshot's record once its bytes are whole, or as it is when they are
   * still being copied (NFS: waited for up to the copy wait when `waitForIt`).
   */
  settleSnapshot(key: string, record: SnapshotRecord, waitForIt?: boolean): Promise<SnapshotRecord>;
  /** A snapshot's image, readable by this process for changed-block tracking; undefined where it is not (NFS). */
  snapshotImagePath(key: string): string | undefined;

  /**
   * Makes a block image thick or thin; the caller records the change.
   * INVALID_ARGUMENT where the pool cannot (NFS images are always thin).
   */
  changeProvisioning(key: string, record: VolumeRecord, to: 'thick' | 'thin'): Promise<void>;
  /** Why a volume is in use on this machine (staged here), or undefined; what DeleteVolume refuses on. */
  inUseHere(key: string, record: VolumeRecord): Promise<string | undefined>;
  /** Freezes the staged filesystems of these block volumes for a group's copies; returns the thaw (nothing to freeze over NFS). */
  freezeVolumes(keys: readonly string[]): Promise<() => Promise<void>>;
}
