// The CSI GroupController service: snapshots of several volumes of one pool
// taken together. On a local pool the filesystems of every staged block
// volume in the group are frozen first, then every member is reflinked,
// then all are thawed: the members are one instant, as after a power cut.
// Share volumes and NFS pools cannot be frozen (a share is a directory of
// the pool's filesystem; NFS has no freeze): their members are copied one
// after another, consistent only for an application that is quiesced.
//
// A group has no record of its own: each member's snapshot record names
// the group and how many members it has. A group found with fewer members
// than that is a create a crash interrupted; its retry removes those
// members and takes them all again, under one freeze.

import type { GroupControllerDefinition, LockKeysOf } from '../volume/csi.js';
import { aborted, alreadyExists, invalid, notFound } from '../volume/errors.js';
import { parseSnapshotParameters } from '../volume/parameters.js';
import type { SnapshotRecord } from '../volume/record.js';
import { requireName, requireString } from '../volume/request-fields.js';
import { formatGroupSnapshotId, formatSnapshotId, parseGroupSnapshotId, type VolumeRef, volumeDirName } from '../volume/volume-id.js';
import { toSnapshot } from './csi-answers.js';
import type { Pool } from './pool.js';
import type { PoolDirectory } from './pool-directory.js';

interface GroupRequest {
  group_snapshot_id?: string;
  snapshot_ids?: string[];
}

const lockByName = (req: { name?: string }) => (req.name ? `group/${volumeDirName(req.name)}` : undefined);
const lockById = (req: { group_snapshot_id?: string }) => {
  const ref = req.group_snapshot_id ? parseGroupSnapshotId(req.group_snapshot_id) : undefined;
  return ref ? `group/${ref.dirName}` : undefined;
};

export class GroupSnapshotService {
  static readonly lockKeys = {
    CreateVolumeGroupSnapshot: lockByName,
    DeleteVolumeGroupSnapshot: lockById,
    GetVolumeGroupSnapshot: lockById,
  } satisfies LockKeysOf<GroupControllerDefinition>;

  constructor(private readonly pools: PoolDirectory) {}

  async GroupControllerGetCapabilities() {
    return { capabilities: [{ rpc: { type: 'CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT' as const } }] };
  }

  async CreateVolumeGroupSnapshot(req: { name?: string; source_volume_ids?: string[]; parameters?: Record<string, string> }) {
    const name = requireName(req.name);
    const sourceIds = [...new Set(req.source_volume_ids ?? [])].sort();
    if (sourceIds.length === 0) throw invalid('source_volume_ids is required');
    const { freeze } = parseSnapshotParameters(req.parameters ?? {});
    const sources = [];
    for (const id of sourceIds) {
      const found = await this.pools.lookup(id);
      if (!found) throw notFound(`source volume ${id} does not exist`);
      sources.push(found);
    }
    const pool = (sources[0] as (typeof sources)[0]).pool;
    if (sources.some((s) => s.pool !== pool)) throw invalid('the volumes of a group snapshot must all be in one pool');
    const groupKey = volumeDirName(name);
    const groupRef = { ...(sources[0] as (typeof sources)[0]).ref, dirName: groupKey };
    const groupId = formatGroupSnapshotId(groupRef);
    const createdAt = new Date().toISOString();
    const members = sources.map(({ ref, rec }) => {
      const key = volumeDirName(`${name}/${rec.volumeId}`);
      const record: SnapshotRecord = {
        version: 1,
        name: `${name}/${rec.volumeId}`,
        snapshotId: formatSnapshotId({ ...ref, dirName: key }),
        sourceVolumeId: rec.volumeId,
        kind: rec.kind,
        sizeBytes: rec.capacityBytes,
        fsType: rec.fsType,
        sourceParameters: rec.parameters,
        createdAt,
        readyToUse: true,
        method: 'sparse-copy',
        groupSnapshotId: groupId,
        groupName: name,
        groupSize: sources.length,
        groupSources: sourceIds,
      };
      return { key, source: { key: ref.dirName, record: rec }, record };
    });
    const existing = await this.membersOf(pool, groupRef);
    if (existing.length > 0) {
      const sameSources = JSON.stringify(existing.map((m) => m.rec.sourceVolumeId).sort()) === JSON.stringify(sourceIds);
      if (existing[0]?.rec.groupName !== name) throw alreadyExists(`a different group name hashed to the same key`);
      if (existing.length === existing[0]?.rec.groupSize) {
        if (!sameSources) throw alreadyExists(`group snapshot ${name} exists of other volumes`);
        return { group_snapshot: await this.toGroup(pool, groupId, existing) };
      }
      const begunOf = existing[0]?.rec.groupSources;
      const begunOfThese = begunOf
        ? JSON.stringify(begunOf) === JSON.stringify(sourceIds)
        : existing[0]?.rec.groupSize === sourceIds.length && existing.every((m) => sourceIds.includes(m.rec.sourceVolumeId));
      if (!begunOfThese) throw alreadyExists(`group snapshot ${name} was begun of other volumes`);
      // Interrupted: taken at different instants if completed now. All again.
      for (const m of existing) await pool.removeSnapshot(m.key, m.rec);
    }
    const thaw = freeze
      ? await pool.freezeVolumes(sources.filter((s) => s.rec.kind === 'block').map((s) => s.ref.dirName))
      : async () => undefined;
    try {
      for (const m of members) {
        if (await pool.createSnapshot(m.key, m.record, m.source, { freeze: false })) continue;
        // The key is taken by a snapshot that is not of this group: never answer with a group missing it.
        const holder = await pool.readSnapshot(m.key);
        if (holder?.groupSnapshotId !== groupId)
          throw alreadyExists(
            `group snapshot ${name}: its member for ${m.record.sourceVolumeId} collides with snapshot ${holder?.name ?? m.key}`,
          );
      }
    } finally {
      await thaw();
    }
    const taken = await this.membersOf(pool, groupRef);
    if (taken.length !== members.length) throw aborted(`group snapshot ${name} changed while it was taken; create it again`);
    return { group_snapshot: await this.toGroup(pool, groupId, taken) };
  }

