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
  /** What the volume's bytes were copied from, if anything (CreateVolume's content source). */
  contentSource?: { snapshotId: string } | { volumeId: string };
  /** Changes a VolumeAttributesClass made since creation (ControllerModifyVolume); they win over `parameters`. */
  mutableParameters?: Record<string, string>;
}

/**
 * A snapshot's record, beside its bytes in the pool of its source volume.
 * A snapshot is independent of its source once taken: its bytes are its own
 * (a reflink shares blocks copy-on-write, never content).
 */
export interface SnapshotRecord {
  version: 1;
  name: string;
  snapshotId: string;
  sourceVolumeId: string;
  kind: VolumeKind;
  /** The source's capacity when taken: the least a restore gets. */
  sizeBytes: number;
  /** Block kind: the source's filesystem ('' for raw), so a restore is never taken for blank. */
  fsType: string;
  /** The source's defining parameters (pool, kind, provisioning): a restore keeps them. */
  sourceParameters: Record<string, string>;
  createdAt: string;
  /** False while an NFS copy runs (it finishes in the background). */
  readyToUse: boolean;
  /** How its bytes were made: a reflink (shared extents), a sparse copy, or a copy over NFS. */
  method: 'reflink' | 'sparse-copy' | 'nfs-copy';
  /** A group snapshot's member: the group, its name, and how many members it has (fewer found: interrupted). */
  groupSnapshotId?: string;
  groupName?: string;
  groupSize?: number;
  /** Group snapshots: the source volumes of the whole group, sorted (a member lost to a crash still says what the group was of). */
  groupSources?: string[];
  /** NFS pools: the snapshot's directory on the share, and its source's (what the copy reads). */
  subDir?: string;
  sourceSubDir?: string;
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

/** A block image allocated as written: its provisioning as last changed (ControllerModifyVolume), else as created. */
export const isThinImage = (record: VolumeRecord) =>
  record.kind === 'block' && (record.mutableParameters?.provisioning ?? record.parameters.provisioning) === 'thin';
