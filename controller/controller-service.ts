// The CSI Controller service: provisioning (CreateVolume / DeleteVolume,
// empty or copied from a snapshot or a volume), attach (ControllerPublish /
// ControllerUnpublish), listing, capacity, expansion, modification and
// snapshots. Every answer is computed from the pool's records, never from
// memory, so any replica or restart sees the same truth.
//
// Snapshots live in their source volume's pool and are independent of it:
// a copy (a reflink shares blocks copy-on-write, never content), so
// DeleteVolume of a volume with snapshots deletes the volume and keeps them.

import { blockFsType, capabilityProblem, MIN_BLOCK_BYTES, requireCapabilities } from '../volume/capabilities.js';
import type {
  ControllerExpandVolumeRequest,
  ControllerGetVolumeRequest,
  ControllerGetVolumeResponse,
  ControllerModifyVolumeRequest,
  ControllerPublishVolumeRequest,
  ControllerUnpublishVolumeRequest,
  CreateSnapshotRequest,
  CreateVolumeRequest,
  CreateVolumeResponse,
  DeleteSnapshotRequest,
  DeleteVolumeRequest,
  GetCapacityRequest,
  GetSnapshotRequest,
  ListSnapshotsRequest,
  ListSnapshotsResponse,
  ListVolumesRequest,
  ListVolumesResponse,
  Snapshot,
  Topology,
  ValidateVolumeCapabilitiesRequest,
  ValidateVolumeCapabilitiesResponse,
  Volume,
} from '../volume/csi.js';
import { SINGLE_NODE_MODES } from '../volume/csi.js';
import {
  aborted,
  alreadyExists,
  Code,
  CsiError,
  exhausted,
  failedPrecondition,
  invalid,
  notFound,
  outOfRange,
  unimplemented,
} from '../volume/errors.js';
import {
  expandSubDir,
  identityParameters,
  parseMutableParameters,
  parseParameters,
  parseSnapshotParameters,
  type VolumeParameters,
} from '../volume/parameters.js';
import type { SnapshotRecord, VolumeRecord } from '../volume/record.js';
import { parseRange, requireName, requireString } from '../volume/request-fields.js';
import { TOPOLOGY_KEY } from '../volume/topology.js';
import { encodePublishContext, encodeVolumeContext, staticNfsShareOf, type VolumeContext } from '../volume/volume-context.js';
import {
  encodeNode,
  formatSnapshotId,
  formatVolumeId,
  parseSnapshotId,
  parseVolumeId,
  type VolumeRef,
  volumeDirName,
} from '../volume/volume-id.js';
import { LocalPool } from './local-pool.js';
import { NfsPool, type NfsPools, nfsPoolKey } from './nfs-pool.js';
import type { NodeDirectory } from './nodes.js';
import type { ContentSource, Pool } from './pool.js';
import { type PoolReport, within } from './pool-usage.js';

export const DEFAULT_BLOCK_BYTES = 1 << 30;
const SECTOR = 512;

export interface ControllerConfig {
  nodeId: string;
  /** This node's local pool; undefined for the central controller, which has none. */
  pool?: LocalPool;
  /** NFS pools; undefined for a node's local driver. */
  nfs?: NfsPools;
  /**
   * The nodes volumes may be published to (NOT_FOUND otherwise), and their
   * volume limits. Undefined for a node's local driver: its volumes are
   * pinned to their node by topology and never attached (attachRequired false).
   */
  nodes?: NodeDirectory;
}

const roundUp = (n: number, unit: number) => Math.ceil(n / unit) * unit;

/** List tokens: opaque to callers; to us a position, the pool and the last key listed (`tag`: what is listed). */
const pageToken = (tag: string) => ({
  encode: (poolKey: string, dirName: string) => Buffer.from(`${tag}:${poolKey}\n${dirName}`).toString('base64url'),
  decode(token: string): { poolKey: string; dirName: string } {
    const text = Buffer.from(token, 'base64url').toString();
    const nl = text.indexOf('\n');
    if (!text.startsWith(`${tag}:`) || nl < 0 || Buffer.from(text).toString('base64url') !== token) {
      throw aborted(`starting_token "${token}" is not a token this driver issued`);
    }
    return { poolKey: text.slice(tag.length + 1, nl), dirName: text.slice(nl + 1) };
  },
});

export const listToken = pageToken('v1');
const snapshotListToken = pageToken('s1');

const LOCAL_POOL_KEY = '';

const lockByName = (req: { name?: string }) => (req.name ? `controller/${volumeDirName(req.name)}` : undefined);
const lockById = (req: { volume_id?: string }) => {
  const ref = req.volume_id ? parseVolumeId(req.volume_id) : undefined;
  return ref ? `controller/${ref.dirName}` : undefined;
};
const lockBySnapshotName = (req: { name?: string }) => (req.name ? `snapshot/${volumeDirName(req.name)}` : undefined);
const lockBySnapshotId = (req: { snapshot_id?: string }) => {
  const ref = req.snapshot_id ? parseSnapshotId(req.snapshot_id) : undefined;
  return ref ? `snapshot/${ref.dirName}` : undefined;
};

export class ControllerService {
  private readonly nodeTopology: Topology;

  constructor(private readonly cfg: ControllerConfig) {
    this.nodeTopology = { segments: { [TOPOLOGY_KEY]: cfg.nodeId } };
  }