  /** The group an id names and its members; undefined when there is none. */
  private async find(req: GroupRequest) {
    const id = requireString('group_snapshot_id', req.group_snapshot_id);
    const ref = parseGroupSnapshotId(id);
    const pool = ref ? this.pools.poolOf(ref) : undefined;
    if (!ref || !pool) return { id, found: undefined };
    const members = (await this.membersOf(pool, ref)).filter((m) => m.rec.groupSnapshotId === id);
    if (members.length === 0) return { id, found: undefined };
    const given = [...(req.snapshot_ids ?? [])].sort();
    const actual = members.map((m) => m.rec.snapshotId).sort();
    if (given.length > 0 && JSON.stringify(given) !== JSON.stringify(actual))
      throw invalid(`snapshot_ids are not the members of group snapshot ${id}`);
    return { id, found: { pool, members } };
  }

  async DeleteVolumeGroupSnapshot(req: GroupRequest): Promise<Record<string, never>> {
    const { found } = await this.find(req);
    for (const m of found?.members ?? []) await found?.pool.removeSnapshot(m.key, m.rec);
    return {};
  }

  async GetVolumeGroupSnapshot(req: GroupRequest) {
    const { id, found } = await this.find(req);
    if (!found) throw notFound(`group snapshot ${id} does not exist`);
    if (found.members.length !== found.members[0]?.rec.groupSize)
      throw aborted(`group snapshot ${id} is incomplete (its create was interrupted); CreateVolumeGroupSnapshot again`);
    return { group_snapshot: await this.toGroup(found.pool, id, found.members) };
  }

  /** The members of a group: snapshots in its pool naming it. */
  private async membersOf(pool: Pool, groupRef: VolumeRef) {
    const id = formatGroupSnapshotId(groupRef);
    const out: Array<{ key: string; rec: SnapshotRecord }> = [];
    for (const key of await pool.listSnapshots()) {
      const rec = await pool.readSnapshot(key);
      if (rec?.groupSnapshotId === id) out.push({ key, rec });
    }
    return out;
  }

  private async toGroup(pool: Pool, id: string, members: Array<{ key: string; rec: SnapshotRecord }>) {
    // In parallel: NFS members still copying are waited for together, not one copy wait after another.
    const snapshots = (await Promise.all(members.map((m) => pool.settleSnapshot(m.key, m.rec)))).map(toSnapshot);
    const first = Math.min(...members.map((m) => Date.parse(m.rec.createdAt)));
    return {
      group_snapshot_id: id,
      snapshots,
      creation_time: { seconds: Math.floor(first / 1000), nanos: (first % 1000) * 1e6 },
      ready_to_use: snapshots.every((s) => s.ready_to_use),
    };
  }
}
