// NodeStageVolume and NodeUnstageVolume: a share's directory bound, or its
// NFS export mounted, at the staging path; a block image attached to a loop
// device and, for a filesystem, formatted only when provably blank and
// mounted; a raw block device bound onto <staging>/device. Unstage undoes
// only what it proves is this volume's, and never while it is published.
import fs from 'node:fs/promises';
import path from 'node:path';
import {
  attachImage,
  boundDevice,
  CommandError,
  exists,
  ForeignContentError,
  formatOnceAndMount,
  type Host,
  ImageRefusedError,
  isStaleError,
  loopBehind,
  loopDevice,
  loopDevicesOf,
  type MountEntry,
  mountAt,
  mountsOfDevice,
  NFS_MOUNT_TIMEOUT_MS,
  sameThing,
  topMount,
} from '../host/index.js';
import { DEFAULT_FS_TYPE } from '../volume/capabilities.js';
import type { NodeStageVolumeRequest, NodeUnstageVolumeRequest } from '../volume/csi.js';
import { READ_ONLY_MODES } from '../volume/csi.js';
import { alreadyExists, failedPrecondition, invalid, notFound, unavailable } from '../volume/errors.js';
import { layeredMountOptions, mountOptions } from '../volume/nfs.js';
import { requireString } from '../volume/request-fields.js';
import { decodePublishContext } from '../volume/volume-context.js';
import { parseVolumeId } from '../volume/volume-id.js';
import type { NodeConfig } from './node-config.js';
import {
  detachIfUnused,
  type Empty,
  kubeletPath,
  RAW_DEVICE_FILE,
  requireCapability,
  requireOutsideVolumes,
  unmountOrRefuse,
} from './node-steps.js';
import { type StageRecords, stageDifference, stageRecordOf } from './stage-records.js';
import type { VolumeLocator, VolumeSource } from './volume-location.js';

const NFS_UNREACHABLE = /timed out|refused|unreachable|no route|connection reset|not responding|network is down/i;

export class Stager {
  private readonly host: Host;

  constructor(
    private readonly cfg: NodeConfig,
    private readonly locator: VolumeLocator,
    private readonly stages: StageRecords,
  ) {
    this.host = cfg.host;
  }

  async stage(req: NodeStageVolumeRequest): Promise<Empty> {
    // Required fields first (the spec's INVALID_ARGUMENT), then the volume.
    const id = requireString('volume_id', req.volume_id);
    const staging = await kubeletPath(this.cfg, 'staging_target_path', req.staging_target_path);
    const cap = req.volume_capability;
    if (!cap) throw invalid('volume_capability is required');
    const flags = mountOptions(cap.mount?.mount_flags ?? [], 'mount flag');
    const v = await this.locator.locate(id, req.volume_context);
    requireCapability(v.kind, cap);
    if (!v.source) throw invalid('volume_context is required for an NFS volume (server, share, subDir)');
    const mounts = await this.host.readMounts();
    requireOutsideVolumes(mounts, staging, this.cfg.kubeletDir); // before anything is made there
    // A stale NFS mount already on staging answers ESTALE: stageShare remounts it.
    await fs.mkdir(staging, { recursive: true, mode: 0o750 }).catch((err: unknown) => {
      if (!isStaleError(err)) throw err;
    });
    const src = v.source;
    const accessType = cap.access_type === 'block' ? 'block' : 'mount';
    const fsType = src.kind === 'block' && accessType === 'mount' ? cap.mount?.fs_type || v.fsType || DEFAULT_FS_TYPE : '';
    const wanted = stageRecordOf(id, accessType, cap.access_mode?.mode ?? '', fsType, flags);
    // Staged already: the same volume, flags and access mode again is OK; anything else is ALREADY_EXISTS.
    const was = await this.stages.read(staging);
    const differ = was ? stageDifference(was, wanted) : ['record'];
    const staged = topMount(mounts, staging) || topMount(mounts, path.join(staging, RAW_DEVICE_FILE));
    if (staged && was && differ.length > 0) throw alreadyExists(`${staging} is already staged with another ${differ.join(', ')}`);
    // Read-only by its access mode, or because the controller published it read-only (PUBLISH_READONLY).
    const readonly = READ_ONLY_MODES.has(cap.access_mode?.mode ?? '') || decodePublishContext(req.publish_context).readonly;
    if (src.kind === 'share') {
      await this.stageShare(src, staging, readonly, flags, mounts);
    } else {
      if (src.export) await this.ensureExportMounted(src.export, mounts);
      try {
        if (accessType === 'block') await this.stageRaw(src, staging, readonly, mounts);
        else await this.stageFilesystem(v.volumeId, src, staging, fsType, flags, readonly, mounts);
      } catch (err) {
        if (err instanceof ImageRefusedError) throw failedPrecondition(`volume ${id}: ${err.message}`);
        throw err;
      }
    }
    if (differ.length > 0) await this.stages.write(staging, wanted);
    return {};
  }

