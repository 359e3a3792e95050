// What the node staged at each staging path, and how: written once a stage
// succeeds, removed once an unstage does. A second NodeStageVolume at the
// same path with other mount flags or another access mode is ALREADY_EXISTS
// (the spec's "staged incompatibly"), which the mount table alone cannot
// tell: kernels add, drop and rename mount options. The flags themselves
// may hold credentials, so only their hash is kept.
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { writeFileDurable } from '../host/durable.js';
import { readRecordFile } from '../volume/record.js';

export interface StageRecord {
  volumeId: string;
  accessType: 'mount' | 'block';
  accessMode: string;
  fsType: string;
  /** sha256 of the sorted mount flags: compared, never shown. */
  mountFlags: string;
  /** Where it is staged (absent in records written before berth kept it), for the node's status. */
  stagingPath?: string;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export function stageRecordOf(
  volumeId: string,
  accessType: 'mount' | 'block',
  accessMode: string,
  fsType: string,
  flags: readonly string[],
): StageRecord {
  return { volumeId, accessType, accessMode, fsType, mountFlags: sha256(JSON.stringify([...flags].sort())) };
}

/** The fields in which two stage requests differ (names only). */
export function stageDifference(was: StageRecord, now: StageRecord): string[] {
  return (['volumeId', 'accessType', 'accessMode', 'fsType', 'mountFlags'] as const).filter((k) => was[k] !== now[k]);
}

export class StageRecords {
  constructor(readonly dir: string) {}

  private file(staging: string): string {
    return path.join(this.dir, `${sha256(staging)}.json`);
  }

  read(staging: string): Promise<StageRecord | undefined> {
    return readRecordFile<StageRecord>(this.file(staging));
  }

  async write(staging: string, record: StageRecord): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileDurable(this.file(staging), JSON.stringify({ ...record, stagingPath: staging }));
  }

  /** Every record (what this node has staged). */
  async list(): Promise<StageRecord[]> {
    let names: string[];
    try {
      names = (await fs.readdir(this.dir)).filter((n) => /^[0-9a-f]{64}\.json$/.test(n));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const records = await Promise.all(names.map((n) => readRecordFile<StageRecord>(path.join(this.dir, n)).catch(() => undefined)));
    return records.filter((r): r is StageRecord => r !== undefined);
  }

  async remove(staging: string): Promise<void> {
    await fs.rm(this.file(staging), { force: true });
  }
}
