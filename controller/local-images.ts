// A local block image's size and provisioning: grown (never shrunk), with a
// thick image's growth reserved first and a thin one's counted against the
// pool's promise; and converted between thick (every block reserved) and
// thin (blocks never written given back).
import fs from 'node:fs/promises';
import { punchHole, reserveSpace } from '../host/durable.js';
import { fileExtents } from '../host/extents.js';
import type { SystemCalls } from '../host/native.js';
import { exhausted } from '../volume/errors.js';
import { isThinImage, type VolumeRecord } from '../volume/record.js';
import type { LocalCapacity } from './local-capacity.js';

/** Grows a block image (never shrinks); a thick one has its growth reserved first. */
export async function growImage(
  image: string,
  record: VolumeRecord,
  bytes: number,
  capacity: LocalCapacity,
  sys?: SystemCalls,
): Promise<void> {
  const { size } = await fs.stat(image);
  if (bytes <= size) return;
  if (isThinImage(record)) await capacity.requireThinRoom(bytes - size, 'growing the image');
  else {
    await reserveSpace(image, bytes, sys).catch((err: NodeJS.ErrnoException) => {
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
  if (isThinImage(record)) capacity.thinChanged(bytes - size);
}

/**
 * Makes a block image thick (its whole size reserved) or thin (its
 * unwritten and zeroed blocks given back); the caller records the change.
 */
export async function changeProvisioning(
  image: string,
  record: VolumeRecord,
  to: 'thick' | 'thin',
  capacity: LocalCapacity,
  sys?: SystemCalls,
): Promise<void> {
  if (record.kind !== 'block' || (isThinImage(record) ? 'thin' : 'thick') === to) return;
  if (to === 'thick') {
    await reserveSpace(image, record.capacityBytes, sys).catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'ENOSPC' ? exhausted(`the local pool has no room to reserve ${record.capacityBytes} bytes`) : err;
    });
    capacity.thinChanged(-record.capacityBytes);
  } else {
    await capacity.requireThinRoom(record.capacityBytes, 'making the image thin');
    // Reserved blocks never written (unwritten extents) go back; what was written stays.
    for (const e of (await fileExtents(image)).filter((x) => x.unwritten)) {
      await punchHole(image, e.logical, e.length, sys);
    }
    capacity.thinChanged(record.capacityBytes);
  }
}
