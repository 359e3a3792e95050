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
import { constants as fsc, linkSync, mkdirSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type CopyMethod, copyImage, copyTree, reflinkSupported } from '../host/copy.js';
import { imageHasData } from '../host/data-check.js';
import {
  createUnsynced,
  DirectorySync,
  fsyncDir,
  makeThenSync,
  punchHole,
  reserveSpace,
  reserveUnsynced,
  sparseOf,
  writeContent,
  writeFileDurable,
} from '../host/durable.js';
import { fileExtents } from '../host/extents.js';
import { freezeImages, thawImages } from '../host/freeze.js';
import { readLoopTable } from '../host/loop-devices.js';
import type { SystemCalls } from '../host/native.js';
import { exists } from '../host/paths.js';
import { run } from '../host/run.js';
import { SharedRead } from '../host/shared-read.js';
import { exhausted, failedPrecondition } from '../volume/errors.js';
import { IMAGE_SUFFIX as IMAGE, LocalPoolLayout, RECORD_SUFFIX as RECORD } from '../volume/local-layout.js';
import { type OnDelete, readRecordFile, type SnapshotRecord, type VolumeRecord } from '../volume/record.js';
import { isSafeDirName } from '../volume/volume-id.js';
import type { ContentSource, Pool, SnapshotSource } from './pool.js';
import { addVolume, CachedScan, emptyKinds, type PoolUsage } from './pool-usage.js';

export class LocalPool extends LocalPoolLayout implements Pool {
  readonly type = 'local';
  private readonly tmpDir: string;
  private readonly trashDir: string;
  private readonly volumesSync: DirectorySync;
  readonly snapshotsDir: string;
  private readonly snapshotsSync: DirectorySync;
  private readonly restoringDir: string;
  private readonly freezingDir: string;
  /** How copies are made here: reflinks where the filesystem shares extents (found at init). */
  private copyMethod: CopyMethod = 'sparse-copy';

  /** Sum of the sizes of thin images: what they may yet claim (derived from the records at start-up). */
  private thinPromised = 0;

