// The CSI Node service on local pools: stage (bind a share, or attach the
// image to a loop device, format only when blank, mount), publish (bind into
// the pod directory), the reverse, stats and expansion. State comes from the
// kernel's mount and loop tables at every call, never from memory.
import fs from 'node:fs/promises';
import path from 'node:path';
import { capabilityProblem, DEFAULT_FS_TYPE } from '../controller/capabilities.js';
import { TOPOLOGY_KEY } from '../controller/controller-service.js';
import type { LocalPool } from '../controller/local-pool.js';
import { NFS_IMAGE } from '../controller/nfs-pool.js';
import { requireString } from '../controller/request-fields.js';
import { parseVolumeId, type VolumeRef } from '../controller/volume-id.js';
import type {
  NodeExpandVolumeRequest,
  NodeGetVolumeStatsRequest,
  NodeGetVolumeStatsResponse,
  NodeHandlers,
  NodePublishVolumeRequest,
  NodeStageVolumeRequest,
  NodeUnpublishVolumeRequest,
  NodeUnstageVolumeRequest,
  VolumeCapability,
} from './csi.js';
import { READ_ONLY_MODES } from './csi.js';
import { alreadyExists, failedPrecondition, invalid, notFound, outOfRange, unavailable } from './errors.js';
import { createHash } from 'node:crypto';
import { requireKubeletPath } from './kubelet-paths.js';
import type { Logger } from './log.js';
import type { Pipeline } from './pipeline.js';
import {
  attachImage,
  BusyError,
  bindMount,
  CommandError,
  detachLoop,
  deviceSize,
  exists,
  filesystemSmallerThan,
  ForeignContentError,
  formatAndMount,
  growMounted,
  listMounts,
  loopDevice,
  listLoopDevices,
  loopDevicesOf,
  isStale,
  isStaleError,
  mount,
  mountAt,
  mountsOfDevice,
  NFS_MOUNT_TIMEOUT_MS,
  refreshLoopSize,
  unmount,
  unsafeMountOption,
  type MountEntry,
} from './toolkit/index.js';

export interface NodeConfig {
  nodeId: string;
  pool: LocalPool;
  /** Where this node mounts NFS exports that hold block images. */
  nfsMountDir: string;
  kubeletDir: string;
  maxVolumesPerNode: number;
  log: Logger;
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


/** Two mounts show the same thing when source and root inside it agree. */
const sameThing = (a: MountEntry, b: MountEntry) => a.source === b.source && a.fsroot === b.fsroot;

/** Where a volume's bytes are reachable on this node. */
type VolumeSource =
  | { kind: 'share'; bind: string }
  | { kind: 'share'; nfs: { device: string; options: string[] } }
  | { kind: 'block'; image: string; export?: { device: string; options: string[]; mountPoint: string } };

interface Located {
  ref: VolumeRef;
  kind: 'share' | 'block';
  fsType: string;
  volumeId: string;
  /** Undefined for an NFS volume when the call carries no volume_context. */
  source?: VolumeSource;
}

const NFS_UNREACHABLE = /timed out|refused|unreachable|no route|connection reset|not responding|network is down/i;

export class NodeService {
  constructor(private readonly cfg: NodeConfig) {}

  static lockById = (req: { volume_id?: string }) => (req.volume_id ? `node/${req.volume_id}` : undefined);

  handlers(p: Pipeline): NodeHandlers {
    const byId = { lockKey: NodeService.lockById };
    return {
      NodeStageVolume: p.unary('NodeStageVolume', (r: NodeStageVolumeRequest) => this.stage(r), byId),
      NodeUnstageVolume: p.unary('NodeUnstageVolume', (r: NodeUnstageVolumeRequest) => this.unstage(r), byId),
      NodePublishVolume: p.unary('NodePublishVolume', (r: NodePublishVolumeRequest) => this.publish(r), byId),
      NodeUnpublishVolume: p.unary('NodeUnpublishVolume', (r: NodeUnpublishVolumeRequest) => this.unpublish(r), byId),
      NodeGetVolumeStats: p.unary('NodeGetVolumeStats', (r: NodeGetVolumeStatsRequest) => this.stats(r)),
      NodeExpandVolume: p.unary('NodeExpandVolume', (r: NodeExpandVolumeRequest) => this.expand(r), byId),
      NodeGetCapabilities: p.unary('NodeGetCapabilities', async () => ({
        capabilities: NODE_CAPABILITIES.map((type) => ({ rpc: { type } })),
      })),
      NodeGetInfo: p.unary('NodeGetInfo', async () => ({
        node_id: this.cfg.nodeId,
        max_volumes_per_node: this.cfg.maxVolumesPerNode,
        accessible_topology: { segments: { [TOPOLOGY_KEY]: this.cfg.nodeId } },
      })),
    };
  }

