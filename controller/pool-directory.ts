// Which pools this controller serves and how an id finds its volume or
// snapshot in them. Answers are read from the pools' records; the only thing
// held in memory is which NFS pools this controller has seen holding a
// volume (nfs-pools.ts), which is what ListVolumes and the attach count walk.
import { invalid, notFound } from '../volume/errors.js';
import type { SnapshotRecord, VolumeRecord } from '../volume/record.js';
import { requireString } from '../volume/request-fields.js';
import { encodeNode, parseSnapshotId, parseVolumeId, type VolumeRef } from '../volume/volume-id.js';
import type { LocalPool } from './local-pool.js';
import type { NfsPools } from './nfs-pools.js';
import type { Pool } from './pool.js';
import { type PoolReport, within } from './pool-usage.js';
import type { ControllerRole } from './role.js';

/** ListVolumes' key of the local pool: sorts before every NFS pool's. */
const LOCAL_POOL_KEY = '';

export interface FoundVolume {
  ref: VolumeRef;
  rec: VolumeRecord;
  pool: Pool;
}

export interface FoundSnapshot {
  ref: VolumeRef;
  rec: SnapshotRecord;
  pool: Pool;
}

export class PoolDirectory {
  constructor(readonly role: ControllerRole) {}

  get nodeId(): string {
    return this.role.nodeId;
  }

  /** This node's local pool; INVALID_ARGUMENT where this controller serves none. */
  localPool(): LocalPool {
    if (this.role.kind === 'nfs-controller') {
      throw invalid(
        'pool: local is not served by this driver, which provisions NFS pools only: a StorageClass for node-local pools names the local driver as its provisioner (its provisioner runs on each node)',
      );
    }
    return this.role.local;
  }

  /** The NFS pools; INVALID_ARGUMENT where this controller serves none. */
  nfsPools(): NfsPools {
    if (this.role.kind === 'local-driver') {
      throw invalid(
        "pool: nfs is not served by this driver, which provisions this node's local pool only: NFS classes name the NFS driver",
      );
    }
    return this.role.nfs;
  }

  /** The pools this controller serves, keyed for listing (the local pool first, then NFS pools in key order). */
  served(): Array<[string, Pool]> {
    const local: Array<[string, Pool]> = this.role.kind === 'nfs-controller' ? [] : [[LOCAL_POOL_KEY, this.role.local]];
    return [...local, ...(this.role.kind === 'local-driver' ? [] : this.role.nfs.all())];
  }

  /** The pool an id names, when this controller serves it: a local id only on its own node. */
  poolOf(ref: VolumeRef): Pool | undefined {
    if (ref.pool === 'nfs') return this.role.kind === 'local-driver' ? undefined : this.role.nfs.get(ref);
    return ref.node === encodeNode(this.role.nodeId) && this.role.kind !== 'nfs-controller' ? this.role.local : undefined;
  }

  /** The volume an id names in a pool this controller serves; undefined when there is none. */
  async lookup(volumeId: string): Promise<FoundVolume | undefined> {
    const ref = parseVolumeId(volumeId);
    const pool = ref && this.poolOf(ref);
    if (!ref || !pool) return undefined;
    const rec = await pool.read(ref.dirName);
    if (!rec || rec.volumeId !== volumeId) return undefined;
    this.holdsVolumes(pool);
    return { ref, rec, pool };
  }

  /** The volume a request's volume_id names: INVALID_ARGUMENT without one, NOT_FOUND when there is none. */
  async mustFind(volumeId: string | undefined): Promise<FoundVolume> {
    const id = requireString('volume_id', volumeId);
    const found = await this.lookup(id);
    if (!found) throw notFound(`volume ${id} does not exist`);
    return found;
  }

  /** The snapshot an id names in a pool this controller serves; undefined when there is none. */
  async findSnapshot(id: string): Promise<FoundSnapshot | undefined> {
    const ref = parseSnapshotId(id);
    const pool = ref && this.poolOf(ref);
    if (!ref || !pool) return undefined;
    const rec = await pool.readSnapshot(ref.dirName);
    return rec && rec.snapshotId === id ? { ref, rec, pool } : undefined;
  }

  /** An NFS pool is kept (listed, its connection reused) once it holds a volume this controller made or found. */
  holdsVolumes(pool: Pool): void {
    if (pool.type === 'nfs' && this.role.kind !== 'local-driver') this.role.nfs.keep(pool);
  }

  /** Why a volume (or snapshot) this controller does not serve is not found here. */
  notHeld(ref: VolumeRef, id: string, what: 'volume' | 'snapshot' = 'volume'): string {
    const serves = this.role.kind === 'nfs-controller' ? 'NFS pools' : `node ${this.role.nodeId}`;
    return ref.pool === 'local'
      ? `${what} ${id} lives in the local pool of node ${ref.node}; this controller serves ${serves}`
      : `${what} ${id} is on an NFS pool, which this driver does not serve`;
  }

  /**
   * Every pool this controller serves and what it holds (metrics, berth-ctl
   * status); a pool that cannot be read, or not within `timeoutMs` (a hung
   * disk or server), says why.
   */
  async reports(timeoutMs: number): Promise<PoolReport[]> {
    return Promise.all(
      this.served().map(async ([, pool]): Promise<PoolReport> => {
        const name = pool.type === 'local' ? `local/${this.role.nodeId}` : pool.where;
        try {
          return { pool: name, type: pool.type, usage: await within(timeoutMs, `the pool ${name}`, pool.usage()) };
        } catch (err) {
          return { pool: name, type: pool.type, error: (err as Error).message };
        }
      }),
    );
  }
}
