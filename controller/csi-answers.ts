// Records as CSI shows them: a volume (Volume) and a snapshot (Snapshot).
import type { Snapshot, Volume } from '../volume/csi.js';
import type { SnapshotRecord, VolumeRecord } from '../volume/record.js';
import { TOPOLOGY_KEY } from '../volume/topology.js';
import { parseVolumeId } from '../volume/volume-id.js';

/** A volume as CSI shows it; a local one is reachable from its node only. */
export function toVolume(rec: VolumeRecord, nodeId: string): Volume {
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
    accessible_topology: parseVolumeId(rec.volumeId)?.pool === 'nfs' ? [] : [{ segments: { [TOPOLOGY_KEY]: nodeId } }],
  };
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