  /** The per-volume lock each RPC holds (the pipeline answers ABORTED to a second caller). */
  static readonly lockKeys = {
    CreateVolume: lockByName,
    DeleteVolume: lockById,
    ControllerPublishVolume: lockById,
    ControllerUnpublishVolume: lockById,
    ControllerExpandVolume: lockById,
    ControllerModifyVolume: lockById,
    CreateSnapshot: lockBySnapshotName,
    DeleteSnapshot: lockBySnapshotId,
  };

  async ControllerGetCapabilities() {
    const offered = this.cfg.nodes ? CONTROLLER_CAPABILITIES : LOCAL_DRIVER_CONTROLLER_CAPABILITIES;
    return { capabilities: offered.map((type) => ({ rpc: { type } })) };
  }

  private localPool(): LocalPool {
    if (!this.cfg.pool) {
      throw invalid(
        'pool: local is not served by this driver, which provisions NFS pools only: a StorageClass for node-local pools names the local driver as its provisioner (its provisioner runs on each node)',
      );
    }
    return this.cfg.pool;
  }

  private nfsPools(): NfsPools {
    if (!this.cfg.nfs) {
      throw invalid(
        "pool: nfs is not served by this driver, which provisions this node's local pool only: NFS classes name the NFS driver",
      );
    }
    return this.cfg.nfs;
  }

  /** The pools this controller serves, keyed for ListVolumes (the local pool first). */
  private servedPools(): Array<[string, Pool]> {
    return [...(this.cfg.pool ? [[LOCAL_POOL_KEY, this.cfg.pool] as [string, Pool]] : []), ...(this.cfg.nfs?.all() ?? [])];
  }

  /**
   * Every pool this controller serves and what it holds (metrics, berth-ctl
   * status); a pool that cannot be read, or not within `timeoutMs` (a hung
   * disk or server), says why.
   */
  async poolReports(timeoutMs: number): Promise<PoolReport[]> {
    return Promise.all(
      this.servedPools().map(async ([key, pool]): Promise<PoolReport> => {
        const local = key === LOCAL_POOL_KEY;
        const name = local ? `local/${this.cfg.nodeId}` : (pool as NfsPool).where;
        const type = local ? 'local' : 'nfs';
        try {
          return { pool: name, type, usage: await within(timeoutMs, `the pool ${name}`, pool.usage()) };
        } catch (err) {
          return { pool: name, type, error: (err as Error).message };
        }
      }),
    );
  }

  /** Attach exists only where volumes can reach more than one node. */
  private attachDirectory(): NodeDirectory {
    if (!this.cfg.nodes) throw unimplemented('this driver has no attach step: its volumes are pinned to their node by topology');
    return this.cfg.nodes;
  }

  // ------------------------------------------------------------ provisioning

  async CreateVolume(req: CreateVolumeRequest): Promise<CreateVolumeResponse> {
    const name = requireName(req.name);
    const params = parseParameters(req.parameters ?? {});
    requireCapabilities(params.kind, req.volume_capabilities);
    const mutable = parseMutableParameters(req.mutable_parameters ?? {});
    if (mutable.provisioning && (params.pool === 'nfs' || params.kind === 'share') && mutable.provisioning !== params.provisioning)
      throw invalid('mutable parameter "provisioning" applies to local block volumes only');
    const range = parseRange(req.capacity_range);
    const fsType = params.kind === 'block' ? blockFsType(req.volume_capabilities) : '';
    if (params.pool === 'local') {
      this.localPool();
      this.requireTopology(req.accessibility_requirements?.requisite ?? []);
    } else this.nfsPools();
    const source = req.volume_content_source?.type
      ? await this.contentSource(req.volume_content_source, params, fsType).catch(async (err: unknown) => {
          // A retry of a copy that was made: its source may be gone since; the volume is what was asked for.
          const made = err instanceof CsiError && err.code === Code.NOT_FOUND ? await this.madeFrom(req, params, name) : undefined;
          if (made) return made;
          throw err;
        })
      : undefined;
    if (source && 'existing' in source) {
      const mismatch = this.incompatibility(source.existing, name, identityParameters(req.parameters ?? {}), range, fsType, params.kind);
      if (mismatch) throw alreadyExists(`volume "${name}" exists with ${mismatch}`);
      return { volume: this.toVolume(source.existing) };
    }
    // A copy is at least as large as what it copies; with no size asked, it is that size.
    const sized = source && !range.required && !range.limit ? { required: source.sizeBytes, limit: 0 } : range;
    const capacityBytes = this.sizeFor(params.kind, fsType, sized);
    if (source && capacityBytes < source.sizeBytes)
      throw outOfRange(`the volume would be ${capacityBytes} bytes, smaller than its source's ${source.sizeBytes}`);

    const dirName = volumeDirName(name);
    const identity = identityParameters(req.parameters ?? {});
    const { pool, ref, context, subDir } = this.placement(params, name, dirName);
    const volumeContext = encodeVolumeContext({ ...context, ...(fsType ? { fsType } : {}) });
    const record: VolumeRecord = {
      version: 1,
      name,
      volumeId: formatVolumeId(ref),
      kind: params.kind,
      capacityBytes,
      fsType,
      parameters: identity,
      volumeContext,
      onDelete: params.onDelete,
      subDir,
      createdAt: new Date().toISOString(),
      attachments: {},
      ...(source ? { contentSource: source.recorded } : {}),
      ...(Object.keys(req.mutable_parameters ?? {}).length ? { mutableParameters: { ...req.mutable_parameters } } : {}),
    };
    if (mutable.onDelete) record.onDelete = mutable.onDelete;
    // Creating is attempted first: the common case (a new name) then costs
    // no lookup, and an existing volume is found by the failed create.
    const doesNotFit = await pool.doesNotFit(record);
    if (!doesNotFit && (await pool.create(dirName, record, params.mountPermissions, source?.content))) {
      this.keepNfs(pool);
      return { volume: this.toVolume(record) };
    }
    const existing = await pool.read(dirName);
    if (existing) {
      this.keepNfs(pool);
      const mismatch =
        this.incompatibility(existing, name, identity, range, fsType, params.kind) ??
        (JSON.stringify(existing.contentSource ?? null) !== JSON.stringify(source?.recorded ?? null)
          ? 'another content source'
          : undefined);
      if (mismatch) throw alreadyExists(`volume "${name}" exists with ${mismatch}`);
      return { volume: this.toVolume(existing) };
    }
    throw exhausted(doesNotFit ?? `the ${params.pool} pool has no room for ${capacityBytes} bytes`);
  }

