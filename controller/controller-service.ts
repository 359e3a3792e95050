// The CSI Controller service. Each family of RPCs is in a file of its own
// (provisioning.ts, publish.ts, snapshots.ts, list-pages.ts) over the pool
// directory (pool-directory.ts); this file keeps the small RPCs: inspection,
// capacity, expansion and modification. Every answer about a volume is read
// from its pool's records, so any replica or restart sees the same truth.

import { capabilityProblem } from '../volume/capabilities.js';
import type {
  ControllerDefinition,
  ControllerExpandVolumeRequest,
  ControllerGetVolumeRequest,
  ControllerGetVolumeResponse,
  ControllerModifyVolumeRequest,
  ControllerPublishVolumeRequest,
  ControllerUnpublishVolumeRequest,
  CreateSnapshotRequest,
  CreateVolumeRequest,
  DeleteSnapshotRequest,
  DeleteVolumeRequest,
  GetCapacityRequest,
  GetSnapshotRequest,
  ListSnapshotsRequest,
  ListVolumesRequest,
  ListVolumesResponse,
  LockKeysOf,
  RpcsOf,
  ValidateVolumeCapabilitiesRequest,
  ValidateVolumeCapabilitiesResponse,
} from '../volume/csi.js';
import { invalid, notFound, outOfRange, unimplemented } from '../volume/errors.js';
import { volumeIdLock, volumeLock } from '../volume/locks.js';
import { differingKeys, identityParameters, parseMutableParameters, parseParameters } from '../volume/parameters.js';
import { parseRange, requireString } from '../volume/request-fields.js';
import { TOPOLOGY_KEY } from '../volume/topology.js';
import { parseSnapshotId, volumeDirName } from '../volume/volume-id.js';
import { toVolume } from './csi-answers.js';
import { listPage, volumeListToken } from './list-pages.js';
import { PoolDirectory } from './pool-directory.js';
import type { PoolReport } from './pool-usage.js';
import { inSectors, Provisioning } from './provisioning.js';
import { Attachments } from './publish.js';
import { attaches, type ControllerRole } from './role.js';
import { Snapshots } from './snapshots.js';

const lockByName = (req: { name?: string }) => (req.name ? volumeLock(volumeDirName(req.name)) : undefined);
const lockById = (req: { volume_id?: string }) => (req.volume_id ? volumeIdLock(req.volume_id) : undefined);
const lockBySnapshotName = (req: { name?: string }) => (req.name ? `snapshot/${volumeDirName(req.name)}` : undefined);
const lockBySnapshotId = (req: { snapshot_id?: string }) => {
  const ref = req.snapshot_id ? parseSnapshotId(req.snapshot_id) : undefined;
  return ref ? `snapshot/${ref.dirName}` : undefined;
};

export class ControllerService implements RpcsOf<ControllerDefinition> {
  readonly pools: PoolDirectory;
  private readonly provisioning: Provisioning;
  private readonly attachments: Attachments;
  private readonly snapshots: Snapshots;

  constructor(role: ControllerRole) {
    this.pools = new PoolDirectory(role);
    this.provisioning = new Provisioning(this.pools);
    this.attachments = new Attachments(this.pools);
    this.snapshots = new Snapshots(this.pools);
  }

  /** The lock each RPC holds (volume/locks.ts: one key per volume, shared with the node). */
  static readonly lockKeys = {
    CreateVolume: lockByName,
    DeleteVolume: lockById,
    ControllerPublishVolume: lockById,
    ControllerUnpublishVolume: lockById,
    ControllerExpandVolume: lockById,
    ControllerModifyVolume: lockById,
    CreateSnapshot: lockBySnapshotName,
    DeleteSnapshot: lockBySnapshotId,
  } satisfies LockKeysOf<ControllerDefinition>;

  async ControllerGetCapabilities() {
    const offered = attaches(this.pools.role) ? CONTROLLER_CAPABILITIES : LOCAL_DRIVER_CONTROLLER_CAPABILITIES;
    return { capabilities: offered.map((type) => ({ rpc: { type } })) };
  }

  /** Every pool this controller serves and what it holds (metrics, berth-ctl status). */
  poolReports(timeoutMs: number): Promise<PoolReport[]> {
    return this.pools.reports(timeoutMs);
  }

  CreateVolume(req: CreateVolumeRequest) {
    return this.provisioning.create(req);
  }

