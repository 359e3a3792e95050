// The one seam between berth and the machine: every mount, loop device and
// block-device operation of the node service and the FlexVolume shim goes
// through a Host (after kubernetes/mount-utils' Interface). LinuxHost does
// it for real; tests of node decisions use a fake that records calls. The
// functions below are built on the interface, so both share them.

import type { DeviceContent } from './filesystems.js';
import type { LoopDevice } from './loop-devices.js';
import { type MountEntry, topMount } from './mount-table.js';
import type { MountOptions } from './mounter.js';

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
  /** Attaches an image to a new loop device (direct I/O); returns the device. */
  attachLoop(image: string): Promise<string>;
  detachLoop(device: string): Promise<void>;
  refreshLoopSize(device: string): Promise<void>;
  deviceSize(device: string): Promise<number>;
  /** What `blkid -p` finds on the device. */
  probe(device: string): Promise<DeviceContent>;
  mkfs(device: string, fsType: string): Promise<void>;
  /** Size of the filesystem on `device`; xfs and btrfs need it mounted at `mountPoint`. */
  filesystemSize(fsType: string, device: string, mountPoint?: string): Promise<number>;
  growOffline(fsType: string, device: string): Promise<void>;
  growMounted(fsType: string, device: string, mountPoint: string): Promise<void>;
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

/** The device `image` is attached to, attaching it when it is not. */
export async function attachImage(host: Host, image: string): Promise<string> {
  const [existing] = await loopDevicesOf(host, image);
  return existing ? existing.device : host.attachLoop(image);
}

/** Whether the filesystem is smaller than its device by at least one 64 KiB unit. */
export async function filesystemSmallerThan(
  host: Host,
  deviceBytes: number,
  fsType: string,
  device: string,
  mountPoint?: string,
): Promise<boolean> {
  return deviceBytes - (await host.filesystemSize(fsType, device, mountPoint)) >= 64 * 1024;
}

/** The device holds something other than the filesystem asked for. */
export class ForeignContentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ForeignContentError';
  }
}

/**
 * Safe format-and-mount (after mount-utils' SafeFormatAndMount): probe the
 * device, make a filesystem only when it is blank, refuse anything else
 * without touching it, grow a filesystem smaller than its device, mount.
 */
export async function formatAndMount(
  host: Host,
  device: string,
  target: string,
  fsType: string,
  options: readonly string[] = [],
): Promise<{ formatted: boolean }> {
  const content = await host.probe(device);
  if (content.state === 'other') {
    throw new ForeignContentError(`${device} holds ${content.description}, not a filesystem; refusing to format or mount it`);
  }
  if (content.state === 'filesystem' && content.fsType !== fsType) {
    throw new ForeignContentError(`${device} holds a ${content.fsType} filesystem, asked for ${fsType}; refusing to reformat it`);
  }
  const formatted = content.state === 'blank';
  if (formatted) await host.mkfs(device, fsType);
  // A device that grew while unmounted: ext4 grows before mounting (offline,
  // no extra privilege needed), xfs and btrfs once mounted.
  const deviceBytes = formatted ? 0 : await host.deviceSize(device);
  if (!formatted && fsType === 'ext4' && (await filesystemSmallerThan(host, deviceBytes, 'ext4', device)))
    await host.growOffline('ext4', device);
  await host.mount(device, target, { fstype: fsType, options });
  try {
    if (!formatted && fsType !== 'ext4' && (await filesystemSmallerThan(host, deviceBytes, fsType, device, target))) {
      await host.growMounted(fsType, device, target);
    }
  } catch (err) {
    if ((await mountAt(host, target))?.source === device) await host.unmount(target).catch(() => undefined);
    throw err;
  }
  return { formatted };
}