  /**
   * A volume of the local pool is found by its record; an NFS volume by its
   * id and the volume_context the controller returned (server, share,
   * subDir; mountedAt when the export is pre-mounted on every node).
   */
  private async locate(volumeId: string | undefined, context: Record<string, string> = {}): Promise<Located> {
    const id = requireString('volume_id', volumeId);
    const ref = parseVolumeId(id);
    if (ref?.pool === 'nfs') {
      const located: Located = { ref, kind: ref.kind, fsType: context.fsType ?? '', volumeId: id };
      if (context.subDir === undefined) return located;
      const subDir = context.subDir;
      // '' is the export's root (a share migrated from FlexVolume may be the whole export).
      if (subDir !== '' && (subDir.startsWith('/') || subDir.split('/').some((c) => c === '..' || c === '.' || c === '' || c.includes('\0')))) {
        throw invalid(`volume_context subDir "${subDir}" is not a relative path`);
      }
      const options = (context.mountOptions ?? '').split(',').filter(Boolean);
      const bad = unsafeMountOption(options);
      if (bad !== undefined) throw invalid(`mount option "${bad}" holds a character that is not allowed`);
      const device = `${ref.server}:${ref.share}`;
      if (context.mountedAt) {
        const base = path.join(context.mountedAt, subDir);
        located.source = ref.kind === 'share' ? { kind: 'share', bind: base } : { kind: 'block', image: path.join(base, NFS_IMAGE) };
      } else if (ref.kind === 'share') {
        located.source = { kind: 'share', nfs: { device: path.posix.join(device, subDir), options } };
      } else {
        const mountPoint = path.join(this.cfg.nfsMountDir, createHash('sha256').update(device).digest('hex').slice(0, 16));
        located.source = { kind: 'block', image: path.join(mountPoint, subDir, NFS_IMAGE), export: { device, options, mountPoint } };
      }
      return located;
    }
    const rec = ref ? await this.cfg.pool.read(ref.dirName) : undefined;
    if (!ref || !rec || rec.volumeId !== id) throw notFound(`volume ${id} does not exist in the local pool of ${this.cfg.nodeId}`);
    const source: VolumeSource = rec.kind === 'share' ? { kind: 'share', bind: this.cfg.pool.dataDir(ref.dirName) } : { kind: 'block', image: this.cfg.pool.imagePath(ref.dirName) };
    return { ref, kind: rec.kind, fsType: rec.fsType, volumeId: id, source };
  }

  private path(field: string, value: string | undefined): Promise<string> {
    return requireKubeletPath(field, value, this.cfg.kubeletDir);
  }

  private requireCapability(v: Located, cap: VolumeCapability | null): VolumeCapability {
    if (!cap) throw invalid('volume_capability is required');
    const problem = capabilityProblem(v.kind, cap);
    if (problem) throw invalid(problem);
    return cap;
  }

  // ------------------------------------------------------------------- stage

  async stage(req: NodeStageVolumeRequest): Promise<Record<string, never>> {
    const v = await this.locate(req.volume_id, req.volume_context);
    const staging = await this.path('staging_target_path', req.staging_target_path);
    const cap = this.requireCapability(v, req.volume_capability);
    if (!v.source) throw invalid('volume_context is required for an NFS volume (server, share, subDir)');
    // A stale NFS mount already on staging answers ESTALE: stageShare remounts it.
    await fs.mkdir(staging, { recursive: true, mode: 0o750 }).catch((err: unknown) => {
      if (!isStaleError(err)) throw err;
    });
    const mounts = await listMounts();
    const src = v.source;
    if (src.kind === 'share') {
      await this.stageShare(src, staging, mounts);
      return {};
    }
    if (src.export) await this.ensureExportMounted(src.export, mounts);
    if (cap.access_type === 'block') {
      await this.stageRaw(src.image, staging, mounts);
    } else {
      const fsType = cap.mount?.fs_type || v.fsType || DEFAULT_FS_TYPE;
      await this.stageFilesystem(v.volumeId, src.image, staging, fsType, mountFlags(cap), mounts);
    }
    return {};
  }

