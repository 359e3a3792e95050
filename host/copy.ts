// Copies inside a local pool's filesystem, for snapshots, restores and
// clones: a reflink where the filesystem shares extents (xfs with reflink,
// btrfs: FICLONE, milliseconds and no space until the copies diverge),
// else a sparse-aware copy (GNU cp finds the data with SEEK_DATA/SEEK_HOLE
// and writes runs of zeros as holes), so a thin image stays thin.
import { constants as fsc } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { run } from './run.js';

export type CopyMethod = 'reflink' | 'sparse-copy';

/**
 * Whether files in `dir` can be reflinked: one FICLONE of a probe file
 * (an empty file clones on ext4 too, so the probe holds a block).
 */
export async function reflinkSupported(dir: string): Promise<boolean> {
  const probe = path.join(dir, `reflink-probe-${process.pid}`);
  try {
    await fs.writeFile(probe, Buffer.alloc(4096, 1), { mode: 0o600 });
    await fs.copyFile(probe, `${probe}.clone`, fsc.COPYFILE_FICLONE_FORCE);
    return true;
  } catch {
    return false;
  } finally {
    await fs.rm(probe, { force: true });
    await fs.rm(`${probe}.clone`, { force: true });
  }
}

/** Copies one image to a new file (never replacing one), mode 0600, and makes the copy durable. */
export async function copyImage(from: string, to: string, method: CopyMethod): Promise<void> {
  if (method === 'reflink') await fs.copyFile(from, to, fsc.COPYFILE_FICLONE_FORCE | fsc.COPYFILE_EXCL);
  else {
    if (
      await fs.stat(to).then(
        () => true,
        () => false,
      )
    )
      throw Object.assign(new Error(`${to} exists`), { code: 'EEXIST' });
    await run('cp', ['--reflink=never', '--sparse=always', '--no-preserve=all', '--', from, to], { timeoutMs: 3_600_000 });
  }
  const handle = await fs.open(to, 'r');
  try {
    // cp makes the copy 0666 less the umask, which the driver keeps at 0: an image is its volume's only.
    await handle.chmod(0o600);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Copies a directory tree into `to` (made here, mode and owner kept):
 * symbolic links are copied as links, never followed, so nothing outside
 * the tree is read. Durable once it returns (syncfs of the pool's filesystem).
 */
export async function copyTree(from: string, to: string, method: CopyMethod): Promise<void> {
  // GNU cp: a reflink shares extents as they are, so it takes --sparse=auto; a copy writes zeros as holes.
  const how = method === 'reflink' ? ['--reflink=always', '--sparse=auto'] : ['--reflink=never', '--sparse=always'];
  await run('cp', ['-a', '--no-dereference', ...how, '--', from, to], {
    timeoutMs: 3_600_000,
  });
  await run('sync', ['-f', to], { timeoutMs: 600_000 });
}
