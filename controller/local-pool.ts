// A local pool: a directory on one node holding volumes and their records.
//
//   <root>/volumes/<dir>/volume.json   the record (truth for the controller)
//   <root>/volumes/<dir>/data/         share kind: the volume's directory
//   <root>/volumes/<dir>/disk.img      block kind: a sparse image
//   <root>/.tmp/                       volumes being made (never visible)
//   <root>/.trash/                     volumes being deleted
//   <root>/retained/, <root>/archived/ what onDelete keeps
//
// A volume is built whole under .tmp and renamed into volumes/ in one step,
// so a crash leaves either nothing or a complete volume; leftovers in .tmp
// and .trash are swept at start-up.
import { constants as fsc } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { failedPrecondition } from '../driver/errors.js';
import { createFileDurable, createSparseFile, DirectorySync, fsyncDir, writeFileDurable } from './durable.js';
import { mkdirSync, renameSync } from 'node:fs';
import type { OnDelete } from './parameters.js';
import type { Pool } from './pool.js';
import { isSafeDirName, type VolumeKind } from './volume-id.js';

export interface Attachment {
  accessMode: string;
  readonly: boolean;
}

export interface VolumeRecord {
  version: 1;
  name: string;
  volumeId: string;
  kind: VolumeKind;
  capacityBytes: number;
  /** Block kind: the filesystem asked for at creation ('' for raw only). */
  fsType: string;
  /** Parameters that define the volume, compared when the name is reused. */
  parameters: Record<string, string>;
  volumeContext: Record<string, string>;
  onDelete: OnDelete;
  /** NFS pools: the volume's directory on the share. */
  subDir?: string;
  createdAt: string;
  attachments: Record<string, Attachment>;
}

const RECORD = 'volume.json';
const DATA = 'data';
const IMAGE = 'disk.img';

export class LocalPool implements Pool {
  readonly volumesDir: string;
  private readonly tmpDir: string;
  private readonly trashDir: string;
  private readonly volumesSync: DirectorySync;

  constructor(readonly root: string) {
    this.volumesDir = path.join(root, 'volumes');
    this.tmpDir = path.join(root, '.tmp');
    this.trashDir = path.join(root, '.trash');
    this.volumesSync = new DirectorySync(this.volumesDir);
  }

  /** Creates the layout and sweeps what a crash left half-done. */
  async init(): Promise<void> {
    for (const dir of [this.root, this.volumesDir, this.tmpDir, this.trashDir]) {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    }
    for (const dir of [this.tmpDir, this.trashDir]) {
      for (const entry of await fs.readdir(dir)) await fs.rm(path.join(dir, entry), { recursive: true, force: true });
    }
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

  volumeDir(dirName: string): string {
    if (!isSafeDirName(dirName)) throw new Error(`unsafe volume directory name ${JSON.stringify(dirName)}`);
    return path.join(this.volumesDir, dirName);
  }

  dataDir(dirName: string): string {
    return path.join(this.volumeDir(dirName), DATA);
  }

  imagePath(dirName: string): string {
    return path.join(this.volumeDir(dirName), IMAGE);
  }

  async read(dirName: string): Promise<VolumeRecord | undefined> {
    // Asynchronous on purpose: every RPC naming a volume reads its record,
    // and a stuck read must not stall the event loop (signals, Probe).
    try {
      return JSON.parse(await fs.readFile(path.join(this.volumeDir(dirName), RECORD), 'utf8')) as VolumeRecord;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async writeRecord(dirName: string, record: VolumeRecord): Promise<void> {
    await writeFileDurable(path.join(this.volumeDir(dirName), RECORD), JSON.stringify(record));
  }

  /**
   * Makes the volume whole under .tmp, then renames it into place. Modes are
   * given explicitly; the driver runs with umask 0 (see main.ts). Returns
   * false, leaving nothing behind, when a volume with that directory exists.
   */
  async create(dirName: string, record: VolumeRecord, mountPermissions: number): Promise<boolean> {
    const work = path.join(this.tmpDir, `${dirName}.${this.uniqueSuffix()}`);
    mkdirSync(work, { mode: 0o755 }); // sync metadata calls: see durable.ts
    try {
      if (record.kind === 'share') {
        mkdirSync(path.join(work, DATA), { mode: mountPermissions });
      } else {
        await createSparseFile(path.join(work, IMAGE), record.capacityBytes); // no blocks written
      }
      // The work directory is private until renamed: no temp file needed.
      await createFileDurable(path.join(work, RECORD), JSON.stringify(record));
      await fsyncDir(work);
      // rename(2) refuses to replace a non-empty directory: an existing
      // volume is never overwritten.
      renameSync(work, this.volumeDir(dirName));
    } catch (err) {
      await fs.rm(work, { recursive: true, force: true });
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
      throw err;
    }
    await this.volumesSync.sync();
    return true;
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

  /** Grows a block image (never shrinks). */
  async growImage(dirName: string, _record: VolumeRecord, bytes: number): Promise<void> {
    const handle = await fs.open(this.imagePath(dirName), 'r+');
    try {
      const { size } = await handle.stat();
      if (bytes > size) {
        await handle.truncate(bytes);
        await handle.sync();
      }
    } finally {
      await handle.close();
    }
  }

  /** Removes the volume from the pool as onDelete says. */
  async remove(dirName: string, _record: VolumeRecord, mode: OnDelete): Promise<void> {
    const from = this.volumeDir(dirName);
    if (mode === 'delete') {
      const doomed = path.join(this.trashDir, `${dirName}.${this.uniqueSuffix()}`);
      renameSync(from, doomed);
      await this.volumesSync.sync();
      // The volume is gone, durably; its bytes are freed in the background
      // (and at the next start-up if the process dies first).
      this.emptyTrash(doomed);
      return;
    }
    const keepDir = path.join(this.root, mode === 'retain' ? 'retained' : 'archived');
    await fs.mkdir(keepDir, { recursive: true, mode: 0o700 });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    let target = path.join(keepDir, mode === 'retain' ? dirName : `${dirName}-${stamp}`);
    if (mode === 'retain' && (await exists(target))) target = `${target}-${stamp}`;
    await fs.rename(from, target);
    await this.volumesSync.sync();
    await fsyncDir(keepDir);
  }

  /** Volume directory names in the pool, sorted. */
  async list(): Promise<string[]> {
    const names = await fs.readdir(this.volumesDir);
    return names.filter(isSafeDirName).sort();
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
      }
    } catch (err) {
      return `the volume's ${record.kind === 'share' ? 'directory' : 'image'} is missing (${(err as NodeJS.ErrnoException).code})`;
    }
    return undefined;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.lstat(p);
    return true;
  } catch {
    return false;
  }
}