  private async stageShare(src: Extract<VolumeSource, { kind: 'share' }>, staging: string, mounts: MountEntry[]): Promise<void> {
    const current = topMount(mounts, staging);
    if ('bind' in src) {
      if (current) {
        if (await sameInode(src.bind, staging)) return;
        throw alreadyExists(`${staging} already has something else mounted (${current.source})`);
      }
      if (!(await exists(src.bind))) throw notFound(`the volume's directory ${src.bind} does not exist`);
      await bindMount(src.bind, staging, false);
      return;
    }
    if (current) {
      if (current.source !== src.nfs.device) throw alreadyExists(`${staging} already has ${current.source} mounted`);
      // A stale file handle (the export was recreated on the server): remount.
      if (!(await isStale(staging))) return;
      await unmount(staging);
    }
    await this.mountNfs(src.nfs.device, staging, src.nfs.options);
  }

  /** `mount -t nfs`, with a timeout; an unreachable server is UNAVAILABLE (retryable). */
  private async mountNfs(device: string, target: string, options: string[]): Promise<void> {
    try {
      await mount(device, target, { fstype: 'nfs', options, timeoutMs: NFS_MOUNT_TIMEOUT_MS });
    } catch (err) {
      if (err instanceof CommandError && (err.timedOut || NFS_UNREACHABLE.test(err.stderr))) throw unavailable(`NFS server for ${device} is unreachable: ${err.message}`);
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
    const loops = (await listLoopDevices()).filter((l) => l.backingFile.startsWith(`${mountPoint}/`));
    if (loops.length === 0 && (await mountAt(mountPoint))) await this.unmountReported(mountPoint);
  }

  private async stageRaw(image: string, staging: string, mounts: MountEntry[]): Promise<void> {
    const file = path.join(staging, RAW_DEVICE_FILE);
    const current = topMount(mounts, file);
    if (current) {
      const dev = `/dev${current.fsroot}`;
      if ((await loopDevice(dev))?.backingFile === image) return;
      throw alreadyExists(`${file} already holds another device (${current.source})`);
    }
    if (topMount(mounts, staging)) throw alreadyExists(`${staging} is staged as a filesystem, not as a raw block device`);
    const device = await attachImage(image);
    try {
      await (await fs.open(file, 'a', 0o600)).close();
      await bindMount(device, file, false);
    } catch (err) {
      await this.detachIfUnused(device);
      throw err;
    }
  }

  private async stageFilesystem(volumeId: string, image: string, staging: string, fsType: string, flags: string[], mounts: MountEntry[]): Promise<void> {
    const current = topMount(mounts, staging);
    if (current) {
      const backing = current.source.startsWith('/dev/loop') ? await loopDevice(current.source) : undefined;
      if (backing?.backingFile === image && current.fstype === fsType) return;
      throw alreadyExists(
        `${staging} already has ${backing?.backingFile === image ? `this volume mounted as ${current.fstype}` : `${current.source} mounted`}; asked for ${fsType}`,
      );
    }
    if (topMount(mounts, path.join(staging, RAW_DEVICE_FILE))) throw alreadyExists(`${staging} is staged as a raw block device`);
    if (!(await exists(image))) throw notFound(`the volume's image ${image} does not exist`);
    const device = await attachImage(image);
    try {
      await formatAndMount(device, staging, fsType, { sensitiveOptions: flags });
    } catch (err) {
      await this.detachIfUnused(device);
      if (err instanceof ForeignContentError) throw failedPrecondition(`volume ${volumeId}: ${err.message}`);
      throw err;
    }
  }

  /** Detaches a loop device unless something still mounts it. */
  private async detachIfUnused(device: string): Promise<void> {
    if (mountsOfDevice(await listMounts(), device).length === 0) await detachLoop(device);
  }

  async unstage(req: NodeUnstageVolumeRequest): Promise<Record<string, never>> {
    const id = requireString('volume_id', req.volume_id);
    const staging = await this.path('staging_target_path', req.staging_target_path);
    const ref = parseVolumeId(id);
    if (!ref) throw notFound(`volume ${id} is not a berth volume`);
    let mounts = await listMounts();
    const released: string[] = []; // loop devices the staging mounts held
    for (const target of [path.join(staging, RAW_DEVICE_FILE), staging]) {
      const entry = topMount(mounts, target);
      if (!entry) continue;
      if (entry.source.startsWith('/dev/loop')) released.push(entry.source);
      else if (entry.fstype === 'devtmpfs' && entry.fsroot.startsWith('/loop')) released.push(`/dev${entry.fsroot}`);
      const users = mounts.filter((m) => m.target !== target && sameThing(m, entry));
      if (users.length > 0) {
        throw failedPrecondition(`volume ${id} is still published at ${users.map((u) => u.target).join(', ')}`);
      }
      await this.unmountReported(target);
      mounts = await listMounts();
    }
    await fs.rm(path.join(staging, RAW_DEVICE_FILE), { force: true });
    const loops = [...released];
    if (ref.pool === 'local' && ref.kind === 'block') loops.push(...(await loopDevicesOf(this.cfg.pool.imagePath(ref.dirName))).map((l) => l.device));
    for (const device of new Set(loops)) {
      const loop = await loopDevice(device);
      if (!loop?.backingFile || mountsOfDevice(mounts, device).length > 0) continue;
      await detachLoop(device);
      await this.releaseExportOf(loop.backingFile);
    }
    return {};
  }

  private async unmountReported(target: string): Promise<void> {
    try {
      await unmount(target);
    } catch (err) {
      if (err instanceof BusyError) throw failedPrecondition(`${err.message}; not detaching it lazily`);
      throw err;
    }
  }

  // ----------------------------------------------------------------- publish

  async publish(req: NodePublishVolumeRequest): Promise<Record<string, never>> {
    const v = await this.locate(req.volume_id, req.volume_context);
    const target = await this.path('target_path', req.target_path);
    const cap = this.requireCapability(v, req.volume_capability);
    if (!req.staging_target_path) throw failedPrecondition('staging_target_path is required: this driver stages volumes');
    const staging = await this.path('staging_target_path', req.staging_target_path);
    const raw = cap.access_type === 'block';
    const source = raw ? path.join(staging, RAW_DEVICE_FILE) : staging;
    const mounts = await listMounts();
    const staged = topMount(mounts, source);
    if (!staged) throw failedPrecondition(`volume ${v.volumeId} is not staged at ${staging}`);
    const readonly = req.readonly || READ_ONLY_MODES.has(cap.access_mode?.mode ?? '');

    const existing = topMount(mounts, target);
    if (existing) {
      if (!sameThing(existing, staged)) throw alreadyExists(`${target} already has another volume mounted (${existing.source})`);
      if (existing.options.includes('ro') !== readonly) {
        throw alreadyExists(`${target} is already published ${readonly ? 'read-write' : 'read-only'}`);
      }
      return {};
    }
    if (cap.access_mode?.mode === 'SINGLE_NODE_SINGLE_WRITER') {
      const others = mounts.filter((m) => sameThing(m, staged) && m.target !== source);
      if (others.length > 0) {
        throw failedPrecondition(`volume ${v.volumeId} is SINGLE_NODE_SINGLE_WRITER and already published at ${others.map((o) => o.target).join(', ')}`);
      }
    }
    if (raw) {
      await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o750 });
      await (await fs.open(target, 'a', 0o600)).close();
    } else {
      await fs.mkdir(target, { recursive: true, mode: 0o750 });
    }
    try {
      await bindMount(source, target, readonly);
    } catch (err) {
      await removeTarget(target).catch(() => undefined);
      throw err;
    }
    return {};
  }

