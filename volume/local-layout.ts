// Where a local pool keeps each volume, shared by the controller (which
// makes and removes volumes) and the node (which reads a record to find a
// volume's bytes):
//
//   <root>/volumes/<dir>.json   the record
//   <root>/volumes/<dir>/       share kind: the volume's directory
//   <root>/volumes/<dir>.img    block kind: a sparse image
//   <root>/filesystems/<dir>.json   block kind: the filesystem berth made or
//                               mounted on the image (written by the node)
//
// <dir> is always a safe path component (volumeDirName), checked again here.
import fs from 'node:fs/promises';
import path from 'node:path';
import { readRecordFile, type VolumeRecord } from './record.js';
import { isSafeDirName } from './volume-id.js';

export const RECORD_SUFFIX = '.json';
export const IMAGE_SUFFIX = '.img';

export class LocalPoolLayout {
  readonly volumesDir: string;

  constructor(readonly root: string) {
    this.volumesDir = path.join(root, 'volumes');
  }

  protected entry(dirName: string, suffix: string): string {
    if (!isSafeDirName(dirName)) throw new Error(`unsafe volume directory name ${JSON.stringify(dirName)}`);
    return path.join(this.volumesDir, dirName + suffix);
  }

  dataDir(dirName: string): string {
    return this.entry(dirName, '');
  }

  imagePath(dirName: string): string {
    return this.entry(dirName, IMAGE_SUFFIX);
  }

  recordPath(dirName: string): string {
    return this.entry(dirName, RECORD_SUFFIX);
  }

  get filesystemsDir(): string {
    return path.join(this.root, 'filesystems');
  }

  filesystemRecordPath(dirName: string): string {
    if (!isSafeDirName(dirName)) throw new Error(`unsafe volume directory name ${JSON.stringify(dirName)}`);
    return path.join(this.filesystemsDir, dirName + RECORD_SUFFIX);
  }

  /**
   * Whether the pool's filesystem is nearly full: less than 5 % of it (at
   * least 16 MiB) free. Thin volumes in it are reported abnormal from then
   * on, before a write inside them fails.
   */
  async nearlyFull(): Promise<boolean> {
    const st = await fs.statfs(this.root);
    const total = st.blocks * st.bsize;
    return st.bavail * st.bsize < Math.max(total * 0.05, 16 << 20);
  }

  /** The record, or undefined when there is none. */
  async read(dirName: string): Promise<VolumeRecord | undefined> {
    // Asynchronous on purpose: every RPC naming a volume reads its record,
    // and a stuck read must not stall the event loop (signals, Probe).
    return readRecordFile<VolumeRecord>(this.recordPath(dirName));
  }
}
