// Safe format-and-mount (after mount-utils' SafeFormatAndMount): probe the
// device, make a filesystem only when it is blank, refuse anything else
// without touching it, grow a filesystem smaller than its device, mount.
// Shared by the CSI node service and the FlexVolume shim.
import { deviceSize } from './loop-devices.js';
import { filesystemSmallerThan, formatIfBlank, growExt4Offline, growMounted } from './filesystems.js';
import { mountAt } from './mount-table.js';
import { mount, unmount } from './mounter.js';

/** The device holds something other than the filesystem asked for. */
export class ForeignContentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ForeignContentError';
  }
}

export interface FormatAndMountOptions {
  options?: string[];
  sensitiveOptions?: string[];
}

export async function formatAndMount(device: string, target: string, fsType: string, opts: FormatAndMountOptions = {}): Promise<{ formatted: boolean }> {
  const { formatted, content } = await formatIfBlank(device, fsType);
  if (content.state === 'other') {
    throw new ForeignContentError(`${device} holds ${content.description}, not a filesystem; refusing to format or mount it`);
  }
  if (content.state === 'filesystem' && content.fsType !== fsType) {
    throw new ForeignContentError(`${device} holds a ${content.fsType} filesystem, asked for ${fsType}; refusing to reformat it`);
  }
  // A device that grew while unmounted: ext4 grows before mounting (offline,
  // no extra privilege needed), xfs and btrfs once mounted.
  const deviceBytes = formatted ? 0 : await deviceSize(device);
  if (!formatted && fsType === 'ext4' && (await filesystemSmallerThan(deviceBytes, 'ext4', device))) await growExt4Offline(device);
  await mount(device, target, { fstype: fsType, options: opts.options, sensitiveOptions: opts.sensitiveOptions });
  try {
    if (!formatted && fsType !== 'ext4' && (await filesystemSmallerThan(deviceBytes, fsType, device, target))) {
      await growMounted(fsType, device, target);
    }
  } catch (err) {
    if ((await mountAt(target))?.source === device) await unmount(target).catch(() => undefined);
    throw err;
  }
  return { formatted };
}