  /**
   * A share's directory at the staging path: bound, or NFS-mounted; read-only
   * for read-only access modes. An NFS mount takes the class's `mountOptions`
   * parameter, then the capability's mount flags (the PV's standard
   * `mountOptions`), which win where both set one thing: the PV's field is
   * the operator's, may be edited on an existing PV and is read at every
   * stage, while the parameter was fixed in the volume context at create.
   */
  private async stageShare(
    src: Extract<VolumeSource, { kind: 'share' }>,
    staging: string,
    readonly: boolean,
    flags: string[],
    mounts: MountEntry[],
  ): Promise<void> {
    const current = topMount(mounts, staging);
    if ('bind' in src) {
      if (current) {
        if (await this.host.sameFile(src.bind, staging)) return;
        throw alreadyExists(`${staging} already has something else mounted (${current.source})`);
      }
      if (!(await exists(src.bind))) throw notFound(`the volume's directory ${src.bind} does not exist`);
      await this.host.bindMount(src.bind, staging, readonly);
      return;
    }
    if (current) {
      if (current.source !== src.nfs.device) throw alreadyExists(`${staging} already has ${current.source} mounted`);
      // A stale file handle (the export was recreated on the server): remount.
      if (!(await this.host.isStale(staging))) return;
      await this.host.unmount(staging);
    }
    await this.mountNfs(src.nfs.device, staging, layeredMountOptions(src.nfs.options, flags, readonly ? ['ro'] : []));
  }

  /**
   * `mount -t nfs`, checked: a mount of a directory that was recreated on the
   * server can still reach the old one (ESTALE). The node's other mounts of
   * that server share one superblock, whose cached names (trusted for up to
   * acdirmax) still lead to the gone directory. Such a mount is made again
   * with `nosharecache`: a superblock of its own, which looks the path up anew.
   */
  private async mountNfs(device: string, target: string, options: readonly string[]): Promise<void> {
    await this.mountNfsOnce(device, target, options);
    if (!(await this.host.isStale(target))) return;
    await this.host.unmount(target);
    await this.mountNfsOnce(device, target, layeredMountOptions(options, ['nosharecache']));
    if (!(await this.host.isStale(target))) return;
    await this.host.unmount(target);
    throw unavailable(`${device} answers with a stale file handle even to a fresh mount; try again later`);
  }

  /** `mount -t nfs`, with a timeout; an unreachable server is UNAVAILABLE (retryable). */
  private async mountNfsOnce(device: string, target: string, options: readonly string[]): Promise<void> {
    try {
      await this.host.mount(device, target, { fstype: 'nfs', options, timeoutMs: NFS_MOUNT_TIMEOUT_MS });
    } catch (err) {
      if (err instanceof CommandError && (err.timedOut || NFS_UNREACHABLE.test(err.stderr)))
        throw unavailable(`NFS server for ${device} is unreachable: ${err.message}`);
      throw err;
    }
  }

  /** The export that holds block images, mounted once per node. */
  private async ensureExportMounted(
    exp: { device: string; options: readonly string[]; mountPoint: string },
    mounts: MountEntry[],
  ): Promise<void> {
    const current = topMount(mounts, exp.mountPoint);
    if (current?.source === exp.device) return;
    if (current) throw alreadyExists(`${exp.mountPoint} already has ${current.source} mounted`);
    await fs.mkdir(exp.mountPoint, { recursive: true, mode: 0o700 });
    await this.mountNfs(exp.device, exp.mountPoint, exp.options);
  }

  /** Unmounts an export mount of ours once no loop device uses an image on it. */
  private async releaseExportOf(backingFile: string): Promise<void> {
    const root = `${path.resolve(this.cfg.nfsMountDir)}/`;
    if (!backingFile.startsWith(root)) return;
    const mountPoint = root + backingFile.slice(root.length).split('/')[0];
    const loops = (await this.host.readLoops()).filter((l) => l.backingFile.startsWith(`${mountPoint}/`));
    if (loops.length === 0 && (await mountAt(this.host, mountPoint))) await unmountOrRefuse(this.host, mountPoint);
  }

