// A volume's record: the small JSON document beside its bytes in the pool
// (local or NFS) that is the volume's truth for every service.
import fs from 'node:fs/promises';
import type { VolumeKind } from './volume-id.js';

export type OnDelete = 'delete' | 'retain' | 'archive';

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

/**
 * The node's record that a block volume holds a filesystem berth made or
 * mounted: from then on the volume is never taken for blank, whatever its
 * signature shows. Kept apart from the volume record, which the controller
 * writes, so the two never race.
 */
export interface FilesystemRecord {
  volumeId: string;
  fsType: string;
  /** When berth made it, or first mounted one it found. */
  since: string;
  madeByBerth: boolean;
}

/** A record's content, or undefined when there is no such file (any other failure is thrown). */
export async function readRecordFile<T>(file: string): Promise<T | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as T;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
