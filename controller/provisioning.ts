// CreateVolume and DeleteVolume. CreateVolume reads its request once into a
// plan (what is asked, where it goes, what it is copied from), tries to make
// the volume, and when a volume of that name exists already answers from
// one decision: the same request again gets the volume, anything else
// ALREADY_EXISTS.
import { blockFsType, MIN_BLOCK_BYTES, requireCapabilities } from '../volume/capabilities.js';
import type { CreateVolumeRequest, CreateVolumeResponse, DeleteVolumeRequest, Topology } from '../volume/csi.js';
import { aborted, alreadyExists, Code, CsiError, exhausted, failedPrecondition, invalid, notFound, outOfRange } from '../volume/errors.js';
import {
  differingKeys,
  expandSubDir,
  identityParameters,
  type MutableParameters,
  parseMutableParameters,
  parseParameters,
  type VolumeParameters,
} from '../volume/parameters.js';
import type { VolumeRecord } from '../volume/record.js';
import { type ByteRange, parseRange, requireName, requireString } from '../volume/request-fields.js';
import { TOPOLOGY_KEY } from '../volume/topology.js';
import { encodeVolumeContext, type VolumeContext } from '../volume/volume-context.js';
import { encodeNode, formatVolumeId, parseSnapshotId, parseVolumeId, type VolumeRef, volumeDirName } from '../volume/volume-id.js';
import { toVolume } from './csi-answers.js';
import { nfsPoolKey } from './nfs-pools.js';
import type { ContentSource, Pool } from './pool.js';
import type { PoolDirectory } from './pool-directory.js';

export const DEFAULT_BLOCK_BYTES = 1 << 30;
export const SECTOR = 512;

/** A block image's size: whole sectors. */
export const inSectors = (bytes: number) => Math.ceil(bytes / SECTOR) * SECTOR;

/** What a CreateVolume asks, read and checked once. */
interface CreatePlan {
  name: string;
  /** The volume's key in its pool. */
  dirName: string;
  params: VolumeParameters;
  /** The parameters that define the volume (compared when the name is asked again). */
  identity: Record<string, string>;
  range: ByteRange;
  fsType: string;
  mutable: MutableParameters;
  pool: Pool;
  ref: VolumeRef;
  context: VolumeContext;
  subDir?: string;
  /** The content source asked for, as a record names it. */
  asked?: NonNullable<VolumeRecord['contentSource']>;
}

/** A content source found in the volume's pool. */
interface FoundSource {
  content: ContentSource;
  sizeBytes: number;
}

export class Provisioning {
  constructor(private readonly pools: PoolDirectory) {}

  async create(req: CreateVolumeRequest): Promise<CreateVolumeResponse> {
    const plan = this.plan(req);
    let source: FoundSource | undefined;
    try {
      source = plan.asked && (await this.findSource(req, plan));
    } catch (err) {
      // A retry of a copy that was made: its source may be gone since. The volume answers it.
      const existing = err instanceof CsiError && err.code === Code.NOT_FOUND ? await plan.pool.read(plan.dirName) : undefined;
      if (!existing || existing.name !== plan.name || !sameSource(existing, plan)) throw err;
      return this.answerExisting(plan, existing);
    }
    const record = this.recordFor(req, plan, source);
    // Creating is attempted first: the common case (a new name) then costs
    // no lookup, and an existing volume is found by the failed create.
    const doesNotFit = await plan.pool.doesNotFit(record);
    if (!doesNotFit && (await plan.pool.create(plan.dirName, record, plan.params.mountPermissions, source?.content))) {
      this.pools.holdsVolumes(plan.pool);
      return { volume: toVolume(record, this.pools.nodeId) };
    }
    const existing = await plan.pool.read(plan.dirName);
    if (existing) return this.answerExisting(plan, existing);
    throw exhausted(doesNotFit ?? `the ${plan.params.pool} pool has no room for ${record.capacityBytes} bytes`);
  }

  /** The one idempotency decision: a volume of this name answers the same request again, and nothing else. */
  private answerExisting(plan: CreatePlan, existing: VolumeRecord): CreateVolumeResponse {
    this.pools.holdsVolumes(plan.pool);
    const mismatch = incompatibility(existing, plan) ?? (sameSource(existing, plan) ? undefined : 'another content source');
    if (mismatch) throw alreadyExists(`volume "${plan.name}" exists with ${mismatch}`);
    return { volume: toVolume(existing, this.pools.nodeId) };
  }