  DeleteVolume(req: DeleteVolumeRequest) {
    return this.provisioning.delete(req);
  }

  ControllerPublishVolume(req: ControllerPublishVolumeRequest) {
    return this.attachments.publish(req);
  }

  ControllerUnpublishVolume(req: ControllerUnpublishVolumeRequest) {
    return this.attachments.unpublish(req);
  }

  CreateSnapshot(req: CreateSnapshotRequest) {
    return this.snapshots.create(req);
  }

  DeleteSnapshot(req: DeleteSnapshotRequest) {
    return this.snapshots.delete(req);
  }

  GetSnapshot(req: GetSnapshotRequest) {
    return this.snapshots.get(req);
  }

  ListSnapshots(req: ListSnapshotsRequest) {
    return this.snapshots.list(req);
  }

  // ------------------------------------------------------------- inspection

  async ValidateVolumeCapabilities(req: ValidateVolumeCapabilitiesRequest): Promise<ValidateVolumeCapabilitiesResponse> {
    const { rec } = await this.pools.mustFind(req.volume_id);
    if (!req.volume_capabilities?.length) throw invalid('volume_capabilities is required');
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
      this.pools.served(),
      req,
      volumeListToken,
      (pool) => pool.list(),
      async (pool, key) => {
        const rec = await pool.read(key);
        if (!rec) return undefined;
        // The condition too: external-health-monitor prefers ListVolumes to a ControllerGetVolume per volume.
        const problem = await pool.problem(key, rec);
        return {
          volume: toVolume(rec, this.pools.nodeId),
          status: {
            published_node_ids: Object.keys(rec.attachments),
            volume_condition: { abnormal: problem !== undefined, message: problem ?? 'volume is healthy' },
          },
        };
      },
    );
  }

  async ControllerGetVolume(req: ControllerGetVolumeRequest): Promise<ControllerGetVolumeResponse> {
    const { ref, rec, pool } = await this.pools.mustFind(req.volume_id);
    const problem = await pool.problem(ref.dirName, rec);
    return {
      volume: toVolume(rec, this.pools.nodeId),
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
    if (!given.pool && this.pools.role.kind === 'nfs-controller') return { available_capacity: 0 };
    const params = parseParameters(given);
    if (params.pool === 'nfs') return { available_capacity: await this.pools.nfsPools().get(params.nfs).capacityFor() };
    const pool = this.pools.localPool();
    const node = req.accessible_topology?.segments?.[TOPOLOGY_KEY];
    if (req.accessible_topology && node !== this.pools.nodeId) return { available_capacity: 0 };
    // What one new volume of this class can really get: thick images take free space; thin ones the
    // room left under the overprovisioning limit.
    return { available_capacity: await pool.capacityFor(params.kind === 'block' ? params.provisioning : 'thick') };
  }

  // --------------------------------------------------------------- expansion

  async ControllerExpandVolume(req: ControllerExpandVolumeRequest): Promise<{ capacity_bytes: number; node_expansion_required: boolean }> {
    if (!attaches(this.pools.role))
      throw unimplemented("this driver's nodes grow its volumes (NodeExpandVolume); it has no controller expansion");
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
    const { ref, rec, pool } = await this.pools.mustFind(req.volume_id);
    if (req.volume_capability) {
      const problem = capabilityProblem(rec.kind, req.volume_capability);
      if (problem) throw invalid(problem);
    }
    const target = rec.kind === 'block' ? inSectors(range.required || range.limit) : range.required || range.limit;
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
    const found = await this.pools.lookup(id);
    if (!found) throw notFound(`volume ${id} does not exist`);
    const { ref, rec, pool } = found;
    if (wanted.provisioning) {
      if (rec.kind !== 'block') throw invalid('mutable parameter "provisioning" applies to local block volumes only');
      await pool.changeProvisioning(ref.dirName, rec, wanted.provisioning);
    }
    rec.mutableParameters = { ...rec.mutableParameters, ...req.mutable_parameters };
    if (wanted.onDelete) rec.onDelete = wanted.onDelete;
    await pool.writeRecord(ref.dirName, rec);
    return {};
  }
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

/** StorageClass parameters without the keys Kubernetes reserves for itself. */
function withoutReservedKeys(parameters: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(parameters).filter(([k]) => !k.startsWith('csi.storage.k8s.io/')));
}