  /** Every volume's kind and capacity, by key: what usage() sums (from the records at start-up, then kept by this pool, their one writer). */
  private readonly volumeSizes = new Map<string, { kind: VolumeRecord['kind']; capacityBytes: number }>();

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
    this.usageScan = new CachedScan(() => this.scanUsage(), usageMaxAgeMs);
    this.tmpDir = path.join(root, '.tmp');
    this.trashDir = path.join(root, '.trash');
    this.volumesSync = new DirectorySync(this.volumesDir);
    this.snapshotsDir = path.join(root, 'snapshots');
    this.snapshotsSync = new DirectorySync(this.snapshotsDir);
    this.restoringDir = path.join(root, '.restoring');
    this.freezingDir = path.join(root, '.freezing');
  }

  /** Creates the layout and sweeps what a crash left half-done. */
  async init(): Promise<void> {
    const dirs = [this.root, this.volumesDir, this.snapshotsDir, this.restoringDir, this.freezingDir, this.tmpDir, this.trashDir];
    for (const dir of [...dirs, this.filesystemsDir]) {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    }
    for (const dir of [this.tmpDir, this.trashDir]) {
      for (const entry of await fs.readdir(dir)) await fs.rm(path.join(dir, entry), { recursive: true, force: true });
    }
    for (const dirName of await fs.readdir(this.restoringDir)) if (isSafeDirName(dirName)) await this.undoInterruptedCopy(dirName);
    await this.sweepInterruptedCreates();
    await this.sweepInterruptedSnapshots();
    this.copyMethod = (await reflinkSupported(this.tmpDir)) ? 'reflink' : 'sparse-copy';
    for (const name of await this.list()) {
      const rec = await this.read(name);
      if (rec) this.committed(name, rec);
    }
    // A copy killed between freeze and thaw leaves its volume frozen: thaw what berth froze, nothing else.
    const frozen = (await fs.readdir(this.freezingDir)).filter(isSafeDirName);
    await thawImages(frozen.map((k) => this.imagePath(k)));
    for (const k of frozen) await fs.rm(path.join(this.freezingDir, k), { force: true });
  }

  /** Snapshot bytes without a record: a snapshot that never committed (copies only, never user data). */
  private async sweepInterruptedSnapshots(): Promise<void> {
    const entries = await fs.readdir(this.snapshotsDir);
    const records = new Set(entries.filter((e) => e.endsWith(RECORD)).map((e) => e.slice(0, -RECORD.length)));
    for (const e of entries) {
      const key = e.endsWith(IMAGE) ? e.slice(0, -IMAGE.length) : e;
      if (!e.endsWith(RECORD) && !records.has(key)) await fs.rm(path.join(this.snapshotsDir, e), { recursive: true, force: true });
    }
  }

  /**
   * Data without a record is a create that never returned: removed while it
   * is still empty (a directory with no entries, an image with no block
   * written). Anything holding data is left where it is.
   */
  private async sweepInterruptedCreates(): Promise<void> {
    const entries = await fs.readdir(this.volumesDir, { withFileTypes: true });
    const records = new Set(entries.filter((e) => e.isFile() && e.name.endsWith(RECORD)).map((e) => e.name.slice(0, -RECORD.length)));
    let removed = false;
    for (const e of entries) {
      const p = path.join(this.volumesDir, e.name);
      if (e.isDirectory() && !records.has(e.name)) {
        removed =
          (await fs.rmdir(p).then(
            () => true,
            () => false,
          )) || removed; // fails, keeping it, unless empty
      } else if (
        e.isFile() &&
        e.name.endsWith(IMAGE) &&
        !records.has(e.name.slice(0, -IMAGE.length)) &&
        ((await fs.stat(p)).blocks === 0 || (await imageHasData(p)) === false) // sparse, or only reserved: no data
      ) {
        await fs.unlink(p);
        removed = true;
      }
    }
    if (removed) await this.volumesSync.sync();
    // Filesystem records of volumes that are gone (none should be: remove() takes them first).
    for (const name of await fs.readdir(this.filesystemsDir)) {
      if (name.endsWith(RECORD) && !records.has(name.slice(0, -RECORD.length)))
        await fs.rm(path.join(this.filesystemsDir, name), { force: true });
    }
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

  /** A new volume's record is in place: what it promises is counted. */
  private committed(dirName: string, record: VolumeRecord): void {
    if (isThin(record)) this.thinPromised += record.capacityBytes;
    this.volumeSizes.set(dirName, { kind: record.kind, capacityBytes: record.capacityBytes });
  }

  async writeRecord(dirName: string, record: VolumeRecord): Promise<void> {
    await writeFileDurable(this.recordPath(dirName), JSON.stringify(record), {
      tmp: path.join(this.tmpDir, `${dirName}${RECORD}.${this.uniqueSuffix()}`),
      syncDir: () => this.volumesSync.sync(),
    });
    this.volumeSizes.set(dirName, { kind: record.kind, capacityBytes: record.capacityBytes });
  }

  /**
   * Makes the volume (see the top of this file). Modes are given explicitly;
   * the driver runs with umask 0 (see main.ts). Returns false, leaving
   * nothing behind, when a volume with that directory name exists.
   */
  async create(dirName: string, record: VolumeRecord, mountPermissions: number, content?: ContentSource): Promise<boolean> {
    if (content) return this.createFrom(dirName, record, content);
    const data = record.kind === 'share' ? this.dataDir(dirName) : this.imagePath(dirName);
    const tmp = path.join(this.tmpDir, `${dirName}${RECORD}.${this.uniqueSuffix()}`);
    let claimed = false;
    let image = -1;
    try {
      // Sync metadata calls (see durable.ts); the data entry claims the name. Thick: the whole
      // image reserved before the volume exists (unwritten extents, no data), under the same fsyncs.
      const thick = record.kind === 'block' && !isThin(record);
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
    try {
      linkSync(tmp, this.recordPath(dirName)); // the commit point: link(2) never replaces a record
    } catch (err) {
      removeQuietly(data, record.kind === 'share');
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false; // a record whose data is gone: the caller reads it
      throw err;
    } finally {
      removeQuietly(tmp, false);
    }
    await this.volumesSync.sync();
    this.committed(dirName, record);
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
    const from = await this.contentPath(content, record.kind);
    const copy = path.join(this.tmpDir, `${dirName}.copy.${this.uniqueSuffix()}`);
    const data = record.kind === 'share' ? this.dataDir(dirName) : this.imagePath(dirName);
    const tmpRecord = path.join(this.tmpDir, `${dirName}${RECORD}.${this.uniqueSuffix()}`);
    const marker = path.join(this.restoringDir, dirName);
    try {
      await this.copyConsistent(content, from, copy, record.kind);
      if (record.kind === 'block') {
        if ((await fs.stat(copy)).size < record.capacityBytes) await fs.truncate(copy, record.capacityBytes);
        if (!isThin(record)) await reserveSpace(copy, record.capacityBytes, this.sys);
      }
      // Whatever holds the name without a record (an interrupted create that now holds data) is left alone.
      if (await exists(data)) throw Object.assign(new Error(`${data} exists`), { code: 'EEXIST' });
      // From here until the record is linked, data in volumes/ is this copy's (nothing was there
      // before, and the name is locked), and a restart removes it.
      await writeFileDurable(marker, record.volumeId, { tmp: path.join(this.tmpDir, `${dirName}.restoring.${this.uniqueSuffix()}`) });
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
    try {
      await makeThenSync((keep) => keep(createUnsynced(tmpRecord, writeContent(JSON.stringify(record)))));
      linkSync(tmpRecord, this.recordPath(dirName));
    } catch (err) {
      await fs.rm(data, { recursive: true, force: true }); // the copy placed above, nothing else
      await fs.rm(marker, { force: true });
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    } finally {
      removeQuietly(tmpRecord, false);
    }
    await this.volumesSync.sync();
    await fs.rm(marker, { force: true });
    this.committed(dirName, record);
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

  /** The bytes a content source names, checked to be there and of the kind asked. */
  private async contentPath(content: ContentSource, kind: VolumeRecord['kind']): Promise<string> {
    const p =
      'snapshot' in content
        ? kind === 'share'
          ? this.snapshotEntry(content.snapshot, '')
          : this.snapshotEntry(content.snapshot, IMAGE)
        : kind === 'share'
          ? this.dataDir(content.volume)
          : this.imagePath(content.volume);
    if (!(await exists(p))) throw failedPrecondition(`the bytes of the source (${p}) are missing`);
    return p;
  }

  /**
   * Copies a volume's bytes (or a snapshot's) to `to`. A volume's block image
   * staged on this node has its filesystem frozen for the copy, so the copy
   * is what a power cut at that instant would leave, with the journal clean.
   */
  private async copyConsistent(content: ContentSource, from: string, to: string, kind: VolumeRecord['kind'], freeze = true) {
    const thaw = 'volume' in content && kind === 'block' && freeze ? await this.freezeVolumes([content.volume]) : async () => undefined;
    try {
      if (kind === 'block') await copyImage(from, to, this.copyMethod);
      else await copyTree(from, to, this.copyMethod);
    } finally {
      await thaw();
    }
  }

  // -------------------------------------------------------------- snapshots

  private snapshotEntry(key: string, suffix: string): string {
    if (!isSafeDirName(key)) throw new Error(`unsafe snapshot name ${JSON.stringify(key)}`);
    return path.join(this.snapshotsDir, key + suffix);
  }

  readSnapshot(key: string): Promise<SnapshotRecord | undefined> {
    return readRecordFile<SnapshotRecord>(this.snapshotEntry(key, RECORD));
  }

  async listSnapshots(): Promise<string[]> {
    return (await fs.readdir(this.snapshotsDir))
      .filter((e) => e.endsWith(RECORD))
      .map((e) => e.slice(0, -RECORD.length))
      .filter(isSafeDirName)
      .sort();
  }

  /**
   * Takes a snapshot (see Pool): its bytes copied (reflinked) under .tmp,
   * moved into snapshots/, then the record linked (the commit point).
   */
  async createSnapshot(key: string, record: SnapshotRecord, source: SnapshotSource, opts: { freeze?: boolean } = {}) {
    if (await this.readSnapshot(key)) return undefined;
    const suffix = record.kind === 'block' ? IMAGE : '';
    const content: ContentSource = { volume: source.key, record: source.record };
    const from = await this.contentPath(content, record.kind);
    const copy = path.join(this.tmpDir, `${key}.snapshot.${this.uniqueSuffix()}`);
    const tmpRecord = path.join(this.tmpDir, `${key}${RECORD}.${this.uniqueSuffix()}`);
    const committed: SnapshotRecord = { ...record, method: this.copyMethod };
    try {
      await this.copyConsistent(content, from, copy, record.kind, opts.freeze ?? true);
      // No record holds the key: whatever is there is a leftover of an attempt that failed.
      await fs.rm(this.snapshotEntry(key, suffix), { recursive: true, force: true });
      renameSync(copy, this.snapshotEntry(key, suffix));
      await makeThenSync((keep) => keep(createUnsynced(tmpRecord, writeContent(JSON.stringify(committed)))));
      linkSync(tmpRecord, this.snapshotEntry(key, RECORD));
    } catch (err) {
      await fs.rm(copy, { recursive: true, force: true });
      await fs.rm(this.snapshotEntry(key, suffix), { recursive: true, force: true });
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw exhausted('the local pool has no room for the snapshot');
      throw err;
    } finally {
      removeQuietly(tmpRecord, false);
    }
    await this.snapshotsSync.sync();
    return committed;
  }

  /**
   * Freezes the staged filesystems of these block volumes; returns the thaw.
   * Each is marked in .freezing first, so a process killed before the thaw
   * has it thawed at the next start (not synced: a freeze does not outlive
   * the machine, and the page cache outlives the process).
   */
  async freezeVolumes(keys: readonly string[]): Promise<() => Promise<void>> {
    const markers = keys.map((k) => path.join(this.freezingDir, k));
    for (const m of markers) await fs.writeFile(m, '', { mode: 0o600 });
    const unmark = async () => {
      for (const m of markers) await fs.rm(m, { force: true });
    };
    try {
      const thaw = await freezeImages(keys.map((k) => this.imagePath(k)));
      return async () => {
        await thaw();
        await unmark();
      };
    } catch (err) {
      await unmark();
      throw err;
    }
  }

  /** Local snapshots are whole when their record is: nothing to wait for. */
  async settleSnapshot(_key: string, record: SnapshotRecord): Promise<SnapshotRecord> {
    return record;
  }

  /** The snapshot's image (block kind), for changed-block tracking. */
  snapshotImagePath(key: string): string {
    return this.snapshotEntry(key, IMAGE);
  }

  /** Removes a snapshot: its record first (it is gone from then on), its bytes in the background. */
  async removeSnapshot(key: string, record: SnapshotRecord): Promise<void> {
    const suffix = record.kind === 'block' ? IMAGE : '';
    const doomed = path.join(this.trashDir, `snapshot-${key}.${this.uniqueSuffix()}`);
    renameSync(this.snapshotEntry(key, RECORD), doomed + RECORD);
    moveIfThere(this.snapshotEntry(key, suffix), doomed + suffix);
    await this.snapshotsSync.sync();
    this.emptyTrash(doomed + suffix);
    this.emptyTrash(doomed + RECORD);
  }

  async doesNotFit(record: VolumeRecord): Promise<string | undefined> {
    if (isThin(record)) {
      const limit = (await this.totalBytes()) * this.thinOverprovision;
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
    return Math.max(0, (await this.totalBytes()) * this.thinOverprovision - this.thinPromised);
  }

  private async totalBytes(): Promise<number> {
    const st = await fs.statfs(this.root);
    return st.blocks * st.bsize;
  }

  private sequence = 0;
  private trash: Promise<void> = Promise.resolve();

  /** Unique among this pool's temporary names: pid (one writer per pool) and a counter. */
  private uniqueSuffix(): string {
    return `${process.pid}-${(++this.sequence).toString(36)}`;
  }

  /** Removes trashed volumes one at a time, so deletes never storm the disk. */
  private emptyTrash(entry: string): void {
    this.trash = this.trash.then(() => fs.rm(entry, { recursive: true, force: true }).catch(() => undefined));
  }

  /** Grows a block image (never shrinks); a thick one has its growth reserved first. */
  async growImage(dirName: string, record: VolumeRecord, bytes: number): Promise<void> {
    const image = this.imagePath(dirName);
    const { size } = await fs.stat(image);
    if (bytes <= size) return;
    if (isThin(record)) {
      const limit = (await this.totalBytes()) * this.thinOverprovision;
      if (this.thinPromised + bytes - size > limit) throw exhausted(`growing would promise more than ${limit} bytes of thin volumes`);
    } else {
      await reserveSpace(image, bytes, this.sys).catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'ENOSPC' ? exhausted(`the local pool has no room to grow the image to ${bytes} bytes`) : err;
      });
    }
    const handle = await fs.open(image, 'r+');
    try {
      await handle.truncate(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (isThin(record)) this.thinPromised += bytes - size;
  }

  /**
   * Makes a block image thick (its whole size reserved) or thin (its
   * unwritten and zeroed blocks given back); the caller records the change.
   */
  async changeProvisioning(dirName: string, record: VolumeRecord, to: 'thick' | 'thin'): Promise<void> {
    if (record.kind !== 'block' || (isThin(record) ? 'thin' : 'thick') === to) return;
    const image = this.imagePath(dirName);
    if (to === 'thick') {
      await reserveSpace(image, record.capacityBytes, this.sys).catch((err: NodeJS.ErrnoException) => {
        throw err.code === 'ENOSPC' ? exhausted(`the local pool has no room to reserve ${record.capacityBytes} bytes`) : err;
      });
      this.thinPromised -= record.capacityBytes;
    } else {
      const limit = (await this.totalBytes()) * this.thinOverprovision;
      if (this.thinPromised + record.capacityBytes > limit) throw exhausted(`thin volumes here may promise ${limit} bytes in all`);
      // Reserved blocks never written (unwritten extents) go back; what was written stays.
      for (const e of (await fileExtents(image)).filter((x) => x.unwritten)) {
        await punchHole(image, e.logical, e.length, this.sys);
      }
      this.thinPromised += record.capacityBytes;
    }
  }

  /**
   * Whether the volume is staged on this node: a loop device on a block
   * volume's image. The local driver records no attachments (it has no
   * attach step), so this is how its DeleteVolume knows a volume is in use.
   */
  async inUseHere(dirName: string, record: VolumeRecord): Promise<string | undefined> {
    if (record.kind !== 'block') return undefined;
    const image = this.imagePath(dirName);
    const loops = (await this.loopTable.get()).filter((l) => l.backingFile === image && !l.backingDeleted).map((l) => l.device);
    return loops.length > 0 ? `${loops.join(', ')} attached to its image` : undefined;
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
    const released = () => {
      if (isThin(record)) this.thinPromised -= record.capacityBytes;
      this.volumeSizes.delete(dirName);
    };
    if (mode === 'delete') {
      const doomed = path.join(this.trashDir, `${dirName}.${this.uniqueSuffix()}`);
      moveIfThere(data, doomed + dataSuffix);
      renameSync(this.recordPath(dirName), doomed + RECORD);
      await this.volumesSync.sync();
      released();
      // The volume is gone, durably; its bytes are freed in the background
      // (and at the next start-up if the process dies first).
      this.emptyTrash(doomed + dataSuffix);
      this.emptyTrash(doomed + RECORD);
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

  private free: { bytes: number; at: number } | undefined;

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

  private readonly usageScan: CachedScan<PoolUsage>;
  /** Concurrent deletes share reads of the loop table (see attachedLoops). */
  private readonly loopTable = new SharedRead(() => readLoopTable());

  /** What the pool holds (pool-usage.ts), from a scan at most a few seconds old. */
  usage(): Promise<PoolUsage> {
    return this.usageScan.get();
  }

  private async scanUsage(): Promise<PoolUsage> {
    const st = await fs.statfs(this.root);
    const [onDisk, snapshotsOnDisk] = await Promise.all([allocatedByEntry(this.volumesDir), allocatedByEntry(this.snapshotsDir)]);
    const kinds = emptyKinds();
    for (const [name, v] of this.volumeSizes)
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
        if (isThin(record) && (await this.nearlyFull())) return 'the pool is nearly full: writes to this thin volume may fail';
      }
    } catch (err) {
      return `the volume's ${record.kind === 'share' ? 'directory' : 'image'} is missing (${(err as NodeJS.ErrnoException).code})`;
    }
    return undefined;
  }
}

/** A thin block image: allocated as written (the record's parameters say how it was made). */
const isThin = (record: VolumeRecord) =>
  record.kind === 'block' && (record.mutableParameters?.provisioning ?? record.parameters.provisioning) === 'thin';

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

/** How stale the free-space reading behind a create's check may be. */
const FREE_SPACE_MAX_AGE_MS = 250;

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