  /** Which pool a new volume goes to, its id, and what the node will need. */
  private placement(params: VolumeParameters, name: string, dirName: string) {
    if (params.pool === 'local') {
      const ref: VolumeRef = { pool: 'local', node: encodeNode(this.cfg.nodeId), kind: params.kind, dirName };
      const context: VolumeContext = { pool: 'local', kind: params.kind, node: this.cfg.nodeId };
      return { pool: this.localPool() as Pool, ref, context, subDir: undefined };
    }
    const { nfs } = params;
    const subDir = expandSubDir(nfs.subDir, params, name);
    const ref: VolumeRef = {
      pool: 'nfs',
      server: nfs.server,
      share: nfs.share,
      nfsPort: nfs.nfsPort,
      mountPort: nfs.mountPort,
      ...(nfs.uid !== undefined ? { uid: nfs.uid, gid: nfs.gid } : {}),
      kind: params.kind,
      dirName,
    };
    const context: VolumeContext = {
      pool: 'nfs',
      kind: params.kind,
      server: nfs.server,
      share: nfs.share,
      subDir,
      mountOptions: nfs.mountOptions,
      ...(nfs.mountedAt ? { mountedAt: nfs.mountedAt } : {}),
    };
    if (Buffer.byteLength(formatVolumeId(ref)) > 128)
      throw invalid('server, share and name together make a volume id longer than 128 bytes');
    return { pool: this.nfsPools().get(nfs) as Pool, ref, context, subDir };
  }

  /**
   * What a new volume is copied from: a snapshot or a volume in the pool the
   * volume goes to, of its kind (and filesystem). A local snapshot held by
   * another node's pool is RESOURCE_EXHAUSTED, the code on which the
   * external-provisioner has the volume placed again.
   */
  private async contentSource(
    src: NonNullable<CreateVolumeRequest['volume_content_source']>,
    params: VolumeParameters,
    fsType: string,
  ): Promise<{ content: ContentSource; recorded: NonNullable<VolumeRecord['contentSource']>; sizeBytes: number }> {
    const isSnapshot = src.type === 'snapshot';
    const id = isSnapshot ? requireString('snapshot_id', src.snapshot?.snapshot_id) : requireString('volume_id', src.volume?.volume_id);
    const what = isSnapshot ? `snapshot ${id}` : `source volume ${id}`;
    const ref = isSnapshot ? parseSnapshotId(id) : parseVolumeId(id);
    if (!ref) throw notFound(`${what} does not exist`);
    const pool = this.poolOf(ref);
    if (!pool) {
      if (ref.pool === 'local' && this.cfg.pool)
        throw exhausted(`${what} is held by node ${ref.node}: a volume copied from it can only be made there`);
      throw notFound(`${what} is not in a pool this driver serves`);
    }
    const samePool = ref.pool === 'local' ? params.pool === 'local' : params.pool === 'nfs' && nfsPoolKey(params.nfs) === nfsPoolKey(ref);
    let content: ContentSource;
    if (isSnapshot) {
      const rec = await pool.readSnapshot(ref.dirName);
      if (!rec || rec.snapshotId !== id) throw notFound(`${what} does not exist`);
      if (!rec.readyToUse) throw aborted(`${what} is still being copied; it can be restored once ready_to_use`);
      content = { snapshot: ref.dirName, record: rec };
    } else {
      const found = await this.lookup(id);
      if (!found) throw notFound(`${what} does not exist`);
      content = { volume: ref.dirName, record: found.rec };
    }
    const { kind, fsType: sourceFs } = content.record;
    const sizeBytes = 'snapshot' in content ? content.record.sizeBytes : content.record.capacityBytes;
    if (!samePool) throw invalid(`${what} is in another pool than this StorageClass names: copies are made within a pool`);
    if (kind !== params.kind) throw invalid(`${what} is of kind ${kind}; this StorageClass makes ${params.kind} volumes`);
    if (sourceFs && fsType && sourceFs !== fsType) throw invalid(`${what} holds ${sourceFs}; asked for ${fsType}`);
    return { content, recorded: isSnapshot ? { snapshotId: id } : { volumeId: id }, sizeBytes };
  }

