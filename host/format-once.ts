// Format once, and remember: the CSI node and the FlexVolume block driver
// keep, beside each block volume, a record that it holds a filesystem berth
// made or mounted. From then on the volume is never taken for blank, whatever
// its signature shows (formatAndMount refuses a recorded filesystem that
// vanished). One implementation for both, so their guards cannot drift.
import fs from 'node:fs/promises';
import path from 'node:path';
import { writeFileDurable } from './durable.js';
import { formatAndMount, type Host } from './host.js';

/** The record that a volume holds a filesystem. */
export interface FilesystemRecord {
  fsType: string;
  /** When berth made it, or first mounted one it found. */
  since: string;
  madeByBerth: boolean;
  /** The volume's id, where the caller has one (the CSI node). */
  volumeId?: string;
}

/** The record at `file`, or undefined when there is none; an unreadable record is an error, never "blank". */
export async function readFilesystemRecord(file: string): Promise<FilesystemRecord | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const record = JSON.parse(text) as Partial<FilesystemRecord>;
  if (typeof record.fsType !== 'string' || !record.fsType) throw new Error(`the filesystem record ${file} names no filesystem`);
  return record as FilesystemRecord;
}

/**
 * formatAndMount, guarded by the volume's filesystem record at `recordPath`
 * (made durably, in a directory of mode 0700, the first time a filesystem is
 * made or found there).
 */
export async function formatOnceAndMount(
  host: Host,
  device: string,
  target: string,
  fsType: string,
  options: readonly string[],
  volume: { recordPath: string; image?: string; readonly?: boolean; volumeId?: string },
): Promise<{ formatted: boolean }> {
  const known = await readFilesystemRecord(volume.recordPath);
  const result = await formatAndMount(host, device, target, fsType, options, {
    knownFilesystem: known?.fsType,
    image: volume.image,
    readonly: volume.readonly,
  });
  if (!known) {
    const record: FilesystemRecord = {
      ...(volume.volumeId ? { volumeId: volume.volumeId } : {}),
      fsType,
      since: new Date().toISOString(),
      madeByBerth: result.formatted,
    };
    await fs.mkdir(path.dirname(volume.recordPath), { recursive: true, mode: 0o700 });
    await writeFileDurable(volume.recordPath, JSON.stringify(record));
  }
  return result;
}
