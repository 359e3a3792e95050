// The Host of a real Linux node: the mount table from /proc/self/mountinfo,
// loop devices from sysfs, and mount, losetup, blkid, mkfs and the grow
// tools through the command runner.
import fs from 'node:fs/promises';
import { deviceHasData, imageHasData } from './data-check.js';
import { checkFilesystem, filesystemErrors, filesystemSize, growMounted, growOffline, mkfs, probeDevice } from './filesystems.js';
import type { Host } from './host.js';
import { blockDeviceSize, losetupAttach, losetupDetach, losetupRefresh, readLoopTable } from './loop-devices.js';
import { readMountTable } from './mount-table.js';
import { bindMount, mount, unmount } from './mounter.js';
import { isStale } from './paths.js';

export class LinuxHost implements Host {
  readMounts = () => readMountTable();
  mount = mount;
  bindMount = bindMount;
  unmount = unmount;
  readLoops = () => readLoopTable();
  attachLoop = losetupAttach;
  detachLoop = losetupDetach;
  refreshLoopSize = losetupRefresh;
  deviceSize = blockDeviceSize;
  probe = probeDevice;
  mkfs = mkfs;
  filesystemSize = filesystemSize;
  growOffline = growOffline;
  growMounted = growMounted;
  isStale = isStale;
  checkFilesystem = checkFilesystem;
  filesystemErrors = filesystemErrors;
  imageHasData = imageHasData;
  deviceHasData = deviceHasData;

  async sameFile(a: string, b: string): Promise<boolean> {
    const [x, y] = await Promise.all([fs.stat(a), fs.stat(b)]);
    return x.dev === y.dev && x.ino === y.ino;
  }
}
