// A volume's record: the small JSON document beside its bytes in the pool
// (local or NFS) that is the volume's truth for every service.
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