  private async stageRaw(
    { image, minBytes }: Extract<VolumeSource, { kind: 'block' }>,
    staging: string,
    readOnly: boolean,
    mounts: MountEntry[],
  ): Promise<void> {
    const file = path.join(staging, RAW_DEVICE_FILE);
    const current = topMount(mounts, file);
    if (current) {
      const dev = boundDevice(current);
      const loop = dev ? await loopDevice(this.host, dev) : undefined;
      if (loop?.backingFile === image && loop.readOnly === readOnly) return;
      if (loop?.backingFile === image)
        throw alreadyExists(
          `${file} is staged ${loop.readOnly ? 'read-only' : 'read-write'}; asked ${readOnly ? 'read-only' : 'read-write'}`,
        );
      throw alreadyExists(`${file} already holds another device (${current.source})`);
    }
    if (topMount(mounts, staging)) throw alreadyExists(`${staging} is staged as a filesystem, not as a raw block device`);
    const device = await attachImage(this.host, image, { readOnly, minBytes });
    try {
      await (await fs.open(file, 'a', 0o600)).close();
      await this.host.bindMount(device, file, false);
    } catch (err) {
      await detachIfUnused(this.host, device);
      throw err;
    }
  }

  private async stageFilesystem(
    volumeId: string,
    src: Extract<VolumeSource, { kind: 'block' }>,
    staging: string,
    fsType: string,
    flags: string[],
    readonly: boolean,
    mounts: MountEntry[],
  ): Promise<void> {
    const { image } = src;
    const current = topMount(mounts, staging);
    if (current) {
      const backing = current.source.startsWith('/dev/loop') ? await loopDevice(this.host, current.source) : undefined;
      if (backing?.backingFile === image && current.fstype === fsType) return;
      throw alreadyExists(
        `${staging} already has ${backing?.backingFile === image ? `this volume mounted as ${current.fstype}` : `${current.source} mounted`}; asked for ${fsType}`,
      );
    }
    if (topMount(mounts, path.join(staging, RAW_DEVICE_FILE))) throw alreadyExists(`${staging} is staged as a raw block device`);
    if (!(await exists(image))) throw notFound(`the volume's image ${image} does not exist`);
    const device = await attachImage(this.host, image, { readOnly: readonly, minBytes: src.minBytes });
    try {
      await formatOnceAndMount(this.host, device, staging, fsType, flags, { recordPath: src.filesystemRecord, image, readonly, volumeId });
    } catch (err) {
      if ((await mountAt(this.host, staging))?.source === device) await this.host.unmount(staging).catch(() => undefined);
      await detachIfUnused(this.host, device);
      if (err instanceof ForeignContentError) throw failedPrecondition(`volume ${volumeId}: ${err.message}`);
      throw err;
    }
  }

  async unstage(req: NodeUnstageVolumeRequest): Promise<Empty> {
    const id = requireString('volume_id', req.volume_id);
    const staging = await kubeletPath(this.cfg, 'staging_target_path', req.staging_target_path);
    const ref = parseVolumeId(id);
    if (!ref) throw notFound(`volume ${id} is not a berth volume`);
    let mounts = await this.host.readMounts();
    const released: string[] = []; // loop devices the staging mounts held
    for (const target of [path.join(staging, RAW_DEVICE_FILE), staging]) {
      const entry = topMount(mounts, target);
      if (!entry) continue;
      if (!(await this.locator.holds(ref, entry, target)))
        throw failedPrecondition(`${target} holds another volume than ${id} (${entry.source}); leaving it mounted`);
      const device = loopBehind(entry);
      if (device) released.push(device);
      // Users: binds of the same mount, and (raw block) of any loop device of the same image.
      const loops = await this.host.readLoops();
      const image = loops.find((l) => l.device === device)?.backingFile;
      const loopsOfImage = new Set(loops.filter((l) => image !== undefined && l.backingFile === image).map((l) => l.device));
      const users = mounts.filter((m) => m.target !== target && (sameThing(m, entry) || loopsOfImage.has(boundDevice(m) ?? '')));
      if (users.length > 0) throw failedPrecondition(`volume ${id} is still published at ${users.map((u) => u.target).join(', ')}`);
      await unmountOrRefuse(this.host, target);
      mounts = await this.host.readMounts();
    }
    await fs.rm(path.join(staging, RAW_DEVICE_FILE), { force: true });
    await this.stages.remove(staging);
    const loops = [...released];
    if (ref.pool === 'local' && ref.kind === 'block')
      loops.push(...(await loopDevicesOf(this.host, this.locator.localPool.imagePath(ref.dirName))).map((l) => l.device));
    for (const device of new Set(loops)) {
      const loop = await loopDevice(this.host, device);
      if (!loop?.backingFile || mountsOfDevice(mounts, device).length > 0) continue;
      await this.host.detachLoop(device);
      await this.releaseExportOf(loop.backingFile);
    }
    return {};
  }
}
