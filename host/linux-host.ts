// The Host of a real Linux node: the mount table from /proc/self/mountinfo,
// loop devices from sysfs; mounts and loop devices by system call when the
// berth_sys addon is given (system-mounts.ts), by mount and losetup
// otherwise; blkid, mkfs and the grow tools through the command runner.
import fs from 'node:fs/promises';
import { deviceHasData, imageHasData } from './data-check.js';
import { checkFilesystem, filesystemErrors, filesystemSize, growMounted, growOffline, mkfs, probeDevice } from './filesystems.js';
import type { Host } from './host.js';
import { blockDeviceSize, losetupAttach, losetupDetach, losetupRefresh, readLoopTable } from './loop-devices.js';
import { readMountTable } from './mount-table.js';
import { bindMount, mount, unmount } from './mounter.js';
import type { SystemCalls } from './native.js';
import { isStale } from './paths.js';
import { readSuperblock } from './superblock.js';
import { SystemMounts } from './system-mounts.js';

export class LinuxHost implements Host {
  readMounts = () => readMountTable();
  mount: Host['mount'] = mount;
  bindMount: Host['bindMount'] = bindMount;
  unmount: Host['unmount'] = unmount;
  readLoops = () => readLoopTable();
  attachLoop: Host['attachLoop'] = losetupAttach;
  detachLoop: Host['detachLoop'] = losetupDetach;
  refreshLoopSize: Host['refreshLoopSize'] = losetupRefresh;
  deviceSize = blockDeviceSize;
  probe = probeDevice;
  superblock = (device: string) => readSuperblock(device).catch(() => undefined);
  mkfs = mkfs;
  filesystemSize = filesystemSize;
  growOffline = growOffline;
  growMounted = growMounted;
  isStale = isStale;
  checkFilesystem = checkFilesystem;
  filesystemErrors = filesystemErrors;
  imageHasData = imageHasData;
  deviceHasData = deviceHasData;

  constructor(sys?: SystemCalls) {
    if (!sys) return;
    const calls = new SystemMounts(sys);
    this.mount = (source, target, opts) => calls.mount(source, target, opts);
    this.bindMount = (source, target, readonly) => calls.bindMount(source, target, readonly);
    this.unmount = (target) => calls.unmount(target);
    this.attachLoop = (image, opts) => calls.attachLoop(image, opts);
    this.detachLoop = (device) => calls.detachLoop(device);
    this.refreshLoopSize = (device) => calls.refreshLoopSize(device);
  }

  async sameFile(a: string, b: string): Promise<boolean> {
    const [x, y] = await Promise.all([fs.stat(a), fs.stat(b)]);
    return x.dev === y.dev && x.ino === y.ino;
  }
}