  /** The volume of this name, when it exists and was copied from the very source the request names. */
  private async madeFrom(
    req: CreateVolumeRequest,
    params: VolumeParameters,
    name: string,
  ): Promise<{ existing: VolumeRecord } | undefined> {
    const src = req.volume_content_source;
    const asked = src?.type === 'snapshot' ? { snapshotId: src.snapshot?.snapshot_id } : { volumeId: src?.volume?.volume_id };
    const existing = await this.placement(params, name, volumeDirName(name)).pool.read(volumeDirName(name));
    if (!existing || existing.name !== name || JSON.stringify(existing.contentSource) !== JSON.stringify(asked)) return undefined;
    return { existing };
  }

  /** The pool an id names, when this controller serves it: a local id only on its own node. */
  poolOf(ref: VolumeRef): Pool | undefined {
    if (ref.pool === 'nfs') return this.cfg.nfs?.get(ref);
    return ref.node === encodeNode(this.cfg.nodeId) ? this.cfg.pool : undefined;
  }

  private sizeFor(kind: 'share' | 'block', fsType: string, range: { required: number; limit: number }): number {
    if (kind === 'share') return range.required || range.limit; // recorded, not enforced: a directory has no size
    const size = roundUp(range.required || range.limit || DEFAULT_BLOCK_BYTES, SECTOR);
    if (range.limit && size > range.limit) {
      throw outOfRange(`block images are whole ${SECTOR}-byte sectors: ${size} bytes exceeds limit_bytes ${range.limit}`);
    }
    const min = MIN_BLOCK_BYTES[(fsType || 'raw') as keyof typeof MIN_BLOCK_BYTES];
    if (size < min) throw outOfRange(`a ${fsType || 'raw'} block volume needs at least ${min} bytes, ${size} asked`);
    return size;
  }

  private requireTopology(requisite: Topology[]): void {
    if (requisite.length === 0) return;
    const here = requisite.some((t) => t.segments?.[TOPOLOGY_KEY] === this.cfg.nodeId);
    if (!here) {
      throw exhausted(`this local pool is on node ${this.cfg.nodeId}, which no requisite topology includes`);
    }
  }

  private incompatibility(
    rec: VolumeRecord,
    name: string,
    identity: Record<string, string>,
    range: { required: number; limit: number },
    fsType: string,
    kind: string,
  ): string | undefined {
    if (rec.name !== name) return `a different name (${rec.name}) hashed to the same directory`;
    if (rec.kind !== kind) return `kind ${rec.kind}`;
    const differ = differingKeys(rec.parameters, identity);
    if (differ.length > 0) return `other parameters (${differ.join(', ')} differ)`;
    if (range.required && rec.capacityBytes < range.required) return `capacity ${rec.capacityBytes} < required ${range.required}`;
    if (range.limit && rec.capacityBytes > range.limit) return `capacity ${rec.capacityBytes} > limit ${range.limit}`;
    if (rec.kind === 'block' && fsType && rec.fsType && rec.fsType !== fsType) return `filesystem ${rec.fsType}`;
    return undefined;
  }

  private toVolume(rec: VolumeRecord): Volume {
    const from = rec.contentSource;
    return {
      volume_id: rec.volumeId,
      capacity_bytes: rec.capacityBytes,
      volume_context: rec.volumeContext,
      content_source: from
        ? 'snapshotId' in from
          ? { snapshot: { snapshot_id: from.snapshotId } }
          : { volume: { volume_id: from.volumeId } }
        : null,
      // NFS volumes are reachable from every node: no constraint.
      accessible_topology: rec.volumeContext.pool === 'nfs' ? [] : [this.nodeTopology],
    };
  }

  /** The record an id names in a pool this controller serves; undefined when there is none. */
  async lookup(volumeId: string): Promise<{ ref: VolumeRef; rec: VolumeRecord; pool: Pool } | undefined> {
    const ref = parseVolumeId(volumeId);
    if (!ref) return undefined;
    const pool = this.poolOf(ref);
    if (!pool) return undefined;
    const rec = await pool.read(ref.dirName);
    if (!rec || rec.volumeId !== volumeId) return undefined;
    this.keepNfs(pool);
    return { ref, rec, pool };
  }

  /** An NFS pool is kept (listed, its connection reused) once it holds a volume we made or found. */
  private keepNfs(pool: Pool): void {
    if (pool instanceof NfsPool) this.cfg.nfs?.keep(pool);
  }

  /** Why a volume this controller does not serve is not found here. */
  notHeld(ref: VolumeRef, id: string): string {
    return ref.pool === 'local'
      ? `volume ${id} lives in the local pool of node ${ref.node}; this controller serves ${this.cfg.pool ? `node ${this.cfg.nodeId}` : 'NFS pools'}`
      : `volume ${id} is on an NFS pool, which this driver does not serve`;
  }

  private async mustFind(volumeId: string | undefined) {
    const id = requireString('volume_id', volumeId);
    const found = await this.lookup(id);
    if (!found) throw notFound(`volume ${id} does not exist`);
    return found;
  }

