// The CSI Node service, for local pools and NFS pools alike. Each family of
// RPCs is in a file of its own: where a volume's bytes are
// (volume-location.ts), stage and unstage (stage.ts), publish and unpublish
// (publish.ts), stats and conditions (volume-health.ts); this file keeps the
// small RPCs and expansion. State comes from the kernel's mount and loop
// tables at every call, never from memory. What needs privilege (mounts,
// loop devices, mkfs, the tables) goes through the Host seam, so the node's
// decisions are tested on a fake host; plain directories and files
// (staging and publish targets, statfs of a volume) are used directly,
// since they are as real in those tests as on a node.
import path from 'node:path';
import { boundDevice, CommandError, filesystemSmallerThan, loopDevice, topMount } from '../host/index.js';
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
  RpcsOf,
} from '../volume/csi.js';
import { failedPrecondition, invalid, notFound, outOfRange } from '../volume/errors.js';
import { pathLock, volumeIdLock } from '../volume/locks.js';
import { requireString } from '../volume/request-fields.js';
import { TOPOLOGY_KEY } from '../volume/topology.js';
import type { NodeConfig } from './node-config.js';
import { kubeletPath, RAW_DEVICE_FILE } from './node-steps.js';
import { Publisher } from './publish.js';
import { Stager } from './stage.js';
import { StageRecords } from './stage-records.js';
import { type NodeStatus, VolumeHealth } from './volume-health.js';
import { VolumeLocator } from './volume-location.js';

export type { NodeConfig } from './node-config.js';
export { RAW_DEVICE_FILE } from './node-steps.js';
export { ABNORMAL_REASONS, type AbnormalReason, type NodeStatus, type VolumeCondition } from './volume-health.js';

export const NODE_CAPABILITIES = [
  'STAGE_UNSTAGE_VOLUME',
  'GET_VOLUME_STATS',
  'EXPAND_VOLUME',
  'VOLUME_CONDITION',
  'SINGLE_NODE_MULTI_WRITER',
] as const;

const byVolume = (req: { volume_id?: string }) => (req.volume_id ? [volumeIdLock(req.volume_id)] : []);
const byVolumeAndPath =
  (field: 'staging_target_path' | 'target_path') => (req: { volume_id?: string; staging_target_path?: string; target_path?: string }) => [
    ...byVolume(req),
    ...(req[field] ? [pathLock(req[field])] : []),
  ];

export class NodeService implements RpcsOf<NodeDefinition> {
  /** The locks each RPC holds (volume/locks.ts): its volume, and the path it mounts at. */
  static readonly lockKeys = {
    NodeStageVolume: byVolumeAndPath('staging_target_path'),
    NodeUnstageVolume: byVolumeAndPath('staging_target_path'),
    NodePublishVolume: byVolumeAndPath('target_path'),
    NodeUnpublishVolume: byVolumeAndPath('target_path'),
    NodeExpandVolume: byVolume,
  } satisfies LockKeysOf<NodeDefinition>;

  private readonly host: NodeConfig['host'];
  private readonly locator: VolumeLocator;
  private readonly stager: Stager;
  private readonly publisher: Publisher;
  private readonly health: VolumeHealth;

  constructor(private readonly cfg: NodeConfig) {
    this.host = cfg.host;
    const stages = new StageRecords(cfg.stateDir);
    this.locator = new VolumeLocator(cfg);
    this.stager = new Stager(cfg, this.locator, stages);
    this.publisher = new Publisher(cfg, this.locator);
    this.health = new VolumeHealth(cfg, this.locator, stages);
  }

  NodeStageVolume(req: NodeStageVolumeRequest) {
    return this.stager.stage(req);
  }

  NodeUnstageVolume(req: NodeUnstageVolumeRequest) {
    return this.stager.unstage(req);
  }

  NodePublishVolume(req: NodePublishVolumeRequest) {
    return this.publisher.publish(req);
  }

  NodeUnpublishVolume(req: NodeUnpublishVolumeRequest) {
    return this.publisher.unpublish(req);
  }

  /** What this node holds (metrics, berth-ctl status): see volume-health.ts. */
  status(): Promise<NodeStatus> {
    return this.health.status();
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

  async NodeGetVolumeStats(req: NodeGetVolumeStatsRequest): Promise<NodeGetVolumeStatsResponse> {
    const id = requireString('volume_id', req.volume_id);
    if (!req.volume_path) throw invalid('volume_path is required');
    // A path that cannot be a volume's (relative, outside the kubelet directory, through a link) holds
    // no volume: NOT_FOUND, as the spec (and csi-sanity) read it, rather than INVALID_ARGUMENT.
    const volumePath = await kubeletPath(this.cfg, 'volume_path', req.volume_path).catch((err: Error) => {
      throw notFound(`no volume at ${req.volume_path}: ${err.message}`);
    });
    const { usage, condition } = await this.health.volumeHealth(id, volumePath, await this.host.readMounts());
    return { usage, volume_condition: { abnormal: condition.reason !== 'healthy', message: condition.message } };
  }

  async NodeExpandVolume(req: NodeExpandVolumeRequest): Promise<{ capacity_bytes: number }> {
    const id = requireString('volume_id', req.volume_id);
    if (!req.volume_path) throw invalid('volume_path is required');
    const v = await this.locator.locate(id);
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
    if (!loop || (ref.pool === 'local' && loop.backingFile !== this.locator.localPool.imagePath(ref.dirName)))
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