  /** Reads and checks the request (no I/O): INVALID_ARGUMENT, OUT_OF_RANGE or RESOURCE_EXHAUSTED (topology) on what is wrong. */
  private plan(req: CreateVolumeRequest): CreatePlan {
    const name = requireName(req.name);
    const params = parseParameters(req.parameters ?? {});
    requireCapabilities(params.kind, req.volume_capabilities);
    const mutable = parseMutableParameters(req.mutable_parameters ?? {});
    if (mutable.provisioning && (params.pool === 'nfs' || params.kind === 'share') && mutable.provisioning !== params.provisioning)
      throw invalid('mutable parameter "provisioning" applies to local block volumes only');
    const range = parseRange(req.capacity_range);
    const fsType = params.kind === 'block' ? blockFsType(req.volume_capabilities) : '';
    if (params.pool === 'local') {
      this.pools.localPool(); // INVALID_ARGUMENT where this controller has none, before topology is weighed
      this.requireTopology(req.accessibility_requirements?.requisite ?? []);
    }
    const src = req.volume_content_source;
    const asked = !src?.type
      ? undefined
      : src.type === 'snapshot'
        ? { snapshotId: requireString('snapshot_id', src.snapshot?.snapshot_id) }
        : { volumeId: requireString('volume_id', src.volume?.volume_id) };
    const dirName = volumeDirName(name);
    const identity = identityParameters(req.parameters ?? {});
    return { name, dirName, params, identity, range, fsType, mutable, asked, ...this.placement(params, name, dirName) };
  }

  /** Which pool a new volume goes to, its id, and what the node will need. */
  private placement(params: VolumeParameters, name: string, dirName: string) {
    if (params.pool === 'local') {
      const ref: VolumeRef = { pool: 'local', node: encodeNode(this.pools.nodeId), kind: params.kind, dirName };
      const context: VolumeContext = { pool: 'local', kind: params.kind, node: this.pools.nodeId };
      return { pool: this.pools.localPool() as Pool, ref, context, subDir: undefined };
    }
    const nfsPools = this.pools.nfsPools();
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
    return { pool: nfsPools.get(nfs) as Pool, ref, context, subDir };
  }

  private requireTopology(requisite: Topology[]): void {
    if (requisite.length === 0) return;
    const { nodeId } = this.pools;
    if (!requisite.some((t) => t.segments?.[TOPOLOGY_KEY] === nodeId)) {
      throw exhausted(`this local pool is on node ${nodeId}, which no requisite topology includes`);
    }
  }

  /**
   * What a new volume is copied from: a snapshot or a volume in the pool the
   * volume goes to, of its kind (and filesystem). A local snapshot held by
   * another node's pool is RESOURCE_EXHAUSTED, the code on which the
   * external-provisioner has the volume placed again.
   */
  private async findSource(req: CreateVolumeRequest, plan: CreatePlan): Promise<FoundSource> {
    const isSnapshot = req.volume_content_source?.type === 'snapshot';
    const asked = plan.asked as NonNullable<CreatePlan['asked']>;
    const id = 'snapshotId' in asked ? asked.snapshotId : asked.volumeId;
    const what = isSnapshot ? `snapshot ${id}` : `source volume ${id}`;
    const ref = isSnapshot ? parseSnapshotId(id) : parseVolumeId(id);
    if (!ref) throw notFound(`${what} does not exist`);
    const pool = this.pools.poolOf(ref);
    if (!pool) {
      if (ref.pool === 'local' && this.pools.role.kind !== 'nfs-controller')
        throw exhausted(`${what} is held by node ${ref.node}: a volume copied from it can only be made there`);
      throw notFound(`${what} is not in a pool this driver serves`);
    }
    const { params } = plan;
    const samePool = ref.pool === 'local' ? params.pool === 'local' : params.pool === 'nfs' && nfsPoolKey(params.nfs) === nfsPoolKey(ref);
    let content: ContentSource;
    if (isSnapshot) {
      const rec = await pool.readSnapshot(ref.dirName);
      if (!rec || rec.snapshotId !== id) throw notFound(`${what} does not exist`);
      if (!rec.readyToUse) throw aborted(`${what} is still being copied; it can be restored once ready_to_use`);
      content = { snapshot: ref.dirName, record: rec };
    } else {
      const found = await this.pools.lookup(id);
      if (!found) throw notFound(`${what} does not exist`);
      content = { volume: ref.dirName, record: found.rec };
    }
    const { kind, fsType: sourceFs } = content.record;
    const sizeBytes = 'snapshot' in content ? content.record.sizeBytes : content.record.capacityBytes;
    if (!samePool) throw invalid(`${what} is in another pool than this StorageClass names: copies are made within a pool`);
    if (kind !== params.kind) throw invalid(`${what} is of kind ${kind}; this StorageClass makes ${params.kind} volumes`);
    if (sourceFs && plan.fsType && sourceFs !== plan.fsType) throw invalid(`${what} holds ${sourceFs}; asked for ${plan.fsType}`);
    return { content, sizeBytes };
  }

