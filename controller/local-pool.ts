// A local pool: a directory on one node holding volumes and their records
// (the layout of volumes/ is in volume/local-layout.ts), and:
//
//   <root>/snapshots/<key>.json, <key>.img or <key>/   snapshots: record
//                               and bytes (reflinked where the filesystem can)
//   <root>/.tmp/                records and copies being made (never visible)
//   <root>/.restoring/<dir>     a copied volume moving into volumes/ (its data
//                               there without a record is removed at start-up)
//   <root>/.freezing/<dir>      a staged filesystem berth froze for a copy
//                               (thawed at start-up if the process died first)
//   <root>/.trash/              volumes being deleted
//   <root>/retained/, <root>/archived/   what onDelete keeps (data and record)
//
// Create: the data entry is made in volumes/ exclusively (mkdir, or open
// with O_EXCL), the record is written and fsynced under .tmp, then linked
// into volumes/ (link(2) never replaces: the commit point), and volumes/ is
// synced by group commit: one inode and one fsync fewer per volume than a
// volume directory holding data and record, the layout before.
// Delete moves the data out first and the record last, so a volume with a
// record always has its data; data without a record can only be an
// interrupted create, and start-up removes it while it is still empty.
//
// Start-up recovery is in local-pool-recovery.ts, what the pool promises and
// holds in local-capacity.ts, how bytes are copied in local-copies.ts and
// snapshots in local-snapshots.ts; this file is the volumes' create, copy
// and delete protocol.
import { constants as fsc, linkSync, mkdirSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import {
  createFileDurable,
  createUnsynced,
  DirectorySync,
  fsyncDir,
  linkIntoPlace,
  makeThenSync,
  reserveSpace,
  reserveUnsynced,
  sparseOf,
  writeContent,
  writeFileDurable,
} from '../host/durable.js';
import type { SystemCalls } from '../host/native.js';
import { exists } from '../host/paths.js';
import { exhausted, failedPrecondition } from '../volume/errors.js';
import { IMAGE_SUFFIX as IMAGE, LocalPoolLayout, RECORD_SUFFIX as RECORD } from '../volume/local-layout.js';
import { isThinImage, type OnDelete, type SnapshotRecord, type VolumeRecord } from '../volume/record.js';
import { isSafeDirName } from '../volume/volume-id.js';
import { LocalCapacity } from './local-capacity.js';
import { LocalCopier } from './local-copies.js';
import { changeProvisioning, growImage } from './local-images.js';
import { InUseHere } from './local-in-use.js';
import { sweepInterruptedCreates, sweepInterruptedSnapshots, thawInterruptedFreezes } from './local-pool-recovery.js';
import { PoolScratch } from './local-scratch.js';
import { LocalSnapshots } from './local-snapshots.js';
import type { ContentSource, Pool, SnapshotSource } from './pool.js';
import type { PoolUsage } from './pool-usage.js';

export class LocalPool extends LocalPoolLayout implements Pool {
  readonly type = 'local';
  private readonly scratch: PoolScratch;
  private readonly volumesSync: DirectorySync;
  private readonly restoringDir: string;
  private readonly freezingDir: string;
  private readonly copier: LocalCopier;
  private readonly snapshots: LocalSnapshots;

  /** What the pool has promised and holds. */
  private readonly capacity: LocalCapacity;

  /**
   * @param thinOverprovision thin images may promise, together, this many
   *   times the pool filesystem's size (1: never more than the disk).
   */
  constructor(
    root: string,
    readonly thinOverprovision = 1,
    /** How old a usage scan (every record read, one du) a scrape may reuse. */
    usageMaxAgeMs = 10_000,
    /** The berth_sys addon: fallocate without a process per thick image. */
    private readonly sys?: SystemCalls,
  ) {
    super(root);
    this.scratch = new PoolScratch(root);
    this.volumesSync = new DirectorySync(this.volumesDir);
    this.restoringDir = path.join(root, '.restoring');
    this.freezingDir = path.join(root, '.freezing');
    const snapshotsDir = path.join(root, 'snapshots');
    this.copier = new LocalCopier(
      {
        volume: (key, kind) => (kind === 'share' ? this.dataDir(key) : this.imagePath(key)),
        snapshot: (key, kind) => this.snapshots.dataPath(key, kind),
        image: (key) => this.imagePath(key),
      },
      this.freezingDir,
    );
    this.snapshots = new LocalSnapshots(snapshotsDir, this.scratch, this.copier);
    this.capacity = new LocalCapacity(
      root,
      { volumes: this.volumesDir, snapshots: snapshotsDir },
      thinOverprovision,
      () => this.listSnapshots(),
      usageMaxAgeMs,
    );
  }

  /** Creates the layout and sweeps what a crash left half-done. */
  async init(): Promise<void> {
    const { tmpDir, trashDir } = this.scratch;
    const dirs = [this.root, this.volumesDir, this.snapshots.dir, this.restoringDir, this.freezingDir, tmpDir, trashDir];
    for (const dir of [...dirs, this.filesystemsDir]) {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    }
    await this.scratch.sweep();
    for (const dirName of await fs.readdir(this.restoringDir)) if (isSafeDirName(dirName)) await this.undoInterruptedCopy(dirName);
    await sweepInterruptedCreates(this.volumesDir, this.volumesSync, this.filesystemsDir);
    await sweepInterruptedSnapshots(this.snapshots.dir);
    await this.copier.probe(tmpDir);
    for (const name of await this.list()) {
      const rec = await this.read(name);
      if (rec) this.capacity.committed(name, rec);
    }
    await thawInterruptedFreezes(this.freezingDir, (k) => this.imagePath(k));
  }

  get where(): string {
    return this.root;
  }

  /** Throws FAILED_PRECONDITION with the reason when the pool cannot serve. */
  async probe(): Promise<void> {
    try {
      const st = await fs.stat(this.volumesDir);
      if (!st.isDirectory()) throw new Error(`${this.volumesDir} is not a directory`);
      await fs.access(this.volumesDir, fsc.W_OK | fsc.R_OK | fsc.X_OK);
    } catch (err) {
      throw failedPrecondition(`local pool ${this.root} is not usable: ${(err as Error).message}`);
    }
  }

  async writeRecord(dirName: string, record: VolumeRecord): Promise<void> {
    await writeFileDurable(this.recordPath(dirName), JSON.stringify(record), {
      tmp: this.scratch.tmp(`${dirName}${RECORD}`),
      syncDir: () => this.volumesSync.sync(),
    });
    this.capacity.rewritten(dirName, record);
  }

  /**
   * Makes the volume (see the top of this file). Modes are given explicitly;
   * the driver runs with umask 0 (see main.ts). Returns false, leaving
   * nothing behind, when a volume with that directory name exists.
   */
  async create(dirName: string, record: VolumeRecord, mountPermissions: number, content?: ContentSource): Promise<boolean> {
    if (content) return this.createFrom(dirName, record, content);
    const data = record.kind === 'share' ? this.dataDir(dirName) : this.imagePath(dirName);
    const tmp = this.scratch.tmp(`${dirName}${RECORD}`);
    let claimed = false;
    let image = -1;
    try {
      // Sync metadata calls (see durable.ts); the data entry claims the name. Thick: the whole
      // image reserved before the volume exists (unwritten extents, no data), under the same fsyncs.
      const thick = record.kind === 'block' && !isThinImage(record);
      await makeThenSync(
        (keep) => {
          if (record.kind === 'share') mkdirSync(data, { mode: mountPermissions });
          else {
            image = createUnsynced(data, sparseOf(record.capacityBytes)); // no blocks written
            keep(image);
          }
          claimed = true;
          keep(createUnsynced(tmp, writeContent(JSON.stringify(record))));
        },
        thick ? () => reserveUnsynced(image, data, record.capacityBytes, this.sys) : undefined,
      );
    } catch (err) {
      removeQuietly(tmp, false);
      if (claimed) {
        removeQuietly(data, record.kind === 'share');
        if ((err as NodeJS.ErrnoException).code === 'ENOSPC')
          throw exhausted(`the local pool has no room for ${record.capacityBytes} bytes`);
        throw err;
      }
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (await this.read(dirName)) return false;
      throw failedPrecondition(
        `${data} exists without a record (an interrupted create that now holds data?); berth leaves it alone: move it away to reuse the name`,
      );
    }
    let linked: boolean;
    try {
      linked = linkIntoPlace(tmp, this.recordPath(dirName)); // the commit point
    } catch (err) {
      removeQuietly(data, record.kind === 'share');
      throw err;
    }
    if (!linked) {
      removeQuietly(data, record.kind === 'share');
      return false; // a record whose data is gone: the caller reads it
    }
    await this.volumesSync.sync();
    this.capacity.committed(dirName, record);
    return true;
  }

  /**
   * A volume whose bytes are a copy of a snapshot's or another volume's:
   * copied under .tmp (swept at start-up), grown to the record's size,
   * moved into volumes/ (a file by link(2), which never replaces; a
   * directory by rename(2) once no record holds the name), then the record
   * linked: the same commit point as an empty volume.
   */
  private async createFrom(dirName: string, record: VolumeRecord, content: ContentSource): Promise<boolean> {
    if (await this.read(dirName)) return false;
    await this.undoInterruptedCopy(dirName);
    await this.copier.sourcePath(content, record.kind); // FAILED_PRECONDITION before anything is made
    const copy = this.scratch.tmp(`${dirName}.copy`);
    const data = record.kind === 'share' ? this.dataDir(dirName) : this.imagePath(dirName);
    const tmpRecord = this.scratch.tmp(`${dirName}${RECORD}`);
    const marker = path.join(this.restoringDir, dirName);
    try {
      await this.copier.copy(content, copy, record.kind);
      if (record.kind === 'block') {
        if ((await fs.stat(copy)).size < record.capacityBytes) await fs.truncate(copy, record.capacityBytes);
        if (!isThinImage(record)) await reserveSpace(copy, record.capacityBytes, this.sys);
      }
      // Whatever holds the name without a record (an interrupted create that now holds data) is left alone.
      if (await exists(data)) throw Object.assign(new Error(`${data} exists`), { code: 'EEXIST' });
      // From here until the record is linked, data in volumes/ is this copy's (nothing was there
      // before, and the name is locked), and a restart removes it.
      await writeFileDurable(marker, record.volumeId, { tmp: this.scratch.tmp(`${dirName}.restoring`) });
      try {
        if (record.kind === 'block') linkSync(copy, data);
        else renameSync(copy, data);
      } catch (err) {
        await fs.rm(marker, { force: true }); // the copy never reached volumes/: nothing there is ours
        throw err;
      }
    } catch (err) {
      await fs.rm(copy, { recursive: true, force: true });
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC') throw exhausted(`the local pool has no room for a copy of ${record.capacityBytes} bytes`);
      if (code === 'EEXIST' || code === 'ENOTEMPTY')
        throw failedPrecondition(
          `${data} exists without a record (an interrupted create that now holds data?); berth leaves it alone: move it away to reuse the name`,
        );
      throw err;
    }
    await fs.rm(copy, { force: true }); // the image's second name (link above)
    const undoPlaced = async () => {
      await fs.rm(data, { recursive: true, force: true }); // the copy placed above, nothing else
      await fs.rm(marker, { force: true });
    };
    let linked: boolean;
    try {
      linked = await createFileDurable(tmpRecord, this.recordPath(dirName), JSON.stringify(record));
    } catch (err) {
      await undoPlaced();
      throw err;
    }
    if (!linked) {
      await undoPlaced();
      return false;
    }
    await this.volumesSync.sync();
    await fs.rm(marker, { force: true });
    this.capacity.committed(dirName, record);
    return true;
  }

  /** A copied volume that moved into volumes/ but never got its record: its data goes (it is a copy). */
  private async undoInterruptedCopy(dirName: string): Promise<void> {
    const marker = path.join(this.restoringDir, dirName);
    if (!(await exists(marker))) return;
    if (!(await this.read(dirName))) {
      await fs.rm(this.imagePath(dirName), { force: true });
      await fs.rm(this.dataDir(dirName), { recursive: true, force: true });
      await this.volumesSync.sync();
    }
    await fs.rm(marker, { force: true });
  }

  // -------------------------------------------------------------- snapshots

  readSnapshot(key: string): Promise<SnapshotRecord | undefined> {
    return this.snapshots.read(key);
  }

  listSnapshots(): Promise<string[]> {
    return this.snapshots.list();
  }

  /** Takes a snapshot (see Pool); `freeze` (default true) freezes a staged block volume's filesystem for the copy. */
  createSnapshot(key: string, record: SnapshotRecord, source: SnapshotSource, opts: { freeze?: boolean } = {}) {
    return this.snapshots.create(key, record, source, opts.freeze ?? true);
  }

  removeSnapshot(key: string, record: SnapshotRecord): Promise<void> {
    return this.snapshots.remove(key, record);
  }

  /** Local snapshots are whole when their record is: nothing to wait for. */
  async settleSnapshot(_key: string, record: SnapshotRecord): Promise<SnapshotRecord> {
    return record;
  }

  /** The snapshot's image (block kind), for changed-block tracking. */
  snapshotImagePath(key: string): string {
    return this.snapshots.dataPath(key, 'block');
  }

  /** Freezes the staged filesystems of these block volumes (a group snapshot's); returns the thaw. */
  freezeVolumes(keys: readonly string[]): Promise<() => Promise<void>> {
    return this.copier.freeze(keys);
  }

  // --------------------------------------------------------------- capacity

  doesNotFit(record: VolumeRecord): Promise<string | undefined> {
    return this.capacity.doesNotFit(record);
  }

  capacityFor(provisioning: 'thick' | 'thin'): Promise<number> {
    return this.capacity.capacityFor(provisioning);
  }

  freeBytes(maxAgeMs = 0): Promise<number> {
    return this.capacity.freeBytes(maxAgeMs);
  }

  /** What the pool holds (pool-usage.ts), from a scan at most a few seconds old. */
  usage(): Promise<PoolUsage> {
    return this.capacity.usage();
  }

  // ---------------------------------------------------------------- volumes

  /** Grows a block image (never shrinks); a thick one has its growth reserved first. */
  growImage(dirName: string, record: VolumeRecord, bytes: number): Promise<void> {
    return growImage(this.imagePath(dirName), record, bytes, this.capacity, this.sys);
  }

  /**
   * Makes a block image thick or thin; the caller records the change. Thin
   * gives back the blocks never written, found from the extent map; while
   * the image is in use a write could land between that reading and the
   * hole punched, and be lost, so it waits until the volume is unstaged.
   */
  async changeProvisioning(dirName: string, record: VolumeRecord, to: 'thick' | 'thin'): Promise<void> {
    const inUse = to === 'thin' && !isThinImage(record) ? await this.inUseHere(dirName, record) : undefined;
    if (inUse)
      throw failedPrecondition(`a thick volume becomes thin only while unstaged (${inUse}): its unwritten blocks are given back then`);
    return changeProvisioning(this.imagePath(dirName), record, to, this.capacity, this.sys);
  }

  /** Whether the volume is in use on this node (local-in-use.ts). */
  inUseHere(dirName: string, record: VolumeRecord): Promise<string | undefined> {
    return this.inUse.of(record.kind === 'share' ? this.dataDir(dirName) : this.imagePath(dirName), record.kind);
  }

  /**
   * Removes the volume from the pool as onDelete says: its data first, its
   * record last, so a crash in between leaves a record that DeleteVolume's
   * retry finds again.
   */
  async remove(dirName: string, record: VolumeRecord, mode: OnDelete): Promise<void> {
    const dataSuffix = record.kind === 'share' ? '' : IMAGE;
    const data = this.entry(dirName, dataSuffix);
    // The node's filesystem record goes first, durably: one left behind
    // would make a new volume of the same name refuse its first format.
    await this.removeFilesystemRecord(dirName);
    // From here the volume's record leaves volumes/: what it promised is released once that is durable.
    const released = () => this.capacity.released(dirName, record);
    if (mode === 'delete') {
      const doomed = this.scratch.doomed(dirName);
      moveIfThere(data, doomed + dataSuffix);
      renameSync(this.recordPath(dirName), doomed + RECORD);
      await this.volumesSync.sync();
      released();
      // The volume is gone, durably; its bytes are freed in the background
      // (and at the next start-up if the process dies first).
      this.scratch.empty(doomed + dataSuffix);
      this.scratch.empty(doomed + RECORD);
      return;
    }
    const keepDir = path.join(this.root, mode === 'retain' ? 'retained' : 'archived');
    await fs.mkdir(keepDir, { recursive: true, mode: 0o700 });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    let target = path.join(keepDir, mode === 'retain' ? dirName : `${dirName}-${stamp}`);
    if (mode === 'retain' && ((await exists(target + dataSuffix)) || (await exists(target + RECORD)))) target = `${target}-${stamp}`;
    moveIfThere(data, target + dataSuffix);
    renameSync(this.recordPath(dirName), target + RECORD);
    await this.volumesSync.sync();
    released();
    await fsyncDir(keepDir);
  }

  private async removeFilesystemRecord(dirName: string): Promise<void> {
    try {
      unlinkSync(this.filesystemRecordPath(dirName));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    await fsyncDir(this.filesystemsDir);
  }

  /** Volume directory names in the pool (those with a record), sorted. */
  async list(): Promise<string[]> {
    const entries = await fs.readdir(this.volumesDir, { withFileTypes: true });
    return entries
      .filter((e) => e.isFile() && e.name.endsWith(RECORD))
      .map((e) => e.name.slice(0, -RECORD.length))
      .filter(isSafeDirName)
      .sort();
  }

  private readonly inUse = new InUseHere();

  /** Why a volume's bytes are not usable, or undefined when they are. */
  async problem(dirName: string, record: VolumeRecord): Promise<string | undefined> {
    try {
      if (record.kind === 'share') {
        const st = await fs.stat(this.dataDir(dirName));
        if (!st.isDirectory()) return 'the volume directory is not a directory';
      } else {
        const st = await fs.stat(this.imagePath(dirName));
        if (!st.isFile()) return 'the volume image is not a regular file';
        if (st.size < record.capacityBytes) return `the image is ${st.size} bytes, smaller than the volume's ${record.capacityBytes}`;
        if (isThinImage(record) && (await this.nearlyFull())) return 'the pool is nearly full: writes to this thin volume may fail';
      }
    } catch (err) {
      return `the volume's ${record.kind === 'share' ? 'directory' : 'image'} is missing (${(err as NodeJS.ErrnoException).code})`;
    }
    return undefined;
  }
}

/** Undoes a step of a failed create; what cannot be removed stays (never recursive). */
function removeQuietly(p: string, isDirectory: boolean): void {
  try {
    if (isDirectory) rmdirSync(p);
    else unlinkSync(p);
  } catch {
    // already gone, or not ours to remove
  }
}

/** Renames `from` to `to`; a missing `from` (data lost before the delete) is not an error. */
function moveIfThere(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
