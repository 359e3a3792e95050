// The one seam between berth and the machine: every mount, loop device and
// block-device operation of the node service and the FlexVolume shim goes
// through a Host (after kubernetes/mount-utils' Interface). LinuxHost does
// it for real; tests of node decisions use a fake that records calls. The
// functions below are built on the interface, so both share them.

import fs from 'node:fs/promises';
import path from 'node:path';
import type { DeviceContent } from './filesystems.js';
import type { LoopDevice } from './loop-devices.js';
import { type MountEntry, topMount } from './mount-table.js';
import type { MountOptions } from './mounter.js';
import type { Superblock } from './superblock.js';

export interface Host {
  /** The mount table of this process's mount namespace. */
  readMounts(): Promise<MountEntry[]>;
  mount(source: string, target: string, opts?: MountOptions): Promise<void>;
  /** A bind mount; read-only is verified. */
  bindMount(source: string, target: string, readonly: boolean): Promise<void>;
  /** Throws BusyError when something still uses the target. */
  unmount(target: string): Promise<void>;
  /** Every attached loop device. */
  readLoops(): Promise<LoopDevice[]>;
  /** Attaches an image to a new loop device (direct I/O; read-only when asked); returns the device. */
  attachLoop(image: string, opts?: { readOnly?: boolean }): Promise<string>;
  detachLoop(device: string): Promise<void>;
  refreshLoopSize(device: string): Promise<void>;
  deviceSize(device: string): Promise<number>;
  /** What `blkid -p` finds on the device. */
  probe(device: string): Promise<DeviceContent>;
  /** The device's intact ext4 or xfs superblock, read without a process; undefined when there is none. */
  superblock(device: string): Promise<Superblock | undefined>;
  mkfs(device: string, fsType: string): Promise<void>;
  /** Size of the filesystem on `device`; xfs and btrfs need it mounted at `mountPoint`. */
  filesystemSize(fsType: string, device: string, mountPoint?: string): Promise<number>;
  growOffline(fsType: string, device: string): Promise<void>;
  growMounted(fsType: string, device: string, mountPoint: string): Promise<void>;
  /** Checks a filesystem before a read-write mount (ext4: e2fsck -p); throws when it needs a person. */
  checkFilesystem(fsType: string, device: string): Promise<void>;
  /** Whether an image has a written extent; undefined when its filesystem cannot say. */
  imageHasData(image: string): Promise<boolean | undefined>;
  /** Errors the filesystem on a mounted device has recorded (ext4 counts them), or undefined when it does not say. */
  filesystemErrors(fsType: string, device: string): Promise<number | undefined>;
  /** Whether any of the first `bytes` of a device is not zero. */
  deviceHasData(device: string, bytes: number): Promise<boolean>;
  /** stat of `target` fails with ESTALE (an NFS export recreated under a mount). */
  isStale(target: string): Promise<boolean>;
  /** Whether two paths name the same directory (through mounts). */
  sameFile(a: string, b: string): Promise<boolean>;
}

export async function mountAt(host: Host, target: string): Promise<MountEntry | undefined> {
  return topMount(await host.readMounts(), target);
}

/** What one loop device is attached to, or undefined when it is free. */
export async function loopDevice(host: Host, device: string): Promise<LoopDevice | undefined> {
  return (await host.readLoops()).find((l) => l.device === device);
}

/** Devices attached to `image` (normally zero or one). */
export async function loopDevicesOf(host: Host, image: string): Promise<LoopDevice[]> {
  return (await host.readLoops()).filter((l) => l.backingFile === image);
}

/**
 * The device `image` is attached to, read-write or read-only as asked,
 * attaching it when it is not. A read-only attachment is its own device: a
 * read-only bind of a writable device node still lets writes through.
 */
export async function attachImage(host: Host, image: string, opts: { readOnly?: boolean; minBytes?: number } = {}): Promise<string> {
  const readOnly = opts.readOnly ?? false;
  const existing = (await loopDevicesOf(host, image)).find((l) => l.readOnly === readOnly);
  if (existing) return existing.device;
  await requirePlainImage(image, opts.minBytes ?? 1);
  const device = await host.attachLoop(image, { readOnly });
  // The kernel's own record of what it opened: a symbolic link swapped in after the check shows here.
  const attached = await loopDevice(host, device);
  if (attached?.backingFile !== path.resolve(image)) {
    await host.detachLoop(device).catch(() => undefined);
    throw new ImageRefusedError(`${image} led to ${attached?.backingFile ?? 'another file'} when attached; detached it`);
  }
  return device;
}

/** An image berth will not attach: reached through a symbolic link, not a regular file, or smaller than its volume. */
export class ImageRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImageRefusedError';
  }
}

/**
 * An image is attached only when its path has no symbolic link in it (so
 * nothing in a pool's tree can lead a stage out of the pool) and it is a
 * regular file of at least its volume's size (a 0-byte file a failed create
 * left is no volume).
 */
async function requirePlainImage(image: string, minBytes: number): Promise<void> {
  const want = path.resolve(image);
  const real = await fs.realpath(want).catch(() => undefined);
  if (real === undefined) throw new ImageRefusedError(`the image ${image} does not exist`);
  if (real !== want) throw new ImageRefusedError(`the image ${image} is reached through a symbolic link (to ${real}); refusing it`);
  const st = await fs.lstat(want);
  if (!st.isFile()) throw new ImageRefusedError(`the image ${image} is not a regular file`);
  if (st.size < minBytes) throw new ImageRefusedError(`the image ${image} is ${st.size} bytes, smaller than its volume's ${minBytes}`);
}

/** Less than this between a filesystem and its device is not worth growing for. */
const GROW_UNIT = 64 * 1024;

