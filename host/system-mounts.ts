// Mounts, unmounts and loop devices by system call (the berth_sys addon),
// with the same meaning as the commands in mounter.ts and loop-devices.ts,
// which remain for what a syscall should not do from the driver's thread
// pool: anything on a network filesystem (an NFS mount runs its helper, and
// a call that waits on a dead server would hold a thread for good, where a
// command only holds its own process), and options only mount(8) knows.
import path from 'node:path';
import { losetupAttach } from './loop-devices.js';
import { type MountEntry, readMountTable, topMount } from './mount-table.js';
import { BusyError, bindMount, type MountOptions, mount, unmount } from './mounter.js';
import { MS, type SystemCalls } from './native.js';

/** Filesystems whose calls never wait on another machine: the syscall is safe on them. */
const LOCAL_FILESYSTEMS = new Set(['ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'tmpfs', 'devtmpfs', 'ramfs', 'overlay', 'f2fs', 'vfat']);

/** Per-mount options that are flags of mount(2), and whether the option sets or clears them. */
const FLAG_OPTIONS: Record<string, [number, boolean]> = {
  ro: [MS.RDONLY, true],
  rw: [MS.RDONLY, false],
  nosuid: [MS.NOSUID, true],
  suid: [MS.NOSUID, false],
  nodev: [MS.NODEV, true],
  dev: [MS.NODEV, false],
  noexec: [MS.NOEXEC, true],
  exec: [MS.NOEXEC, false],
  sync: [MS.SYNCHRONOUS, true],
  async: [MS.SYNCHRONOUS, false],
  dirsync: [MS.DIRSYNC, true],
  noatime: [MS.NOATIME, true],
  atime: [MS.NOATIME, false],
  nodiratime: [MS.NODIRATIME, true],
  diratime: [MS.NODIRATIME, false],
  relatime: [MS.RELATIME, true],
  norelatime: [MS.RELATIME, false],
  strictatime: [MS.STRICTATIME, true],
  nostrictatime: [MS.STRICTATIME, false],
  lazytime: [MS.LAZYTIME, true],
  nolazytime: [MS.LAZYTIME, false],
};

/** Options mount(8) keeps to itself (fstab's), never passed to the kernel. */
const USERSPACE_ONLY = /^(defaults|auto|noauto|nofail|_netdev|x-.*|comment=.*)$/;

/**
 * mount(2)'s flags and data for a list of mount(8) options, or undefined
 * when one of them is an operation only mount(8) performs (loop, bind,
 * user...). Unknown options go to the filesystem as data, as mount(8) would.
 */
export function systemMountArguments(options: readonly string[]): { flags: number; data: string } | undefined {
  let flags = 0;
  const data: string[] = [];
  for (const option of options) {
    const flag = FLAG_OPTIONS[option];
    if (flag) flags = flag[1] ? flags | flag[0] : flags & ~flag[0];
    else if (USERSPACE_ONLY.test(option)) continue;
    else if (/^(loop|bind|rbind|move|remount|user|users|nouser|owner|group|X-mount\..*|make-.*|offset=.*|sizelimit=.*)$/.test(option))
      return undefined;
    else data.push(option);
  }
  return { flags, data: data.join(',') };
}

/** The mount `file` lives on: the last mounted at the longest prefix of its path. */
export function mountHolding(mounts: readonly MountEntry[], file: string): MountEntry | undefined {
  let dir = path.resolve(file);
  for (;;) {
    const m = topMount(mounts, dir);
    if (m || dir === '/') return m;
    dir = path.dirname(dir);
  }
}

const isLocal = (m: MountEntry | undefined) => m !== undefined && LOCAL_FILESYSTEMS.has(m.fstype);

/** The system-call versions of the Host's mount and loop operations. */
export class SystemMounts {
  constructor(private readonly sys: SystemCalls) {}

  async mount(source: string, target: string, opts: MountOptions = {}): Promise<void> {
    const args = opts.fstype && LOCAL_FILESYSTEMS.has(opts.fstype) ? systemMountArguments(opts.options ?? []) : undefined;
    if (!args) return mount(source, target, opts);
    await this.sys.mount(target, source, opts.fstype ?? null, args.data || null, args.flags).catch((err: Error) => {
      throw new Error(`mount of ${opts.fstype} ${source} at ${target} failed: ${reason(err)}`);
    });
  }

  async bindMount(source: string, target: string, readonly: boolean): Promise<void> {
    const holding = mountHolding(await readMountTable(), source);
    if (!holding || !isLocal(holding)) return bindMount(source, target, readonly);
    await this.sys.mount(target, source, null, null, MS.BIND).catch((err: Error) => {
      throw new Error(`bind mount of ${source} at ${target} failed: ${reason(err)}`);
    });
    if (!readonly) return;
    try {
      // A bind remount sets every per-mount flag at once: keep the ones the bind has (nosuid,
      // nodev...), which are those of the mount it was taken from.
      const kept = systemMountArguments(holding.options.filter((o) => o in FLAG_OPTIONS))?.flags ?? 0;
      await this.sys.mount(target, null, null, null, MS.REMOUNT | MS.BIND | MS.RDONLY | kept);
      if (!topMount(await readMountTable(), target)?.options.includes('ro'))
        throw new Error(`${target} did not become read-only after remount`);
    } catch (err) {
      await this.sys.umount(target, 0).catch(() => undefined);
      throw err;
    }
  }

  async unmount(target: string): Promise<void> {
    if (!isLocal(topMount(await readMountTable(), target))) return unmount(target);
    await this.sys.umount(target, 0).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EBUSY') throw new BusyError(target, 'target is busy');
      throw new Error(`unmount of ${target} failed: ${reason(err)}`);
    });
  }

  async attachLoop(image: string, opts: { readOnly?: boolean } = {}): Promise<string> {
    return this.sys.loopAttach(path.resolve(image), opts.readOnly ?? false).catch((err: NodeJS.ErrnoException) => {
      // LOOP_CONFIGURE came with Linux 5.8: older kernels attach through losetup.
      if (err.code === 'ENOTTY') return losetupAttach(image, opts);
      throw new Error(`attaching ${image} to a loop device failed: ${reason(err)}`);
    });
  }

  async detachLoop(device: string): Promise<void> {
    await this.sys.loopDetach(device).catch((err: Error) => {
      throw new Error(`detaching ${device} failed: ${reason(err)}`);
    });
  }

  async refreshLoopSize(device: string): Promise<void> {
    await this.sys.loopSetCapacity(device).catch((err: Error) => {
      throw new Error(`resizing ${device} to its image failed: ${reason(err)}`);
    });
  }
}

/** The failed system call and the errno's text. */
const reason = (err: NodeJS.ErrnoException) => (err.syscall ? `${err.syscall}: ${err.message}` : err.message);
