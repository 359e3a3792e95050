// A local pool's snapshots: <root>/snapshots/<key>.json (the record) and
// <key>.img or <key>/ (the bytes). A snapshot's bytes are copied
// (reflinked) under .tmp, moved into snapshots/, then its record linked:
// the commit point. Bytes without a record are swept at start-up.
import { renameSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createFileDurable, DirectorySync } from '../host/durable.js';
import { exhausted } from '../volume/errors.js';
import { IMAGE_SUFFIX as IMAGE, RECORD_SUFFIX as RECORD } from '../volume/local-layout.js';
import { readRecordFile, type SnapshotRecord } from '../volume/record.js';
import { isSafeDirName, type VolumeKind } from '../volume/volume-id.js';
import type { LocalCopier } from './local-copies.js';
import type { PoolScratch } from './local-scratch.js';
import type { SnapshotSource } from './pool.js';

export class LocalSnapshots {
  private readonly sync: DirectorySync;

  constructor(
    readonly dir: string,
    private readonly scratch: PoolScratch,
    private readonly copier: LocalCopier,
  ) {
    this.sync = new DirectorySync(dir);
  }

  private entry(key: string, suffix: string): string {
    if (!isSafeDirName(key)) throw new Error(`unsafe snapshot name ${JSON.stringify(key)}`);
    return path.join(this.dir, key + suffix);
  }

  /** A snapshot's bytes: its tree (share) or image (block). */
  dataPath(key: string, kind: VolumeKind): string {
    return this.entry(key, kind === 'block' ? IMAGE : '');
  }

  read(key: string): Promise<SnapshotRecord | undefined> {
    return readRecordFile<SnapshotRecord>(this.entry(key, RECORD));
  }

  async list(): Promise<string[]> {
    return (await fs.readdir(this.dir))
      .filter((e) => e.endsWith(RECORD))
      .map((e) => e.slice(0, -RECORD.length))
      .filter(isSafeDirName)
      .sort();
  }

  /** Takes a snapshot; the record as committed, or undefined (making nothing) when one with this key exists. */
  async create(key: string, record: SnapshotRecord, source: SnapshotSource, freeze: boolean): Promise<SnapshotRecord | undefined> {
    if (await this.read(key)) return undefined;
    const data = this.dataPath(key, record.kind);
    const copy = this.scratch.tmp(`${key}.snapshot`);
    const committed: SnapshotRecord = { ...record, method: this.copier.method };
    try {
      await this.copier.copy({ volume: source.key, record: source.record }, copy, record.kind, freeze);
      // No record holds the key: whatever is there is a leftover of an attempt that failed.
      await fs.rm(data, { recursive: true, force: true });
      renameSync(copy, data);
      if (!(await createFileDurable(this.scratch.tmp(`${key}${RECORD}`), this.entry(key, RECORD), JSON.stringify(committed))))
        throw Object.assign(new Error(`snapshot ${key} was committed by another call`), { code: 'EEXIST' });
    } catch (err) {
      await fs.rm(copy, { recursive: true, force: true });
      await fs.rm(data, { recursive: true, force: true });
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw exhausted('the local pool has no room for the snapshot');
      throw err;
    }
    await this.sync.sync();
    return committed;
  }

  /** Removes a snapshot: its record first (it is gone from then on), its bytes in the background. */
  async remove(key: string, record: SnapshotRecord): Promise<void> {
    const suffix = record.kind === 'block' ? IMAGE : '';
    const doomed = this.scratch.doomed(`snapshot-${key}`);
    renameSync(this.entry(key, RECORD), doomed + RECORD);
    try {
      renameSync(this.entry(key, suffix), doomed + suffix);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    await this.sync.sync();
    this.scratch.empty(doomed + suffix);
    this.scratch.empty(doomed + RECORD);
  }
}