  async DeleteVolume(req: DeleteVolumeRequest): Promise<Record<string, never>> {
    const id = requireString('volume_id', req.volume_id);
    const found = await this.lookup(id);
    if (!found) {
      const ref = parseVolumeId(id);
      // Not ours to forget: answering OK would orphan data another process holds.
      if (ref && !this.poolOf(ref)) throw failedPrecondition(this.notHeld(ref, id));
      return {};
    }
    const nodes = Object.keys(found.rec.attachments);
    if (nodes.length > 0) throw failedPrecondition(`volume ${id} is still published to ${nodes.join(', ')}`);
    if (found.ref.pool === 'local' && found.rec.kind === 'block') {
      // A loop device still on the image: staged on this node. Deleting would leave it on a deleted file.
      const loops = await this.localPool().attachedLoops(found.ref.dirName);
      if (loops.length > 0)
        throw failedPrecondition(`volume ${id} is still staged on this node (${loops.join(', ')} attached to its image)`);
    }
    await found.pool.remove(found.ref.dirName, found.rec, found.rec.onDelete);
    return {};
  }

  // ------------------------------------------------------------------ attach

  async ControllerPublishVolume(req: ControllerPublishVolumeRequest): Promise<{ publish_context: Record<string, string> }> {
    const id = requireString('volume_id', req.volume_id);
    const nodeId = requireString('node_id', req.node_id, 256);
    if (!req.volume_capability) throw invalid('volume_capability is required');
    const nodes = this.attachDirectory();
    const found = await this.lookup(id);
    if (!found) {
      if (this.isStaticNfsVolume(id, req.volume_context)) return { publish_context: encodePublishContext({ kind: 'share' }) };
      const ref = parseVolumeId(id);
      throw notFound(ref && !this.poolOf(ref) ? this.notHeld(ref, id) : `volume ${id} does not exist`);
    }
    const { ref, rec, pool } = found;
    // A local pool has one node; an NFS export is reachable from any node that exists.
    if (ref.pool === 'local' && nodeId !== this.cfg.nodeId)
      throw notFound(`node ${nodeId} is unknown: this local pool is on node ${this.cfg.nodeId}`);
    if (!(await nodes.exists(nodeId))) throw notFound(`node ${nodeId} does not exist (no CSINode lists this driver with that node id)`);
    const problem = capabilityProblem(rec.kind, req.volume_capability);
    if (problem) throw invalid(problem);
    const accessMode = req.volume_capability.access_mode?.mode as string; // capabilityProblem made sure there is one
    const wanted = { accessMode, readonly: Boolean(req.readonly) };
    // The node stages a volume published read-only read-only, whatever the pod asks.
    const publishContext = encodePublishContext({ kind: rec.kind, readonly: wanted.readonly });

    const mine = rec.attachments[nodeId];
    if (mine) {
      if (mine.accessMode === wanted.accessMode && mine.readonly === wanted.readonly) return { publish_context: publishContext };
      throw alreadyExists(`volume ${id} is already published to ${nodeId} as ${mine.accessMode}${mine.readonly ? ' read-only' : ''}`);
    }
    const others = Object.entries(rec.attachments).filter(([n]) => n !== nodeId);
    const exclusive = SINGLE_NODE_MODES.has(accessMode) || others.some(([, a]) => SINGLE_NODE_MODES.has(a.accessMode));
    if (others.length > 0 && exclusive) {
      throw failedPrecondition(`volume ${id} is published to ${others.map(([n]) => n).join(', ')} with a single-node access mode`);
    }
    const limit = await nodes.maxVolumes(nodeId);
    if (limit > 0 && (await this.attachedTo(nodeId)) >= limit) {
      throw exhausted(`node ${nodeId} already has ${limit} volumes published, its max_volumes_per_node`);
    }
    rec.attachments[nodeId] = wanted;
    await pool.writeRecord(ref.dirName, rec);
    return { publish_context: publishContext };
  }

  /** How many volumes are published to a node, from the records (only when the node has a limit). */
  private async attachedTo(nodeId: string): Promise<number> {
    let count = 0;
    for (const [, pool] of this.servedPools()) {
      for (const key of await pool.list()) if ((await pool.read(key))?.attachments[nodeId]) count++;
    }
    return count;
  }

  /**
   * A pre-existing NFS share (a PV written by `berth-flex migrate`, or by
   * hand) has no record on the export: its PV's volumeAttributes say where
   * it is. It may be published to any node; nothing needs recording, since a
   * share is multi-node. Its id and attributes must agree.
   */
  private isStaticNfsVolume(id: string, ctx: Record<string, string> | undefined): boolean {
    const ref = parseVolumeId(id);
    const at = staticNfsShareOf(ctx);
    return ref?.pool === 'nfs' && ref.kind === 'share' && at?.server === ref.server && at.share === ref.share;
  }

  async ControllerUnpublishVolume(req: ControllerUnpublishVolumeRequest): Promise<Record<string, never>> {
    const id = requireString('volume_id', req.volume_id);
    this.attachDirectory();
    const found = await this.lookup(id);
    if (!found) return {}; // a volume that is gone is detached everywhere
    const { ref, rec, pool } = found;
    const nodes = req.node_id ? [req.node_id] : Object.keys(rec.attachments);
    if (!nodes.some((n) => n in rec.attachments)) return {};
    for (const n of nodes) delete rec.attachments[n];
    await pool.writeRecord(ref.dirName, rec);
    return {};
  }