  async unpublish(req: NodeUnpublishVolumeRequest): Promise<Record<string, never>> {
    requireString('volume_id', req.volume_id);
    const target = await this.path('target_path', req.target_path);
    // Bind mounts can stack when a caller retried around a crash: undo them all.
    for (let i = 0; i < 8 && topMount(await listMounts(), target); i++) await this.unmountReported(target);
    await removeTarget(target);
    return {};
  }

  // ------------------------------------------------------------------- stats

  async stats(req: NodeGetVolumeStatsRequest): Promise<NodeGetVolumeStatsResponse> {
    const id = requireString('volume_id', req.volume_id);
    if (!req.volume_path) throw invalid('volume_path is required');
    const volumePath = req.volume_path;
    let st;
    try {
      st = await fs.stat(volumePath);
    } catch {
      throw notFound(`nothing at ${volumePath}`);
    }
    const ref = parseVolumeId(id);
    if (!ref) throw notFound(`volume ${id} is not a berth volume`);
    const entry = topMount(await listMounts(), volumePath);
    if (!st.isDirectory()) {
      // Raw block: the published device file.
      if (!entry || entry.fstype !== 'devtmpfs') {
        return { usage: [], volume_condition: { abnormal: true, message: `${volumePath} is not a published device` } };
      }
      const device = `/dev${entry.fsroot}`;
      const loop = await loopDevice(device);
      const size = await deviceSize(device);
      return {
        usage: [{ unit: 'BYTES', total: size }],
        volume_condition: await this.loopCondition(ref, loop),
      };
    }
    const s = await fs.statfs(volumePath);
    const usage = [
      { unit: 'BYTES' as const, total: s.blocks * s.bsize, available: s.bavail * s.bsize, used: (s.blocks - s.bfree) * s.bsize },
      { unit: 'INODES' as const, total: s.files, available: s.ffree, used: s.files - s.ffree },
    ];
    let condition = { abnormal: false, message: 'volume is mounted and healthy' };
    if (!entry) condition = { abnormal: true, message: `${volumePath} is not mounted` };
    else if (ref.kind === 'block') condition = await this.loopCondition(ref, entry.source.startsWith('/dev/loop') ? await loopDevice(entry.source) : undefined);
    else if (ref.pool === 'local' && !(await exists(this.cfg.pool.dataDir(ref.dirName)))) condition = { abnormal: true, message: "the volume's directory is missing from the pool" };
    return { usage, volume_condition: condition };
  }

