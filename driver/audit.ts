// The audit trail: one info line for each call that changed something and
// succeeded, naming what it changed (the volume, snapshot or group id, and
// the pool the id says it is in) and how long it took. Only ids are
// logged: never a request's secrets, parameters, mount flags or context.
import { parseSnapshotId, parseVolumeId, type VolumeRef } from '../volume/volume-id.js';

/** The RPCs that change state (CSI spec: the calls that are not reads). */
const CHANGES = new Set([
  'CreateVolume',
  'DeleteVolume',
  'ControllerPublishVolume',
  'ControllerUnpublishVolume',
  'ControllerExpandVolume',
  'ControllerModifyVolume',
  'CreateSnapshot',
  'DeleteSnapshot',
  'CreateVolumeGroupSnapshot',
  'DeleteVolumeGroupSnapshot',
  'NodeStageVolume',
  'NodeUnstageVolume',
  'NodePublishVolume',
  'NodeUnpublishVolume',
  'NodeExpandVolume',
]);

type Fields = Record<string, unknown>;

const text = (v: unknown) => (typeof v === 'string' && v ? v : undefined);

/** The pool an id names, as metrics and berth-ctl status name pools. */
const poolOf = (ref: VolumeRef | undefined) =>
  ref === undefined ? undefined : ref.pool === 'local' ? `local/${ref.node}` : `${ref.server}:${ref.share}`;

/** What an audit line says of a successful call, or undefined when the call changes nothing. */
export function auditFields(method: string, request: unknown, response: unknown): Fields | undefined {
  if (!CHANGES.has(method)) return undefined;
  const req = (request ?? {}) as Fields;
  const res = (response ?? {}) as { volume?: Fields; snapshot?: Fields; group_snapshot?: Fields };
  const volumeId = text(req.volume_id) ?? text(res.volume?.volume_id) ?? text(req.source_volume_id);
  const snapshotId = text(req.snapshot_id) ?? text(res.snapshot?.snapshot_id);
  const groupId = text(req.group_snapshot_id) ?? text(res.group_snapshot?.group_snapshot_id);
  const nodeId = text(req.node_id);
  const pool = poolOf(volumeId ? parseVolumeId(volumeId) : snapshotId ? parseSnapshotId(snapshotId) : undefined);
  return {
    ...(volumeId ? { volumeId } : {}),
    ...(snapshotId ? { snapshotId } : {}),
    ...(groupId ? { groupSnapshotId: groupId } : {}),
    ...(nodeId ? { nodeId } : {}),
    ...(pool ? { pool } : {}),
  };
}
