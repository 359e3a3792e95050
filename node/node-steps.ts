// Steps the node service's files share: the checks every call makes of its
// paths and capability, and the careful undo of a mount or a loop device.
import fs from 'node:fs/promises';
import path from 'node:path';
import { BusyError, type Host, loopBehind, type MountEntry, mountHolding, mountsOfDevice } from '../host/index.js';
import { capabilityProblem } from '../volume/capabilities.js';
import type { VolumeCapability } from '../volume/csi.js';
import { failedPrecondition, invalid } from '../volume/errors.js';
import type { VolumeKind } from '../volume/volume-id.js';
import { requireKubeletPath } from './kubelet-paths.js';

/** Raw block staging: the device node is bind-mounted onto this file. */
export const RAW_DEVICE_FILE = 'device';

export type Empty = Record<string, never>;

/** A request's path, checked to be inside the kubelet's directory (INVALID_ARGUMENT otherwise). */
export function kubeletPath(cfg: { kubeletDir: string }, field: string, value: string | undefined): Promise<string> {
  return requireKubeletPath(field, value, cfg.kubeletDir);
}

/** INVALID_ARGUMENT when a volume of this kind cannot be used with the capability. */
export function requireCapability(kind: VolumeKind, cap: VolumeCapability): void {
  const problem = capabilityProblem(kind, cap);
  if (problem) throw invalid(problem);
}

/** Detaches a loop device unless something still mounts it. */
export async function detachIfUnused(host: Host, device: string): Promise<void> {
  if (mountsOfDevice(await host.readMounts(), device).length === 0) await host.detachLoop(device);
}

/** Unmounts; a busy mount is FAILED_PRECONDITION, never detached lazily. */
export async function unmountOrRefuse(host: Host, target: string): Promise<void> {
  try {
    await host.unmount(target);
  } catch (err) {
    if (err instanceof BusyError) throw failedPrecondition(`${err.message}; not detaching it lazily`);
    throw err;
  }
}

/** Removes a publish target: a file, or an empty directory; never contents. */
export async function removeTarget(target: string): Promise<void> {
  try {
    const st = await fs.lstat(target);
    if (st.isDirectory()) await fs.rmdir(target);
    else await fs.unlink(target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTEMPTY') throw failedPrecondition(`${target} is not a mount point but holds files; leaving it alone`);
    throw err;
  }
}

/**
 * A staging or publish path must not lie inside another volume: the mount
 * that holds its directory must not be a volume mounted below the kubelet
 * directory (a loop device's filesystem, an NFS mount, a bind of a
 * directory, or a mount at a staging or publish path), or one volume would
 * be mounted inside another and undone with it. A filesystem mounted whole
 * (the kubelet's own directory, a tmpfs for pods) may hold them.
 */
export function requireOutsideVolumes(mounts: readonly MountEntry[], p: string, kubeletDir: string): void {
  const holder = mountHolding(mounts, path.dirname(p));
  if (!holder?.target.startsWith(`${path.resolve(kubeletDir)}/`)) return;
  const isVolume =
    loopBehind(holder) !== undefined ||
    holder.fstype.startsWith('nfs') ||
    holder.fsroot !== '/' ||
    /\/(volumes|volumeDevices)\/|\/plugins\/kubernetes\.io\/csi\//.test(`${holder.target}/`);
  if (isVolume) {
    throw invalid(`${p} is inside ${holder.target}, where another volume is mounted: a volume is never mounted inside another`);
  }
}
