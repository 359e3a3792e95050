// What is on a device, making a filesystem, and growing one. `blkid -p`
// probes the device itself (no udev cache); exit 2 means no signature at all.
import fs from 'node:fs/promises';
import path from 'node:path';
import { run } from './run.js';

export type DeviceContent = { state: 'blank' } | { state: 'filesystem'; fsType: string } | { state: 'other'; description: string };

export async function probeDevice(device: string): Promise<DeviceContent> {
  const { stdout, exitCode } = await run('blkid', ['-p', '-o', 'export', device], { okExitCodes: [2], timeoutMs: 30_000 });
  if (exitCode === 2) return { state: 'blank' };
  const fields = new Map(
    stdout
      .split('\n')
      .map((line) => line.split('=', 2) as [string, string])
      .filter((kv) => kv.length === 2),
  );
  const type = fields.get('TYPE');
  if (type && fields.get('USAGE') === 'filesystem') return { state: 'filesystem', fsType: type };
  const what = [...fields].filter(([k]) => ['TYPE', 'PTTYPE', 'USAGE'].includes(k)).map(([k, v]) => `${k}=${v}`);
  return { state: 'other', description: what.join(' ') || 'an unrecognised signature' };
}

// No discard: on a loop device it punches holes through the image, which
// throws away a thick image's reservation (and an image was proven blank).
const MKFS: Record<string, string[]> = {
  ext4: ['mkfs.ext4', '-q', '-m', '0', '-E', 'nodiscard'],
  // No -f: xfs and btrfs refuse to overwrite a signature themselves, a
  // second guard behind the blkid probe.
  xfs: ['mkfs.xfs', '-q', '-K'],
  btrfs: ['mkfs.btrfs', '-q', '--nodiscard'],
};

/** Makes a filesystem. Callers prove the device blank first (host.ts formatAndMount). */
export async function mkfs(device: string, fsType: string): Promise<void> {
  const [cmd, ...args] = MKFS[fsType] ?? [];
  if (!cmd) throw new Error(`no mkfs for filesystem "${fsType}"`);
  await run(cmd, [...args, device], { timeoutMs: 300_000 });
}

/**
 * Size in bytes of the filesystem on `device` (mounted at `mountPoint` for
 * xfs and btrfs, whose tools read a mounted filesystem).
 */
export async function filesystemSize(fsType: string, device: string, mountPoint?: string): Promise<number> {
  if (fsType === 'ext4') {
    const { stdout } = await run('dumpe2fs', ['-h', device], { timeoutMs: 30_000 });
    const count = /^Block count:\s+(\d+)/m.exec(stdout)?.[1];
    const size = /^Block size:\s+(\d+)/m.exec(stdout)?.[1];
    if (count && size) return Number(count) * Number(size);
  } else if (fsType === 'xfs' && mountPoint) {
    const { stdout } = await run('xfs_info', [mountPoint], { timeoutMs: 30_000 });
    const m = /^data\s+=\s+bsize=(\d+)\s+blocks=(\d+)/m.exec(stdout);
    if (m) return Number(m[1]) * Number(m[2]);
  } else if (fsType === 'btrfs' && mountPoint) {
    const { stdout } = await run('btrfs', ['filesystem', 'show', '--raw', mountPoint], { timeoutMs: 30_000 });
    const m = /devid\s+1\s+size\s+(\d+)/.exec(stdout);
    if (m) return Number(m[1]);
  }
  throw new Error(`cannot read the size of the ${fsType} filesystem on ${device}`);
}

/** Grows an unmounted ext4 filesystem to fill its device (fsck first, as resize2fs demands). */
export async function growOffline(fsType: string, device: string): Promise<void> {
  if (fsType !== 'ext4') throw new Error(`cannot grow an unmounted ${fsType} filesystem`);
  await run('e2fsck', ['-f', '-p', device], { timeoutMs: 600_000, okExitCodes: [1] });
  await run('resize2fs', [device], { timeoutMs: 600_000 });
}

/** Grows a mounted filesystem to fill its device. */
export async function growMounted(fsType: string, device: string, mountPoint: string): Promise<void> {
  if (fsType === 'xfs') await run('xfs_growfs', [mountPoint], { timeoutMs: 600_000 });
  else if (fsType === 'btrfs') await run('btrfs', ['filesystem', 'resize', 'max', mountPoint], { timeoutMs: 600_000 });
  else if (fsType === 'ext4') await run('resize2fs', [device], { timeoutMs: 600_000 });
  else throw new Error(`cannot grow filesystem "${fsType}"`);
}

/**
 * Checks a filesystem before a read-write mount where its tools want one:
 * ext4 after an unclean stop (e2fsck -p replays the journal and repairs
 * what is safe; a clean filesystem returns at once). Throws when problems
 * remain that need a person (e2fsck exit 4 or more).
 */
export async function checkFilesystem(fsType: string, device: string): Promise<void> {
  if (fsType !== 'ext4') return; // xfs and btrfs replay their logs at mount
  await run('e2fsck', ['-p', device], { timeoutMs: 600_000, okExitCodes: [1] });
}

/**
 * How many errors the filesystem on a mounted device has recorded since it
 * was made or last repaired: ext4 keeps the count in its superblock and
 * shows it in sysfs. Undefined for filesystems that keep no such count.
 */
export async function filesystemErrors(fsType: string, device: string): Promise<number | undefined> {
  if (fsType !== 'ext4') return undefined;
  const text = await fs.readFile(`/sys/fs/ext4/${path.basename(device)}/errors_count`, 'utf8').catch(() => undefined);
  return text === undefined ? undefined : Number(text.trim());
}