  // ------------------------------------------------------------- inspection

  async ValidateVolumeCapabilities(req: ValidateVolumeCapabilitiesRequest): Promise<ValidateVolumeCapabilitiesResponse> {
    const { rec } = await this.mustFind(req.volume_id);
    if (req.volume_capabilities.length === 0) throw invalid('volume_capabilities is required');
    for (const cap of req.volume_capabilities) {
      const problem = capabilityProblem(rec.kind, cap);
      if (problem) return { message: problem };
    }
    const params = identityParameters(req.parameters ?? {});
    if (Object.keys(params).length > 0 && differingKeys(rec.parameters, params).length > 0) {
      return { message: `the volume was created with other parameters (${differingKeys(rec.parameters, params).join(', ')} differ)` };
    }
    for (const [k, v] of Object.entries(req.volume_context ?? {})) {
      if (rec.volumeContext[k] !== v) return { message: `volume_context "${k}" does not match the volume's` };
    }
    return {
      confirmed: {
        volume_context: req.volume_context,
        volume_capabilities: req.volume_capabilities,
        parameters: req.parameters,
      },
    };
  }

  async ListVolumes(req: ListVolumesRequest): Promise<ListVolumesResponse> {
    // The local pool first, then the NFS pools that hold volumes this controller made or found, in key
    // order. A server that cannot be reached makes the call UNAVAILABLE, naming it: a partial list
    // would read as "those volumes are gone".
    return listPage(
      this.servedPools(),
      req,
      listToken,
      (pool) => pool.list(),
      async (pool, key) => {
        const rec = await pool.read(key);
        return rec && { volume: this.toVolume(rec), status: { published_node_ids: Object.keys(rec.attachments) } };
      },
    );
  }

  async ControllerGetVolume(req: ControllerGetVolumeRequest): Promise<ControllerGetVolumeResponse> {
    const { ref, rec, pool } = await this.mustFind(req.volume_id);
    const problem = await pool.problem(ref.dirName, rec);
    return {
      volume: this.toVolume(rec),
      status: {
        published_node_ids: Object.keys(rec.attachments),
        volume_condition: { abnormal: problem !== undefined, message: problem ?? 'volume is healthy' },
      },
    };
  }

  async GetCapacity(req: GetCapacityRequest): Promise<{ available_capacity: number }> {
    // external-provisioner's capacity tracking sends the StorageClass parameters as they are
    // (pkg/capacity/capacity.go), reserved csi.storage.k8s.io/ keys (fstype, secret names) included.
    const given = withoutReservedKeys(req.parameters ?? {});
    // No parameters name no NFS export: no volume could be created from them here.
    if (!given.pool && !this.cfg.pool) return { available_capacity: 0 };
    const params = parseParameters(given);
    if (params.pool === 'nfs') return { available_capacity: await this.nfsPools().get(params.nfs).capacityFor() };
    const pool = this.localPool();
    const node = req.accessible_topology?.segments?.[TOPOLOGY_KEY];
    if (req.accessible_topology && node !== this.cfg.nodeId) return { available_capacity: 0 };
    // What one new volume of this class can really get: thick images take free space; thin ones the
    // room left under the overprovisioning limit.
    return { available_capacity: await pool.capacityFor(params.kind === 'block' ? params.provisioning : 'thick') };
  }

  // --------------------------------------------------------------- expansion

  async ControllerExpandVolume(req: ControllerExpandVolumeRequest): Promise<{ capacity_bytes: number; node_expansion_required: boolean }> {
    if (!this.cfg.nodes) throw unimplemented("this driver's nodes grow its volumes (NodeExpandVolume); it has no controller expansion");
    return this.expandVolume(req);
  }

  /** The first half of NodeExpandVolume on a node's local driver, which has no controller expansion. */
  async growVolume(volumeId: string, bytes: number): Promise<void> {
    const capacity_range = { required_bytes: String(bytes), limit_bytes: '0' };
    await this.expandVolume({ volume_id: volumeId, capacity_range, secrets: {}, volume_capability: null });
  }

  /** Grows a volume's image (or a share's recorded size) and its record. */
  private async expandVolume(req: ControllerExpandVolumeRequest): Promise<{ capacity_bytes: number; node_expansion_required: boolean }> {
    const range = parseRange(req.capacity_range);
    if (!range.required && !range.limit) throw invalid('capacity_range is required');
    const { ref, rec, pool } = await this.mustFind(req.volume_id);
    if (req.volume_capability) {
      const problem = capabilityProblem(rec.kind, req.volume_capability);
      if (problem) throw invalid(problem);
    }
    const target = rec.kind === 'block' ? roundUp(range.required || range.limit, SECTOR) : range.required || range.limit;
    if (range.limit && target > range.limit) throw outOfRange(`${target} bytes exceeds limit_bytes ${range.limit}`);
    if (target <= rec.capacityBytes) {
      return { capacity_bytes: rec.capacityBytes, node_expansion_required: rec.kind === 'block' };
    }
    if (rec.kind === 'block') await pool.growImage(ref.dirName, rec, target); // RESOURCE_EXHAUSTED when there is no room
    rec.capacityBytes = target;
    await pool.writeRecord(ref.dirName, rec);
    return { capacity_bytes: target, node_expansion_required: rec.kind === 'block' };
  }

