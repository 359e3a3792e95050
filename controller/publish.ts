// ControllerPublishVolume and ControllerUnpublishVolume: which nodes a
// volume is attached to, kept in its record. Attach exists only where
// volumes can reach more than one node (role.ts).

import { capabilityProblem } from '../volume/capabilities.js';
import type { ControllerPublishVolumeRequest, ControllerUnpublishVolumeRequest } from '../volume/csi.js';
import { SINGLE_NODE_MODES } from '../volume/csi.js';
import { alreadyExists, exhausted, failedPrecondition, invalid, notFound, unimplemented } from '../volume/errors.js';
import { requireString } from '../volume/request-fields.js';
import { encodePublishContext, staticNfsShareOf } from '../volume/volume-context.js';
import { parseVolumeId } from '../volume/volume-id.js';
import type { NodeDirectory } from './nodes.js';
import type { PoolDirectory } from './pool-directory.js';
import { attaches } from './role.js';

export class Attachments {
  constructor(private readonly pools: PoolDirectory) {}

  /** Who may be attached to; UNIMPLEMENTED where there is no attach step. */
  private nodes(): NodeDirectory {
    const { role } = this.pools;
    if (!attaches(role)) throw unimplemented('this driver has no attach step: its volumes are pinned to their node by topology');
    return role.nodes;
  }

  async publish(req: ControllerPublishVolumeRequest): Promise<{ publish_context: Record<string, string> }> {
    const id = requireString('volume_id', req.volume_id);
    const nodeId = requireString('node_id', req.node_id, 256);
    if (!req.volume_capability) throw invalid('volume_capability is required');
    const nodes = this.nodes();
    // Before any lookup: a static share has no record to read, and needs its server for nothing here.
    if (isStaticNfsVolume(id, req.volume_context)) return { publish_context: encodePublishContext({ kind: 'share' }) };
    const found = await this.pools.lookup(id);
    if (!found) {
      const ref = parseVolumeId(id);
      throw notFound(ref && !this.pools.poolOf(ref) ? this.pools.notHeld(ref, id) : `volume ${id} does not exist`);
    }
    const { ref, rec, pool } = found;
    // A local pool has one node; an NFS export is reachable from any node that exists.
    if (ref.pool === 'local' && nodeId !== this.pools.nodeId)
      throw notFound(`node ${nodeId} is unknown: this local pool is on node ${this.pools.nodeId}`);
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

  async unpublish(req: ControllerUnpublishVolumeRequest): Promise<Record<string, never>> {
    const id = requireString('volume_id', req.volume_id);
    this.nodes();
    const found = await this.pools.lookup(id);
    if (!found) return {}; // a volume that is gone is detached everywhere
    const { ref, rec, pool } = found;
    const nodes = req.node_id ? [req.node_id] : Object.keys(rec.attachments);
    if (!nodes.some((n) => n in rec.attachments)) return {};
    for (const n of nodes) delete rec.attachments[n];
    await pool.writeRecord(ref.dirName, rec);
    return {};
  }

  /** How many volumes are published to a node, from the records (only when the node has a limit). */
  private async attachedTo(nodeId: string): Promise<number> {
    let count = 0;
    for (const [, pool] of this.pools.served()) {
      for (const key of await pool.list()) if ((await pool.read(key))?.attachments[nodeId]) count++;
    }
    return count;
  }
}

/**
 * A pre-existing NFS share (a PV written by `berth-flex migrate`, or by
 * hand) has no record on the export: its PV's volumeAttributes say where
 * it is. It may be published to any node; nothing needs recording, since a
 * share is multi-node. Its id and attributes must agree.
 */
function isStaticNfsVolume(id: string, ctx: Record<string, string> | undefined): boolean {
  const ref = parseVolumeId(id);
  const at = staticNfsShareOf(ctx);
  return ref?.pool === 'nfs' && ref.kind === 'share' && at?.server === ref.server && at.share === ref.share;
}
