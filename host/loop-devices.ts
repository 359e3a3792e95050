// Loop devices. The table is read from sysfs (/sys/block/loopN/loop/
// backing_file exists while a device is attached): no `losetup` process to
// look one up. Attaching, detaching and resizing go through losetup.
import fs from 'node:fs/promises';
import path from 'node:path';
import { run } from './run.js';

export interface LoopDevice {
  device: string;
  backingFile: string;
  /** The backing file was deleted while attached. */
  backingDeleted: boolean;
  /** Attached read-only (losetup -r): no write reaches the image through it. */
  readOnly: boolean;
}

const DELETED = ' (deleted)';

export async function readLoopTable(sysBlock = '/sys/block'): Promise<LoopDevice[]> {
  const names = (await fs.readdir(sysBlock).catch(() => [] as string[])).filter((n) => /^loop\d+$/.test(n));
  const found = await Promise.all(
    names.map(async (name) => {
      const back = await fs.readFile(path.join(sysBlock, name, 'loop/backing_file'), 'utf8').catch(() => undefined);
      if (back === undefined) return undefined; // not attached
      const file = back.replace(/\n$/, '');
      const deleted = file.endsWith(DELETED);
      const ro = (await fs.readFile(path.join(sysBlock, name, 'ro'), 'utf8').catch(() => '0')).trim() === '1';
      return {
        device: `/dev/${name}`,
        backingFile: deleted ? file.slice(0, -DELETED.length) : file,
        backingDeleted: deleted,
        readOnly: ro,
      };
    }),
  );
  return found.filter((l): l is LoopDevice => l !== undefined).sort((a, b) => a.device.localeCompare(b.device, 'en', { numeric: true }));
}

/** Attaches `image` to a new loop device with direct I/O (read-only with -r); returns the device. */
/**
 * Attaches an image. The device always has 512-byte sectors: with direct
 * I/O the kernel would otherwise take the image file's direct-I/O alignment,
 * which xfs raises to its block size once a file shares extents (a
 * snapshot, a clone), and a filesystem made with 1 KiB blocks would no
 * longer mount. Direct I/O stays on wherever 512 bytes suits the file.
 */
export async function losetupAttach(image: string, opts: { readOnly?: boolean } = {}): Promise<string> {
  const args = ['-f', '--show', '--direct-io=on', '--sector-size', '512', ...(opts.readOnly ? ['-r'] : []), '--', path.resolve(image)];
  const { stdout } = await run('losetup', args, { timeoutMs: 30_000 });
  return stdout.trim();
}

export async function losetupDetach(device: string): Promise<void> {
  await run('losetup', ['-d', device], { timeoutMs: 30_000 });
}

/** Makes the device see its image's current size (after the image grew). */
export async function losetupRefresh(device: string): Promise<void> {
  await run('losetup', ['-c', device], { timeoutMs: 30_000 });
}

/** A block device's size in bytes: sysfs for loop devices, blockdev otherwise. */
export async function blockDeviceSize(device: string): Promise<number> {
  const m = /^\/dev\/(loop\d+)$/.exec(device);
  if (m) {
    const sectors = await fs.readFile(`/sys/block/${m[1]}/size`, 'utf8').catch(() => undefined);
    if (sectors !== undefined) return Number(sectors.trim()) * 512;
  }
  const { stdout } = await run('blockdev', ['--getsize64', device], { timeoutMs: 15_000 });
  return Number(stdout.trim());
}
