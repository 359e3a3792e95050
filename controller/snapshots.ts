// CreateSnapshot, DeleteSnapshot, GetSnapshot and ListSnapshots. Snapshots
// live in their source volume's pool and are independent of it: a copy (a
// reflink shares blocks copy-on-write, never content), so DeleteVolume of a
// volume with snapshots deletes the volume and keeps them.
import type {
  CreateSnapshotRequest,
  DeleteSnapshotRequest,
  GetSnapshotRequest,
  ListSnapshotsRequest,
  ListSnapshotsResponse,
  Snapshot,
} from '../volume/csi.js';
import { aborted, alreadyExists, failedPrecondition, invalid, notFound } from '../volume/errors.js';
import { parseSnapshotParameters } from '../volume/parameters.js';
import type { SnapshotRecord } from '../volume/record.js';
import { requireName, requireString } from '../volume/request-fields.js';
import { formatSnapshotId, parseSnapshotId, parseVolumeId, volumeDirName } from '../volume/volume-id.js';
import { toSnapshot } from './csi-answers.js';
import { listPage, snapshotListToken } from './list-pages.js';
import type { PoolDirectory } from './pool-directory.js';

export class Snapshots {
  constructor(private readonly pools: PoolDirectory) {}

  async create(req: CreateSnapshotRequest): Promise<{ snapshot: Snapshot }> {
    const name = requireName(req.name);
    const sourceId = requireString('source_volume_id', req.source_volume_id);
    const { freeze } = parseSnapshotParameters(req.parameters ?? {});
    const found = await this.pools.lookup(sourceId);
    if (!found) {
      const ref = parseVolumeId(sourceId);
      throw notFound(ref && !this.pools.poolOf(ref) ? this.pools.notHeld(ref, sourceId) : `source volume ${sourceId} does not exist`);
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
    return { snapshot: toSnapshot(await pool.settleSnapshot(key, current)) };
  }

  async delete(req: DeleteSnapshotRequest): Promise<Record<string, never>> {
    const id = requireString('snapshot_id', req.snapshot_id);
    const ref = parseSnapshotId(id);
    if (ref && !this.pools.poolOf(ref)) throw failedPrecondition(this.pools.notHeld(ref, id, 'snapshot'));
    const found = await this.pools.findSnapshot(id);
    // The spec's answer for a member of a group snapshot: it goes with its group (DeleteVolumeGroupSnapshot).
    if (found?.rec.groupSnapshotId)
      throw invalid(`snapshot ${id} is part of group snapshot ${found.rec.groupSnapshotId}: delete the group instead`);
    if (found) await found.pool.removeSnapshot(found.ref.dirName, found.rec);
    return {};
  }

  async get(req: GetSnapshotRequest): Promise<{ snapshot: Snapshot }> {
    const id = requireString('snapshot_id', req.snapshot_id);
    const found = await this.pools.findSnapshot(id);
    if (!found) throw notFound(`snapshot ${id} does not exist`);
    return { snapshot: toSnapshot(await found.pool.settleSnapshot(found.ref.dirName, found.rec, false)) };
  }

  async list(req: ListSnapshotsRequest): Promise<ListSnapshotsResponse> {
    if (req.snapshot_id) {
      if (req.max_entries < 0) throw invalid('max_entries must not be negative');
      const found = await this.pools.findSnapshot(req.snapshot_id);
      const matches = found && (!req.source_volume_id || found.rec.sourceVolumeId === req.source_volume_id);
      if (!matches) return { entries: [], next_token: '' };
      return { entries: [{ snapshot: toSnapshot(await found.pool.settleSnapshot(found.ref.dirName, found.rec, false)) }], next_token: '' };
    }
    let pools = this.pools.served();
    if (req.source_volume_id) {
      const ref = parseVolumeId(req.source_volume_id);
      const pool = ref ? this.pools.poolOf(ref) : undefined;
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
        return { snapshot: toSnapshot(await pool.settleSnapshot(key, rec, false)) };
      },
    );
  }
}
