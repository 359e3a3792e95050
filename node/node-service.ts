// The CSI Node service, for local pools and NFS pools alike: stage (bind a
// share's directory or mount its NFS export; or attach a block image to a
// loop device, format only when blank, mount), publish (bind into the pod
// directory), the reverse, stats and expansion. State comes from the
// kernel's mount and loop tables at every call, never from memory, and the
// machine is reached only through the Host seam.
import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import {
  attachImage,
  BusyError,
  boundDevice,
  CommandError,
  exists,
  ForeignContentError,
  filesystemSmallerThan,
  formatOnceAndMount,
  type Host,
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
import { capabilityProblem, DEFAULT_FS_TYPE } from '../volume/capabilities.js';
import type {
  LockKeysOf,
  NodeDefinition,
  NodeExpandVolumeRequest,
  NodeGetVolumeStatsRequest,
  NodeGetVolumeStatsResponse,
  NodePublishVolumeRequest,
  NodeStageVolumeRequest,
  NodeUnpublishVolumeRequest,
  NodeUnstageVolumeRequest,
  VolumeCapability,
} from '../volume/csi.js';
import { READ_ONLY_MODES } from '../volume/csi.js';
import { alreadyExists, failedPrecondition, invalid, notFound, outOfRange, unavailable } from '../volume/errors.js';
import type { LocalPoolLayout } from '../volume/local-layout.js';
import { layeredMountOptions, mountOptions, NFS_FILESYSTEM_RECORD, NFS_IMAGE, nfsDevice } from '../volume/nfs.js';
import { requireString } from '../volume/request-fields.js';
import { TOPOLOGY_KEY } from '../volume/topology.js';
import { fsTypeOf, nfsSourceOf, publishedReadOnly } from '../volume/volume-context.js';
import { parseVolumeId, type VolumeRef } from '../volume/volume-id.js';
import { requireAllowedMountedAt, requireKubeletPath } from './kubelet-paths.js';
import { StageRecords, stageDifference, stageRecordOf } from './stage-records.js';

export interface NodeConfig {
  nodeId: string;
  /** The local pool on this node (its records say where a volume's bytes are); undefined on the NFS driver's node plugin. */
  pool?: LocalPoolLayout;
  /** Whether this node plugin serves NFS volumes (false on a node's local driver). */
  servesNfs: boolean;
  /**
   * Grows a local volume's image and record to at least `bytes`: the local
   * driver has no controller expansion, so NodeExpandVolume does it first.
   */
  growLocalVolume?: (volumeId: string, bytes: number) => Promise<void>;
  /** Where this node mounts NFS exports that hold block images. */
  nfsMountDir: string;
  /** The only directories a volume_context mountedAt may name (pre-mounted exports). */
  mountedAtDirs: readonly string[];
  kubeletDir: string;
  /** Where the node records what it staged and how (stage-records.ts). */
  stateDir: string;
  maxVolumesPerNode: number;
  host: Host;
}

export const NODE_CAPABILITIES = [
  'STAGE_UNSTAGE_VOLUME',
  'GET_VOLUME_STATS',
  'EXPAND_VOLUME',
  'VOLUME_CONDITION',
  'SINGLE_NODE_MULTI_WRITER',
] as const;

/** Raw block staging: the device node is bind-mounted onto this file. */
export const RAW_DEVICE_FILE = 'device';

/** Where a volume's bytes are reachable on this node. */
type VolumeSource =
  | { kind: 'share'; bind: string }
  | { kind: 'share'; nfs: { device: string; options: string[] } }
  | { kind: 'block'; image: string; filesystemRecord: string; export?: { device: string; options: string[]; mountPoint: string } };

interface Located {
  ref: VolumeRef;
  kind: 'share' | 'block';
  fsType: string;
  volumeId: string;
  /** Undefined for an NFS volume when the call carries no volume_context. */
  source?: VolumeSource;
}

const NFS_UNREACHABLE = /timed out|refused|unreachable|no route|connection reset|not responding|network is down/i;

type Empty = Record<string, never>;

/** Why a volume is not healthy: a closed set, so that a metric labelled by it stays small. */
export const ABNORMAL_REASONS = [
  'not_mounted',
  'not_a_device',
  'not_found',
  'filesystem_full',
  'filesystem_errors',
  'loop_detached',
  'image_missing',
  'image_moved',
  'data_missing',
  'pool_nearly_full',
] as const;
export type AbnormalReason = (typeof ABNORMAL_REASONS)[number];

export interface VolumeCondition {
  reason: AbnormalReason | 'healthy';
  message: string;
}

export interface NodeStatus {
  staged: number;
  published: number;
  abnormal: Array<{ volumeId: string; reason: AbnormalReason | 'healthy'; message: string }>;
}
const byId = (req: { volume_id?: string }) => (req.volume_id ? `node/${req.volume_id}` : undefined);

export class NodeService {
  /** The per-volume lock each RPC holds (the pipeline answers ABORTED to a second caller). */
  static readonly lockKeys = {
    NodeStageVolume: byId,
    NodeUnstageVolume: byId,
    NodePublishVolume: byId,
    NodeUnpublishVolume: byId,
    NodeExpandVolume: byId,
  } satisfies LockKeysOf<NodeDefinition>;

  private readonly host: Host;
  private readonly stages: StageRecords;

  constructor(private readonly cfg: NodeConfig) {
    this.host = cfg.host;
    this.stages = new StageRecords(cfg.stateDir);
  }

  /** Local volumes are served only where their pool is (a local id on the NFS driver is another driver's). */
  private get localPool(): LocalPoolLayout {
    if (!this.cfg.pool) throw notFound('node-local volumes are served by the local driver, not this one');
    return this.cfg.pool;
  }

  async NodeGetCapabilities() {
    return { capabilities: NODE_CAPABILITIES.map((type) => ({ rpc: { type } })) };
  }

  async NodeGetInfo() {
    return {
      node_id: this.cfg.nodeId,
      max_volumes_per_node: this.cfg.maxVolumesPerNode,
      accessible_topology: { segments: { [TOPOLOGY_KEY]: this.cfg.nodeId } },
    };
  }

  /**
   * A volume of the local pool is found by its record; an NFS volume by its
   * id and the volume_context the controller returned (server, share,
   * subDir; mountedAt when the export is pre-mounted on every node), checked
   * by the same validator as the controller's.
   */
  private async locate(id: string, context?: Record<string, string>): Promise<Located> {
    const ref = parseVolumeId(id);
    if (ref?.pool === 'nfs') {
      if (!this.cfg.servesNfs) throw notFound(`volume ${id} is on an NFS pool: NFS volumes are served by the NFS driver, not this one`);
      const located: Located = { ref, kind: ref.kind, fsType: fsTypeOf(context), volumeId: id };
      const nfs = nfsSourceOf(context, ref);
      if (!nfs) return located;
      if (nfs.mountedAt) {
        // volume_context is untrusted: mountedAt must be where this node's operator pre-mounts exports.
        const base = await requireAllowedMountedAt(path.join(nfs.mountedAt, nfs.subDir), this.cfg.mountedAtDirs);
        located.source =
          ref.kind === 'share'
            ? { kind: 'share', bind: base }
            : { kind: 'block', image: path.join(base, NFS_IMAGE), filesystemRecord: path.join(base, NFS_FILESYSTEM_RECORD) };
      } else if (ref.kind === 'share') {
        located.source = { kind: 'share', nfs: { device: nfsDevice(nfs.server, nfs.share, nfs.subDir), options: nfs.mountOptions } };
      } else {
        const device = nfsDevice(nfs.server, nfs.share);
        const mountPoint = this.exportMountPoint(device);
        located.source = {
          kind: 'block',
          image: path.join(mountPoint, nfs.subDir, NFS_IMAGE),
          filesystemRecord: path.join(mountPoint, nfs.subDir, NFS_FILESYSTEM_RECORD),
          export: { device, options: nfs.mountOptions, mountPoint },
        };
      }
      return located;
    }
    const rec = ref ? await this.localPool.read(ref.dirName) : undefined;
    if (!ref || !rec || rec.volumeId !== id) throw notFound(`volume ${id} does not exist in the local pool of ${this.cfg.nodeId}`);
    const source: VolumeSource =
      rec.kind === 'share'
        ? { kind: 'share', bind: this.localPool.dataDir(ref.dirName) }
        : {
            kind: 'block',
            image: this.localPool.imagePath(ref.dirName),
            filesystemRecord: this.localPool.filesystemRecordPath(ref.dirName),
          };
    return { ref, kind: rec.kind, fsType: rec.fsType, volumeId: id, source };
  }

  /** Where this node mounts an NFS export that holds block images. */
  private exportMountPoint(device: string): string {
    return path.join(this.cfg.nfsMountDir, createHash('sha256').update(device).digest('hex').slice(0, 16));
  }

  /**
   * Whether the mount `entry` at `at` shows the volume `ref`, proved from the
   * kernel's tables (the loop device's image, the bound directory's inode,
   * the NFS mount's source), so a call naming one volume never unmounts,
   * detaches or reports another.
   */
  private async holds(ref: VolumeRef, entry: MountEntry, at: string): Promise<boolean> {
    if (ref.kind === 'block') {
      const device = loopBehind(entry);
      if (!device) return false;
      const loop = await loopDevice(this.host, device);
      if (!loop) return true; // a loop device detached under its mount holds no volume's bytes: safe to undo
      if (ref.pool === 'local') return loop.backingFile === this.localPool.imagePath(ref.dirName);
      if (path.basename(loop.backingFile) !== NFS_IMAGE) return false;
      const under = (dir: string) => loop.backingFile.startsWith(`${dir}/`);
      return under(this.exportMountPoint(nfsDevice(ref.server, ref.share))) || this.cfg.mountedAtDirs.some(under);
    }
    if (ref.pool === 'local') {
      const dir = this.localPool.dataDir(ref.dirName);
      return (await exists(dir)) && this.host.sameFile(at, dir);
    }
    // An NFS mount shows its export in its source (server:/share/subDir).
    const device = nfsDevice(ref.server, ref.share);
    if (entry.source === device || entry.source.startsWith(ref.share === '/' ? device : `${device}/`)) return true;
    // A bind of a directory of a pre-mounted export.
    return this.cfg.mountedAtDirs.some((dir) => entry.fsroot === dir || entry.fsroot.startsWith(`${dir}/`));
  }

  private path(field: string, value: string | undefined): Promise<string> {
    return requireKubeletPath(field, value, this.cfg.kubeletDir);
  }

  private checkCapability(v: Located, cap: VolumeCapability): void {
    const problem = capabilityProblem(v.kind, cap);
    if (problem) throw invalid(problem);
  }

  // ------------------------------------------------------------------- stage

  async NodeStageVolume(req: NodeStageVolumeRequest): Promise<Empty> {
    // Required fields first (the spec's INVALID_ARGUMENT), then the volume.
    const id = requireString('volume_id', req.volume_id);
    const staging = await this.path('staging_target_path', req.staging_target_path);
    const cap = req.volume_capability;
    if (!cap) throw invalid('volume_capability is required');
    const flags = mountOptions(cap.mount?.mount_flags ?? [], 'mount flag');
    const v = await this.locate(id, req.volume_context);
    this.checkCapability(v, cap);
    if (!v.source) throw invalid('volume_context is required for an NFS volume (server, share, subDir)');
    // A stale NFS mount already on staging answers ESTALE: stageShare remounts it.
    await fs.mkdir(staging, { recursive: true, mode: 0o750 }).catch((err: unknown) => {
      if (!isStaleError(err)) throw err;
    });
    const mounts = await this.host.readMounts();
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
    const readonly = READ_ONLY_MODES.has(cap.access_mode?.mode ?? '') || publishedReadOnly(req.publish_context);
    if (src.kind === 'share') {
      await this.stageShare(src, staging, readonly, flags, mounts);
    } else {
      if (src.export) await this.ensureExportMounted(src.export, mounts);
      if (accessType === 'block') await this.stageRaw(src.image, staging, readonly, mounts);
      else await this.stageFilesystem(v.volumeId, src, staging, fsType, flags, readonly, mounts);
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
  private async mountNfs(device: string, target: string, options: string[]): Promise<void> {
    await this.mountNfsOnce(device, target, options);
    if (!(await this.host.isStale(target))) return;
    await this.host.unmount(target);
    await this.mountNfsOnce(device, target, layeredMountOptions(options, ['nosharecache']));
    if (!(await this.host.isStale(target))) return;
    await this.host.unmount(target);
    throw unavailable(`${device} answers with a stale file handle even to a fresh mount; try again later`);
  }

  /** `mount -t nfs`, with a timeout; an unreachable server is UNAVAILABLE (retryable). */
  private async mountNfsOnce(device: string, target: string, options: string[]): Promise<void> {
    try {
      await this.host.mount(device, target, { fstype: 'nfs', options, timeoutMs: NFS_MOUNT_TIMEOUT_MS });
    } catch (err) {
      if (err instanceof CommandError && (err.timedOut || NFS_UNREACHABLE.test(err.stderr)))
        throw unavailable(`NFS server for ${device} is unreachable: ${err.message}`);
      throw err;
    }
  }

  /** The export that holds block images, mounted once per node. */
  private async ensureExportMounted(exp: { device: string; options: string[]; mountPoint: string }, mounts: MountEntry[]): Promise<void> {
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
    if (loops.length === 0 && (await mountAt(this.host, mountPoint))) await this.unmountReported(mountPoint);
  }

  private async stageRaw(image: string, staging: string, readOnly: boolean, mounts: MountEntry[]): Promise<void> {
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
    const device = await attachImage(this.host, image, { readOnly });
    try {
      await (await fs.open(file, 'a', 0o600)).close();
      await this.host.bindMount(device, file, false);
    } catch (err) {
      await this.detachIfUnused(device);
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
    const device = await attachImage(this.host, image, { readOnly: readonly });
    try {
      await formatOnceAndMount(this.host, device, staging, fsType, flags, { recordPath: src.filesystemRecord, image, readonly, volumeId });
    } catch (err) {
      if ((await mountAt(this.host, staging))?.source === device) await this.host.unmount(staging).catch(() => undefined);
      await this.detachIfUnused(device);
      if (err instanceof ForeignContentError) throw failedPrecondition(`volume ${volumeId}: ${err.message}`);
      throw err;
    }
  }

  /** Detaches a loop device unless something still mounts it. */
  private async detachIfUnused(device: string): Promise<void> {
    if (mountsOfDevice(await this.host.readMounts(), device).length === 0) await this.host.detachLoop(device);
  }

  async NodeUnstageVolume(req: NodeUnstageVolumeRequest): Promise<Empty> {
    const id = requireString('volume_id', req.volume_id);
    const staging = await this.path('staging_target_path', req.staging_target_path);
    const ref = parseVolumeId(id);
    if (!ref) throw notFound(`volume ${id} is not a berth volume`);
    let mounts = await this.host.readMounts();
    const released: string[] = []; // loop devices the staging mounts held
    for (const target of [path.join(staging, RAW_DEVICE_FILE), staging]) {
      const entry = topMount(mounts, target);
      if (!entry) continue;
      if (!(await this.holds(ref, entry, target)))
        throw failedPrecondition(`${target} holds another volume than ${id} (${entry.source}); leaving it mounted`);
      const device = loopBehind(entry);
      if (device) released.push(device);
      // Users: binds of the same mount, and (raw block) of any loop device of the same image.
      const loops = await this.host.readLoops();
      const image = loops.find((l) => l.device === device)?.backingFile;
      const loopsOfImage = new Set(loops.filter((l) => image !== undefined && l.backingFile === image).map((l) => l.device));
      const users = mounts.filter((m) => m.target !== target && (sameThing(m, entry) || loopsOfImage.has(boundDevice(m) ?? '')));
      if (users.length > 0) throw failedPrecondition(`volume ${id} is still published at ${users.map((u) => u.target).join(', ')}`);
      await this.unmountReported(target);
      mounts = await this.host.readMounts();
    }
    await fs.rm(path.join(staging, RAW_DEVICE_FILE), { force: true });
    await this.stages.remove(staging);
    const loops = [...released];
    if (ref.pool === 'local' && ref.kind === 'block')
      loops.push(...(await loopDevicesOf(this.host, this.localPool.imagePath(ref.dirName))).map((l) => l.device));
    for (const device of new Set(loops)) {
      const loop = await loopDevice(this.host, device);
      if (!loop?.backingFile || mountsOfDevice(mounts, device).length > 0) continue;
      await this.host.detachLoop(device);
      await this.releaseExportOf(loop.backingFile);
    }
    return {};
  }

  private async unmountReported(target: string): Promise<void> {
    try {
      await this.host.unmount(target);
    } catch (err) {
      if (err instanceof BusyError) throw failedPrecondition(`${err.message}; not detaching it lazily`);
      throw err;
    }
  }

  // ----------------------------------------------------------------- publish

  async NodePublishVolume(req: NodePublishVolumeRequest): Promise<Empty> {
    const id = requireString('volume_id', req.volume_id);
    const target = await this.path('target_path', req.target_path);
    const cap = req.volume_capability;
    if (!cap) throw invalid('volume_capability is required');
    if (!req.staging_target_path) throw failedPrecondition('staging_target_path is required: this driver stages volumes');
    const staging = await this.path('staging_target_path', req.staging_target_path);
    const within = (a: string, b: string) => a === b || a.startsWith(`${b}/`);
    if (within(target, staging) || within(staging, target)) {
      throw invalid(`target_path ${target} and staging_target_path ${staging} must be apart (neither inside the other)`);
    }
    const v = await this.locate(id, req.volume_context);
    this.checkCapability(v, cap);
    const raw = cap.access_type === 'block';
    const source = raw ? path.join(staging, RAW_DEVICE_FILE) : staging;
    const mounts = await this.host.readMounts();
    const staged = topMount(mounts, source);
    if (!staged) throw failedPrecondition(`volume ${v.volumeId} is not staged at ${staging}`);
    const readonly = req.readonly || READ_ONLY_MODES.has(cap.access_mode?.mode ?? '') || publishedReadOnly(req.publish_context);
    // Raw block: the image behind the staged device; a read-only publish gets a read-only device of its own.
    const stagedDevice = raw ? boundDevice(staged) : undefined;
    const stagedLoop = stagedDevice ? await loopDevice(this.host, stagedDevice) : undefined;
    if (raw && !stagedLoop) throw failedPrecondition(`${source} does not hold a loop device`);
    const shows = async (m: MountEntry) => {
      if (!raw) return sameThing(m, staged);
      const dev = boundDevice(m);
      return dev !== undefined && (await loopDevice(this.host, dev))?.backingFile === stagedLoop?.backingFile;
    };

    const existing = topMount(mounts, target);
    if (existing) {
      if (!(await shows(existing))) throw alreadyExists(`${target} already has another volume mounted (${existing.source})`);
      if (existing.options.includes('ro') !== readonly)
        throw alreadyExists(`${target} is already published ${readonly ? 'read-write' : 'read-only'}`);
      return {};
    }
    if (cap.access_mode?.mode === 'SINGLE_NODE_SINGLE_WRITER') {
      const others: MountEntry[] = [];
      for (const m of mounts) if (m.target !== source && (await shows(m))) others.push(m);
      if (others.length > 0) {
        throw failedPrecondition(
          `volume ${v.volumeId} is SINGLE_NODE_SINGLE_WRITER and already published at ${others.map((o) => o.target).join(', ')}`,
        );
      }
    }
    if (raw) {
      await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o750 });
      await (await fs.open(target, 'a', 0o600)).close();
    } else {
      await fs.mkdir(target, { recursive: true, mode: 0o750 });
    }
    const readOnlyDevice =
      raw && readonly && !stagedLoop?.readOnly
        ? await attachImage(this.host, stagedLoop?.backingFile as string, { readOnly: true })
        : undefined;
    try {
      await this.host.bindMount(readOnlyDevice ?? source, target, readonly);
    } catch (err) {
      await removeTarget(target).catch(() => undefined);
      if (readOnlyDevice) await this.detachIfUnused(readOnlyDevice);
      throw err;
    }
    return {};
  }

  async NodeUnpublishVolume(req: NodeUnpublishVolumeRequest): Promise<Empty> {
    const id = requireString('volume_id', req.volume_id);
    const target = await this.path('target_path', req.target_path);
    const ref = parseVolumeId(id);
    if (!ref) throw notFound(`volume ${id} is not a berth volume`);
    const published = await mountAt(this.host, target);
    if (published && !(await this.holds(ref, published, target))) {
      throw failedPrecondition(`${target} holds another volume than ${id} (${published.source}); leaving it mounted`);
    }
    // Bind mounts can stack when a caller retried around a crash: undo them all.
    const devices = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const entry = await mountAt(this.host, target);
      if (!entry) break;
      const dev = boundDevice(entry);
      if (dev) devices.add(dev);
      await this.unmountReported(target);
    }
    await removeTarget(target);
    // A read-only device made for this publish (raw block) goes with it.
    for (const dev of devices) if ((await loopDevice(this.host, dev))?.readOnly) await this.detachIfUnused(dev);
    return {};
  }

  // ------------------------------------------------------------------- stats

  async NodeGetVolumeStats(req: NodeGetVolumeStatsRequest): Promise<NodeGetVolumeStatsResponse> {
    const id = requireString('volume_id', req.volume_id);
    if (!req.volume_path) throw invalid('volume_path is required');
    // A path that cannot be a volume's (relative, outside the kubelet directory, through a link) holds
    // no volume: NOT_FOUND, as the spec (and csi-sanity) read it, rather than INVALID_ARGUMENT.
    const volumePath = await this.path('volume_path', req.volume_path).catch((err: Error) => {
      throw notFound(`no volume at ${req.volume_path}: ${err.message}`);
    });
    const { usage, condition } = await this.volumeHealth(id, volumePath, await this.host.readMounts());
    return { usage, volume_condition: { abnormal: condition.reason !== 'healthy', message: condition.message } };
  }

  /** Usage and condition of volume `id` at `volumePath` (a published or staging path, checked by the caller). */
  private async volumeHealth(
    id: string,
    volumePath: string,
    mounts: MountEntry[],
  ): Promise<{ usage: NodeGetVolumeStatsResponse['usage']; condition: VolumeCondition }> {
    let st: Stats;
    try {
      st = await fs.stat(volumePath);
    } catch {
      throw notFound(`nothing at ${volumePath}`);
    }
    const ref = parseVolumeId(id);
    const rec = ref?.pool === 'local' ? await this.localPool.read(ref.dirName) : undefined;
    if (!ref || (ref.pool === 'local' && rec?.volumeId !== id)) throw notFound(`volume ${id} does not exist`);
    const thin = rec?.kind === 'block' && rec.parameters.provisioning === 'thin';
    const entry = topMount(mounts, volumePath);
    // A path showing another volume is not this volume's (NOT_FOUND); this volume damaged (its image
    // moved or deleted under its device) is reported below as abnormal.
    if (entry && !(await this.holds(ref, entry, volumePath)) && (await this.showsAnotherVolume(ref, entry))) {
      throw notFound(`${volumePath} holds another volume, not ${id}`);
    }
    if (!st.isDirectory()) {
      // Raw block: the published device file.
      const device = entry && boundDevice(entry);
      if (!device) return { usage: [], condition: { reason: 'not_a_device', message: `${volumePath} is not a published device` } };
      const loop = await loopDevice(this.host, device);
      const size = await this.host.deviceSize(device);
      const condition = await this.loopCondition(ref, loop);
      return {
        usage: [{ unit: 'BYTES', total: size }],
        condition: condition.reason !== 'healthy' ? condition : ((await this.poolCondition(thin)) ?? condition),
      };
    }
    const s = await fs.statfs(volumePath);
    const usage = [
      { unit: 'BYTES' as const, total: s.blocks * s.bsize, available: s.bavail * s.bsize, used: (s.blocks - s.bfree) * s.bsize },
      { unit: 'INODES' as const, total: s.files, available: s.ffree, used: s.files - s.ffree },
    ];
    let condition: VolumeCondition = { reason: 'healthy', message: 'volume is mounted and healthy' };
    if (!entry) condition = { reason: 'not_mounted', message: `${volumePath} is not mounted` };
    else if (s.bavail === 0) condition = { reason: 'filesystem_full', message: "the volume's filesystem is full" };
    else if (ref.kind === 'block')
      condition = await this.loopCondition(
        ref,
        entry.source.startsWith('/dev/loop') ? await loopDevice(this.host, entry.source) : undefined,
      );
    else if (ref.pool === 'local' && !(await exists(this.localPool.dataDir(ref.dirName))))
      condition = { reason: 'data_missing', message: "the volume's directory is missing from the pool" };
    const device = entry && ref.kind === 'block' ? loopBehind(entry) : undefined;
    if (condition.reason === 'healthy' && entry && device === entry.source) {
      const errors = await this.host.filesystemErrors(entry.fstype, device);
      if (errors)
        condition = {
          reason: 'filesystem_errors',
          message: `the ${entry.fstype} filesystem has recorded ${errors} errors: check it (fsck) before trusting its data`,
        };
    }
    if (condition.reason === 'healthy') condition = (await this.poolCondition(thin)) ?? condition;
    return { usage, condition };
  }

  /**
   * What this node holds, for metrics and `berth-ctl status`: the volumes
   * staged here (from the stage records), how many publications they have
   * (bind mounts of a staged mount elsewhere below the kubelet directory),
   * and each staged volume whose condition is not healthy.
   */
  async status(): Promise<NodeStatus> {
    const mounts = await this.host.readMounts();
    const staged = await this.stages.list();
    let published = 0;
    const abnormal: NodeStatus['abnormal'] = [];
    for (const rec of staged) {
      if (!rec.stagingPath) continue; // written before berth kept the path: counted, not checked
      const at = rec.accessType === 'block' ? path.join(rec.stagingPath, RAW_DEVICE_FILE) : rec.stagingPath;
      const stagedMount = topMount(mounts, at);
      const below = `${path.resolve(this.cfg.kubeletDir)}/`;
      if (stagedMount) published += mounts.filter((m) => m.target !== at && m.target.startsWith(below) && sameThing(m, stagedMount)).length;
      const condition = await this.volumeHealth(rec.volumeId, at, mounts).then(
        (h) => h.condition,
        (err: Error): VolumeCondition => ({ reason: 'not_found', message: err.message }),
      );
      if (condition.reason !== 'healthy') abnormal.push({ volumeId: rec.volumeId, ...condition });
    }
    return { staged: staged.length, published, abnormal };
  }

  /**
   * For stats: whether a mount that does not hold `ref` shows some other
   * volume (NOT_FOUND), rather than this one damaged (abnormal): a share
   * always; a block device attached to an existing file, while this local
   * volume's own image is where it belongs.
   */
  private async showsAnotherVolume(ref: VolumeRef, entry: MountEntry): Promise<boolean> {
    if (ref.kind === 'share') return true;
    const device = loopBehind(entry);
    const loop = device ? await loopDevice(this.host, device) : undefined;
    if (!loop || loop.backingDeleted || !(await exists(loop.backingFile))) return false;
    return ref.pool === 'nfs' || (await exists(this.localPool.imagePath(ref.dirName)));
  }

  /** A thin local image whose pool is nearly full is abnormal before a write inside it fails. */
  private async poolCondition(thin: boolean): Promise<VolumeCondition | undefined> {
    if (!thin || !(await this.localPool.nearlyFull())) return undefined;
    return { reason: 'pool_nearly_full', message: 'the pool is nearly full: writes to this thin volume may fail (ENOSPC)' };
  }

  private async loopCondition(
    ref: VolumeRef,
    loop: { backingFile: string; backingDeleted: boolean } | undefined,
  ): Promise<VolumeCondition> {
    // An NFS volume's image may sit on a pre-mounted path: judge the backing file itself.
    const image = ref.pool === 'local' ? this.localPool.imagePath(ref.dirName) : (loop?.backingFile ?? '');
    if (!loop?.backingFile) return { reason: 'loop_detached', message: 'the loop device is detached' };
    if (loop.backingDeleted || !(await exists(image))) return { reason: 'image_missing', message: `the volume image ${image} is missing` };
    if (loop.backingFile !== image)
      return { reason: 'image_moved', message: `the loop device is attached to ${loop.backingFile}, not ${image}` };
    return { reason: 'healthy', message: 'volume is attached and healthy' };
  }

  // --------------------------------------------------------------- expansion

  async NodeExpandVolume(req: NodeExpandVolumeRequest): Promise<{ capacity_bytes: number }> {
    const id = requireString('volume_id', req.volume_id);
    if (!req.volume_path) throw invalid('volume_path is required');
    const v = await this.locate(id);
    const { ref } = v;
    const required = Number(req.capacity_range?.required_bytes ?? 0);
    // The local driver's volumes grow here, not on a controller: the image (thick: reserved) and record first.
    const growHere = ref.pool === 'local' && required > 0 ? this.cfg.growLocalVolume : undefined;
    if (v.kind === 'share') {
      await growHere?.(id, required);
      return { capacity_bytes: required };
    }
    const mounts = await this.host.readMounts();
    const where = req.staging_target_path || req.volume_path;
    const entry = topMount(mounts, where) ?? topMount(mounts, req.volume_path) ?? topMount(mounts, path.join(where, RAW_DEVICE_FILE));
    if (!entry) throw notFound(`volume ${v.volumeId} is not mounted at ${where}`);
    const device = boundDevice(entry) ?? entry.source;
    const loop = await loopDevice(this.host, device);
    if (!loop || (ref.pool === 'local' && loop.backingFile !== this.localPool.imagePath(ref.dirName)))
      throw notFound(`${where} does not hold volume ${v.volumeId}`);
    await growHere?.(id, required);
    await this.host.refreshLoopSize(device);
    const size = await this.host.deviceSize(device);
    if (required > size)
      throw outOfRange(`the image is ${size} bytes, fewer than the ${required} asked: expand the volume on the controller first`);
    if (entry.fstype !== 'devtmpfs' && (await filesystemSmallerThan(this.host, size, entry.fstype, device, entry.target))) {
      try {
        await this.host.growMounted(entry.fstype, device, entry.target);
      } catch (err) {
        if (entry.fstype === 'ext4' && err instanceof CommandError) {
          throw failedPrecondition(
            `ext4 cannot grow online on this node (${err.stderr.trim() || err.message}); it grows when the volume is next staged`,
          );
        }
        throw err;
      }
    }
    return { capacity_bytes: size };
  }
}

/** Removes a publish target: a file, or an empty directory; never contents. */
async function removeTarget(target: string): Promise<void> {
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
