// Loop devices. The table is read from /proc/partitions and sysfs
// (/sys/block/loopN/loop/backing_file exists while a device is attached): no
// `losetup` process to look one up. Attaching, detaching and resizing go
// through losetup here, by ioctl in system-mounts.ts.
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

/**
 * Loop devices that may be attached: those /proc/partitions lists (it
 * leaves out devices of size 0, which every free loop device is). A node
 * may hold thousands of free loop devices (each attach that found none free
 * made one, and detaching keeps it): reading each one's sysfs files made
 * every lookup cost thousands of failed opens. An attached image of 0 bytes,
 * which holds nothing and which berth never makes, is not listed.
 */
async function candidates(): Promise<string[]> {
  const partitions = await fs.readFile('/proc/partitions', 'utf8').catch(() => undefined);
  const names =
    partitions === undefined
      ? await fs.readdir(SYS_BLOCK).catch(() => [] as string[])
      : partitions.split('\n').flatMap((line) => {
          const [major, , , name] = line.trim().split(/\s+/);
          return major === String(LOOP_MAJOR) && name ? [name] : [];
        });
  return names.filter((n) => /^loop\d+$/.test(n));
}

const LOOP_MAJOR = 7;
const SYS_BLOCK = '/sys/block';

export async function readLoopTable(): Promise<LoopDevice[]> {
  const names = await candidates();
  const found = await Promise.all(
    names.map(async (name) => {
      const back = await fs.readFile(path.join(SYS_BLOCK, name, 'loop/backing_file'), 'utf8').catch(() => undefined);
      if (back === undefined) return undefined; // not attached
      const file = back.replace(/\n$/, '');
      const deleted = file.endsWith(DELETED);
      const ro = (await fs.readFile(path.join(SYS_BLOCK, name, 'ro'), 'utf8').catch(() => '0')).trim() === '1';
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