  // ------------------------------------------------------------ modification

  /** Applies a VolumeAttributesClass's parameters (see parseMutableParameters), durably; the same call again changes nothing. */
  async ControllerModifyVolume(req: ControllerModifyVolumeRequest): Promise<Record<string, never>> {
    const id = requireString('volume_id', req.volume_id);
    const wanted = parseMutableParameters(req.mutable_parameters ?? {});
    const found = await this.lookup(id);
    if (!found) throw notFound(`volume ${id} does not exist`);
    const { ref, rec, pool } = found;
    if (wanted.provisioning) {
      if (!(pool instanceof LocalPool) || rec.kind !== 'block')
        throw invalid('mutable parameter "provisioning" applies to local block volumes only (NFS images are always thin)');
      await pool.changeProvisioning(ref.dirName, rec, wanted.provisioning);
    }
    rec.mutableParameters = { ...rec.mutableParameters, ...req.mutable_parameters };
    if (wanted.onDelete) rec.onDelete = wanted.onDelete;
    await pool.writeRecord(ref.dirName, rec);
    return {};
  }

  // -------------------------------------------------------------- snapshots

  async CreateSnapshot(req: CreateSnapshotRequest): Promise<{ snapshot: Snapshot }> {
    const name = requireName(req.name);
    const sourceId = requireString('source_volume_id', req.source_volume_id);
    const { freeze } = parseSnapshotParameters(req.parameters ?? {});
    const found = await this.lookup(sourceId);
    if (!found) {
      const ref = parseVolumeId(sourceId);
      throw notFound(ref && !this.poolOf(ref) ? this.notHeld(ref, sourceId) : `source volume ${sourceId} does not exist`);
    }
    const { ref, rec, pool } = found;
    const key = volumeDirName(name);
    let snapshotId: string;
    try {
      snapshotId = formatSnapshotId({ ...ref, dirName: key });
    } catch {
      throw invalid('the source volume and the snapshot name together make a snapshot id longer than 128 bytes');
    }
    const record: SnapshotRecord = {
      version: 1,
      name,
      snapshotId,
      sourceVolumeId: sourceId,
      kind: rec.kind,
      sizeBytes: rec.capacityBytes,
      fsType: rec.fsType,
      sourceParameters: rec.parameters,
      createdAt: new Date().toISOString(),
      readyToUse: true,
      method: 'sparse-copy',
    };
    // The pool checks for an existing snapshot of this key itself: a new name costs no extra read.
    const current =
      (await pool.createSnapshot(key, record, { key: ref.dirName, record: rec }, { freeze })) ?? (await pool.readSnapshot(key));
    if (!current) throw aborted(`snapshot ${name} was removed while being created; retry`);
    if (current.name !== name) throw alreadyExists(`a different snapshot name (${current.name}) hashed to the same key`);
    if (current.sourceVolumeId !== sourceId) throw alreadyExists(`snapshot ${name} exists of another volume (${current.sourceVolumeId})`);
    return { snapshot: toSnapshot(await this.settled(pool, key, current)) };
  }

  /** An NFS snapshot still copying: waited for a while (its copy started again after a restart). */
  async settled(pool: Pool, key: string, rec: SnapshotRecord, waitForIt = true): Promise<SnapshotRecord> {
    return pool instanceof NfsPool ? pool.settleSnapshot(key, rec, waitForIt) : rec;
  }

  /** The snapshot an id names in a pool this controller serves; undefined when there is none. */
  async findSnapshot(id: string): Promise<{ ref: VolumeRef; rec: SnapshotRecord; pool: Pool } | undefined> {
    const ref = parseSnapshotId(id);
    const pool = ref ? this.poolOf(ref) : undefined;
    if (!ref || !pool) return undefined;
    const rec = await pool.readSnapshot(ref.dirName);
    return rec && rec.snapshotId === id ? { ref, rec, pool } : undefined;
  }

  async DeleteSnapshot(req: DeleteSnapshotRequest): Promise<Record<string, never>> {
    const id = requireString('snapshot_id', req.snapshot_id);
    const ref = parseSnapshotId(id);
    if (ref && !this.poolOf(ref)) throw failedPrecondition(this.notHeld(ref, id).replace(/^volume/, 'snapshot'));
    const found = await this.findSnapshot(id);
    // The spec's answer for a member of a group snapshot: it goes with its group (DeleteVolumeGroupSnapshot).
    if (found?.rec.groupSnapshotId)
      throw invalid(`snapshot ${id} is part of group snapshot ${found.rec.groupSnapshotId}: delete the group instead`);
    if (found) await found.pool.removeSnapshot(found.ref.dirName, found.rec);
    return {};
  }

  async GetSnapshot(req: GetSnapshotRequest): Promise<{ snapshot: Snapshot }> {
    const id = requireString('snapshot_id', req.snapshot_id);
    const found = await this.findSnapshot(id);
    if (!found) throw notFound(`snapshot ${id} does not exist`);
    return { snapshot: toSnapshot(await this.settled(found.pool, found.ref.dirName, found.rec, false)) };
  }