  /** The record of the volume to make: its size from the range (a copy: at least its source's). */
  private recordFor(req: CreateVolumeRequest, plan: CreatePlan, source: FoundSource | undefined): VolumeRecord {
    const { range, params, fsType } = plan;
    // A copy is at least as large as what it copies; with no size asked, it is that size.
    const sized = source && !range.required && !range.limit ? { required: source.sizeBytes, limit: 0 } : range;
    const capacityBytes = sizeFor(params.kind, fsType, sized);
    if (source && capacityBytes < source.sizeBytes)
      throw outOfRange(`the volume would be ${capacityBytes} bytes, smaller than its source's ${source.sizeBytes}`);
    const volumeContext = encodeVolumeContext({ ...plan.context, ...(fsType ? { fsType } : {}) });
    // The CSI spec's size limit for a map<string, string>: 4 KiB in all (kubelets and sidecars may refuse more).
    const contextBytes = Object.entries(volumeContext).reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
    if (contextBytes > 4096)
      throw invalid(
        `the volume's context would be ${contextBytes} bytes, over the CSI limit of 4 KiB: shorten the class's mountOptions or subDir`,
      );
    return {
      version: 1,
      name: plan.name,
      volumeId: formatVolumeId(plan.ref),
      kind: params.kind,
      capacityBytes,
      fsType,
      parameters: plan.identity,
      volumeContext,
      onDelete: plan.mutable.onDelete ?? params.onDelete,
      subDir: plan.subDir,
      createdAt: new Date().toISOString(),
      attachments: {},
      ...(plan.asked ? { contentSource: plan.asked } : {}),
      ...(Object.keys(req.mutable_parameters ?? {}).length ? { mutableParameters: { ...req.mutable_parameters } } : {}),
    };
  }

  async delete(req: DeleteVolumeRequest): Promise<Record<string, never>> {
    const id = requireString('volume_id', req.volume_id);
    const found = await this.pools.lookup(id);
    if (!found) {
      const ref = parseVolumeId(id);
      // Not ours to forget: answering OK would orphan data another process holds.
      if (ref && !this.pools.poolOf(ref)) throw failedPrecondition(this.pools.notHeld(ref, id));
      return {};
    }
    const nodes = Object.keys(found.rec.attachments);
    if (nodes.length > 0) throw failedPrecondition(`volume ${id} is still published to ${nodes.join(', ')}`);
    // The local driver records no attachments (it has no attach step): the node's own state says what is in use.
    const inUse = await found.pool.inUseHere(found.ref.dirName, found.rec);
    if (inUse) throw failedPrecondition(`volume ${id} is still staged on this node (${inUse})`);
    await found.pool.remove(found.ref.dirName, found.rec, found.rec.onDelete);
    return {};
  }
}

/** Why an existing volume is not what the plan asks, or undefined when it is. */
function incompatibility(rec: VolumeRecord, plan: CreatePlan): string | undefined {
  const { range, fsType } = plan;
  if (rec.name !== plan.name) return `a different name (${rec.name}) hashed to the same directory`;
  if (rec.kind !== plan.params.kind) return `kind ${rec.kind}`;
  const differ = differingKeys(rec.parameters, plan.identity);
  if (differ.length > 0) return `other parameters (${differ.join(', ')} differ)`;
  if (range.required && rec.capacityBytes < range.required) return `capacity ${rec.capacityBytes} < required ${range.required}`;
  if (range.limit && rec.capacityBytes > range.limit) return `capacity ${rec.capacityBytes} > limit ${range.limit}`;
  if (rec.kind === 'block' && fsType && rec.fsType && rec.fsType !== fsType) return `filesystem ${rec.fsType}`;
  return undefined;
}

const sameSource = (rec: VolumeRecord, plan: CreatePlan) =>
  JSON.stringify(rec.contentSource ?? null) === JSON.stringify(plan.asked ?? null);

/** A volume's size for a range: a share's is recorded as asked; a block image is whole sectors, at least its filesystem's minimum. */
export function sizeFor(kind: 'share' | 'block', fsType: string, range: { required: number; limit: number }): number {
  if (kind === 'share') return range.required || range.limit; // recorded, not enforced: a directory has no size
  const size = inSectors(range.required || range.limit || DEFAULT_BLOCK_BYTES);
  if (range.limit && size > range.limit) {
    throw outOfRange(`block images are whole ${SECTOR}-byte sectors: ${size} bytes exceeds limit_bytes ${range.limit}`);
  }
  const min = MIN_BLOCK_BYTES[(fsType || 'raw') as keyof typeof MIN_BLOCK_BYTES];
  if (size < min) throw outOfRange(`a ${fsType || 'raw'} block volume needs at least ${min} bytes, ${size} asked`);
  return size;
}