  private async loopCondition(ref: VolumeRef, loop: { backingFile: string; backingDeleted: boolean } | undefined) {
    // An NFS volume's image may sit on a pre-mounted path: judge the backing file itself.
    const image = ref.pool === 'local' ? this.cfg.pool.imagePath(ref.dirName) : loop?.backingFile ?? '';
    if (!loop || !loop.backingFile) return { abnormal: true, message: 'the loop device is detached' };
    if (loop.backingDeleted || !(await exists(image))) return { abnormal: true, message: `the volume image ${image} is missing` };
    if (loop.backingFile !== image) return { abnormal: true, message: `the loop device is attached to ${loop.backingFile}, not ${image}` };
    return { abnormal: false, message: 'volume is attached and healthy' };
  }

  // --------------------------------------------------------------- expansion

  async expand(req: NodeExpandVolumeRequest): Promise<{ capacity_bytes: number }> {
    const v = await this.locate(req.volume_id);
    const { ref } = v;
    if (!req.volume_path) throw invalid('volume_path is required');
    const required = Number(req.capacity_range?.required_bytes ?? 0);
    if (v.kind === 'share') return { capacity_bytes: required };
    const mounts = await listMounts();
    const where = req.staging_target_path || req.volume_path;
    const entry = topMount(mounts, where) ?? topMount(mounts, req.volume_path) ?? topMount(mounts, path.join(where, RAW_DEVICE_FILE));
    if (!entry) throw notFound(`volume ${v.volumeId} is not mounted at ${where}`);
    const device = entry.fstype === 'devtmpfs' ? `/dev${entry.fsroot}` : entry.source;
    const loop = await loopDevice(device);
    if (!loop || (ref.pool === 'local' && loop.backingFile !== this.cfg.pool.imagePath(ref.dirName))) throw notFound(`${where} does not hold volume ${v.volumeId}`);
    await refreshLoopSize(device);
    const size = await deviceSize(device);
    if (required > size) throw outOfRange(`the image is ${size} bytes, fewer than the ${required} asked: expand the volume on the controller first`);
    if (entry.fstype !== 'devtmpfs' && (await filesystemSmallerThan(size, entry.fstype, device, entry.target))) {
      try {
        await growMounted(entry.fstype, device, entry.target);
      } catch (err) {
        if (entry.fstype === 'ext4' && err instanceof CommandError) {
          throw failedPrecondition(`ext4 cannot grow online on this node (${err.stderr.trim() || err.message}); it grows when the volume is next staged`);
        }
        throw err;
      }
    }
    return { capacity_bytes: size };
  }
}

function topMount(mounts: MountEntry[], target: string): MountEntry | undefined {
  const hits = mounts.filter((m) => m.target === target);
  return hits[hits.length - 1];
}

function mountFlags(cap: VolumeCapability): string[] {
  const flags = cap.mount?.mount_flags ?? [];
  if (unsafeMountOption(flags) !== undefined) throw invalid('mount_flags hold a character that is not allowed in a mount option');
  return flags;
}

async function sameInode(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([fs.stat(a), fs.stat(b)]);
  return x.dev === y.dev && x.ino === y.ino;
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