  async ListSnapshots(req: ListSnapshotsRequest): Promise<ListSnapshotsResponse> {
    if (req.snapshot_id) {
      if (req.max_entries < 0) throw invalid('max_entries must not be negative');
      const found = await this.findSnapshot(req.snapshot_id);
      const matches = found && (!req.source_volume_id || found.rec.sourceVolumeId === req.source_volume_id);
      if (!matches) return { entries: [], next_token: '' };
      return { entries: [{ snapshot: toSnapshot(await this.settled(found.pool, found.ref.dirName, found.rec, false)) }], next_token: '' };
    }
    let pools = this.servedPools();
    if (req.source_volume_id) {
      const ref = parseVolumeId(req.source_volume_id);
      const pool = ref ? this.poolOf(ref) : undefined;
      pools = pools.filter(([, p]) => p === pool);
    }
    return listPage(
      pools,
      req,
      snapshotListToken,
      (pool) => pool.listSnapshots(),
      async (pool, key) => {
        const rec = await pool.readSnapshot(key);
        if (!rec || (req.source_volume_id && rec.sourceVolumeId !== req.source_volume_id)) return undefined;
        return { snapshot: toSnapshot(await this.settled(pool, key, rec, false)) };
      },
    );
  }
}

/** A snapshot as CSI shows it. */
export function toSnapshot(rec: SnapshotRecord): Snapshot {
  const ms = Date.parse(rec.createdAt);
  return {
    snapshot_id: rec.snapshotId,
    source_volume_id: rec.sourceVolumeId,
    size_bytes: rec.sizeBytes,
    creation_time: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 },
    ready_to_use: rec.readyToUse,
    group_snapshot_id: rec.groupSnapshotId ?? '',
  };
}

export const CONTROLLER_CAPABILITIES = [
  'CREATE_DELETE_VOLUME',
  'PUBLISH_UNPUBLISH_VOLUME',
  'PUBLISH_READONLY',
  'CREATE_DELETE_SNAPSHOT',
  'LIST_SNAPSHOTS',
  // GetSnapshot is served but GET_SNAPSHOT (alpha in spec v1.12) not advertised: csi-sanity v5.3.1
  // fails a driver that lists a capability it does not know, and no sidecar calls GetSnapshot yet.
  'CLONE_VOLUME',
  'MODIFY_VOLUME',
  'LIST_VOLUMES',
  'LIST_VOLUMES_PUBLISHED_NODES',
  'GET_CAPACITY',
  'GET_VOLUME',
  'VOLUME_CONDITION',
  'EXPAND_VOLUME',
  'SINGLE_NODE_MULTI_WRITER',
] as const;

/** A node's local driver: no attach (topology pins volumes) and no controller expansion (the node grows them). */
export const LOCAL_DRIVER_CONTROLLER_CAPABILITIES = CONTROLLER_CAPABILITIES.filter(
  (c) => !['PUBLISH_UNPUBLISH_VOLUME', 'PUBLISH_READONLY', 'LIST_VOLUMES_PUBLISHED_NODES', 'EXPAND_VOLUME'].includes(c),
);

/**
 * The parameter keys whose values differ, named without their values:
 * values such as mountOptions may carry credentials, and messages are logged.
 */
function differingKeys(a: Record<string, string>, b: Record<string, string>): string[] {
  return [...new Set([...Object.keys(a), ...Object.keys(b)])].filter((k) => a[k] !== b[k]).sort();
}

/** StorageClass parameters without the keys Kubernetes reserves for itself. */
function withoutReservedKeys(parameters: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(parameters).filter(([k]) => !k.startsWith('csi.storage.k8s.io/')));
}

/**
 * One page of a listing over pools in key order: the keys after the
 * token's position, `entry` of each (undefined: left out, still a position),
 * and a token for the rest when max_entries stops it. Negative max_entries
 * is INVALID_ARGUMENT, a token not of this listing ABORTED.
 */
async function listPage<E>(
  pools: Array<[string, Pool]>,
  req: { max_entries: number; starting_token: string },
  token: ReturnType<typeof pageToken>,
  keysOf: (pool: Pool) => Promise<string[]>,
  entry: (pool: Pool, key: string) => Promise<E | undefined>,
): Promise<{ entries: E[]; next_token: string }> {
  if (req.max_entries < 0) throw invalid('max_entries must not be negative');
  const after = req.starting_token ? token.decode(req.starting_token) : undefined;
  const max = req.max_entries || Number.MAX_SAFE_INTEGER;
  const entries: E[] = [];
  let last: { poolKey: string; dirName: string } | undefined;
  for (const [poolKey, pool] of pools) {
    if (after && poolKey < after.poolKey) continue;
    const keys = await keysOf(pool);
    const start = after && poolKey === after.poolKey ? firstAfter(keys, after.dirName) : 0;
    for (let i = start; i < keys.length; i++) {
      if (entries.length >= max && last) return { entries, next_token: token.encode(last.poolKey, last.dirName) };
      const key = keys[i] as string;
      const e = await entry(pool, key);
      last = { poolKey, dirName: key };
      if (e) entries.push(e);
    }
  }
  return { entries, next_token: '' };
}

/** Index of the first name after `key` in a sorted list. */
function firstAfter(names: string[], key: string): number {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((names[mid] as string) <= key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