/** Whether the filesystem is smaller than its device by at least one 64 KiB unit. */
export async function filesystemSmallerThan(
  host: Host,
  deviceBytes: number,
  fsType: string,
  device: string,
  mountPoint?: string,
): Promise<boolean> {
  return deviceBytes - (await host.filesystemSize(fsType, device, mountPoint)) >= GROW_UNIT;
}

/** Why a device was refused (as mount-utils types its MountError). */
export type ForeignContentReason =
  /** Something that is not a filesystem (a partition table, LUKS, LVM...). */
  | 'not-a-filesystem'
  /** Another filesystem than the one asked for. */
  | 'other-filesystem'
  /** A filesystem berth recorded is gone from its superblock. */
  | 'recorded-filesystem-gone'
  /** Blank, but the stage is read-only. */
  | 'blank-read-only'
  /** No signature, but data written (a raw device's bytes). */
  | 'data-without-filesystem';

/** The device holds something other than the filesystem asked for. */
export class ForeignContentError extends Error {
  constructor(
    readonly reason: ForeignContentReason,
    message: string,
  ) {
    super(message);
    this.name = 'ForeignContentError';
  }
}

/** What the caller knows of a volume, beyond what a probe of its device shows. */
export interface FormatGuard {
  /** A filesystem berth made or mounted on this volume before (its record says so). */
  knownFilesystem?: string;
  /** The image behind the device: its extents tell whether it holds data. */
  image?: string;
  /** A read-only mount: never formats, never checks (which would write). */
  readonly?: boolean;
}

/** How much of a device is scanned for data where its extents cannot be asked. */
export const DATA_SCAN_BYTES = 64 << 20;

/**
 * Safe format-and-mount. mount-utils' SafeFormatAndMount formats whatever
 * blkid calls blank; this formats only what is provably blank: no
 * filesystem signature, no record of an earlier filesystem, and no data (no
 * written extent in its image, or, where extents cannot be asked, nothing
 * but zeros in the first DATA_SCAN_BYTES). Anything else is refused without
 * a byte written. An existing filesystem is checked before a read-write
 * mount and grown when it is smaller than its device.
 */
export async function formatAndMount(
  host: Host,
  device: string,
  target: string,
  fsType: string,
  options: readonly string[] = [],
  guard: FormatGuard = {},
): Promise<{ formatted: boolean }> {
  // The record knows the filesystem and its intact superblock is there: blkid need not be asked again.
  const superblock = await host.superblock(device);
  const intact = superblock?.fsType === fsType ? superblock : undefined;
  const content: DeviceContent = guard.knownFilesystem === fsType && intact ? { state: 'filesystem', fsType } : await host.probe(device);
  if (content.state === 'other') {
    throw new ForeignContentError(
      'not-a-filesystem',
      `${device} holds ${content.description}, not a filesystem; refusing to format or mount it`,
    );
  }
  if (content.state === 'filesystem' && content.fsType !== fsType) {
    throw new ForeignContentError(
      'other-filesystem',
      `${device} holds a ${content.fsType} filesystem, asked for ${fsType}; refusing to reformat it`,
    );
  }
  const formatted = content.state === 'blank';
  if (formatted) {
    if (guard.knownFilesystem) {
      throw new ForeignContentError(
        'recorded-filesystem-gone',
        `${device} held a ${guard.knownFilesystem} filesystem that berth made or mounted, and now shows no signature (its superblock was damaged or overwritten); refusing to format it: the data may still be there`,
      );
    }
    if (guard.readonly) throw new ForeignContentError('blank-read-only', `${device} is blank; a read-only stage never formats it`);
    const hasData = (guard.image ? await host.imageHasData(guard.image) : undefined) ?? (await host.deviceHasData(device, DATA_SCAN_BYTES));
    if (hasData)
      throw new ForeignContentError(
        'data-without-filesystem',
        `${device} holds data but no filesystem signature (written as a raw device?); refusing to format it`,
      );
    await host.mkfs(device, fsType);
  }
  // Mounted already (the staged mount was lost while a pod's bind of it lives on): the filesystem is
  // live, so it is neither checked nor grown offline (e2fsck and resize2fs refuse), only mounted again.
  const live = !formatted && (await host.readMounts()).some((m) => m.source === device);
  // e2fsck -p only when the superblock shows it has something to do (or cannot be read here).
  if (!formatted && !live && !guard.readonly && (intact?.needsCheck ?? true)) await host.checkFilesystem(fsType, device);
  // A copy of an xfs (a snapshot restored, a clone) keeps its UUID, which xfs refuses to mount twice.
  const copyable = !formatted && fsType === 'xfs' ? ['nouuid'] : [];
  const mountOptions = guard.readonly ? [...options, ...copyable, 'ro'] : [...options, ...copyable];
  // A device that grew while unmounted: ext4 grows before mounting (offline,
  // no extra privilege needed), xfs and btrfs once mounted.
  const deviceBytes = formatted ? 0 : await host.deviceSize(device);
  const grow = !formatted && !guard.readonly;
  // The size the superblock gave, or the tools' (xfs and btrfs once mounted).
  const smaller = async (mountPoint?: string) =>
    intact ? deviceBytes - intact.bytes >= GROW_UNIT : filesystemSmallerThan(host, deviceBytes, fsType, device, mountPoint);
  if (grow && !live && fsType === 'ext4' && (await smaller())) await host.growOffline('ext4', device);
  await host.mount(device, target, { fstype: fsType, options: mountOptions });
  try {
    if (grow && fsType !== 'ext4' && (await smaller(target))) {
      await host.growMounted(fsType, device, target);
    }
  } catch (err) {
    if ((await mountAt(host, target))?.source === device) await host.unmount(target).catch(() => undefined);
    throw err;
  }
  return { formatted };
}
