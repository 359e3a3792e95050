// What a local pool's start-up sweeps: the leftovers of creates, copies,
// snapshots and freezes that a crash (or SIGKILL) cut short. Each sweep
// removes only what berth made and can prove holds no data; anything else
// stays where it is.
import fs from 'node:fs/promises';
import path from 'node:path';
import { imageHasData } from '../host/data-check.js';
import type { DirectorySync } from '../host/durable.js';
import { thawImages } from '../host/freeze.js';
import { IMAGE_SUFFIX as IMAGE, RECORD_SUFFIX as RECORD } from '../volume/local-layout.js';
import { isSafeDirName } from '../volume/volume-id.js';
import { FREEZE_MARK } from './local-copies.js';

/** Snapshot bytes without a record: a snapshot that never committed (copies only, never user data). */
export async function sweepInterruptedSnapshots(snapshotsDir: string): Promise<void> {
  const entries = await fs.readdir(snapshotsDir);
  const records = new Set(entries.filter((e) => e.endsWith(RECORD)).map((e) => e.slice(0, -RECORD.length)));
  for (const e of entries) {
    const key = e.endsWith(IMAGE) ? e.slice(0, -IMAGE.length) : e;
    if (!e.endsWith(RECORD) && !records.has(key)) await fs.rm(path.join(snapshotsDir, e), { recursive: true, force: true });
  }
}

/**
 * Data without a record is a create that never returned: removed while it
 * is still empty (a directory with no entries, an image with no block
 * written). Anything holding data is left where it is. Filesystem records
 * of volumes that are gone go too.
 */
export async function sweepInterruptedCreates(volumesDir: string, volumesSync: DirectorySync, filesystemsDir: string): Promise<void> {
  const entries = await fs.readdir(volumesDir, { withFileTypes: true });
  const records = new Set(entries.filter((e) => e.isFile() && e.name.endsWith(RECORD)).map((e) => e.name.slice(0, -RECORD.length)));
  let removed = false;
  for (const e of entries) {
    const p = path.join(volumesDir, e.name);
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
  if (removed) await volumesSync.sync();
  // None should be: remove() takes a volume's filesystem record first.
  for (const name of await fs.readdir(filesystemsDir)) {
    if (name.endsWith(RECORD) && !records.has(name.slice(0, -RECORD.length))) await fs.rm(path.join(filesystemsDir, name), { force: true });
  }
}

/** A copy killed between freeze and thaw leaves its volume frozen: thaw what berth marked frozen, nothing else. */
export async function thawInterruptedFreezes(freezingDir: string, imagePath: (key: string) => string): Promise<void> {
  const marks = await fs.readdir(freezingDir);
  // A mark is `<key>@<unique>` (local-copies.ts), or `<key>` as written before marks were unique.
  const keys = new Set(marks.map((m) => m.split(FREEZE_MARK)[0] as string).filter(isSafeDirName));
  await thawImages([...keys].map(imagePath));
  for (const m of marks) await fs.rm(path.join(freezingDir, m), { force: true });
}
