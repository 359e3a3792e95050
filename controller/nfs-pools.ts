// The NFS pools of a controller, by export: made when a request names an
// export, kept once they hold a volume, and probed for metrics.

import type { NfsLocation } from '../volume/parameters.js';
import { NfsExportStore, type SourcePort } from './nfs-export-store.js';
import { NfsPool } from './nfs-pool.js';
import type { Pool } from './pool.js';

export function nfsPoolKey(l: NfsLocation): string {
  return `${l.server}|${l.share}|${l.nfsPort ?? ''}|${l.mountPort ?? ''}|${l.uid ?? ''}.${l.gid ?? ''}`;
}

export interface NfsPoolsOptions {
  /** Where the controller's NFS connections come from (see nfs-client's sourcePort). */
  sourcePort?: SourcePort;
  /** How long a call waits for a copy before it goes on in the background. */
  copyWaitMs?: number;
  /** Told of every NFS RPC of every pool, by server (metrics). */
  onReply?: (server: string, what: string, seconds: number, replied: boolean) => void;
  /** How old a usage scan of a pool may be reused (metrics). */
  usageMaxAgeMs?: number;
}

/**
 * The NFS pools of this controller. A pool is kept (listed by ListVolumes,
 * its connection reused) once it holds a volume this controller made or
 * found; a server a request merely names (a mistyped StorageClass, a
 * DeleteVolume of a volume long gone) is never kept, so it cannot make
 * later calls fail. Pools not kept are reused for a while, a few at a time.
 */
export class NfsPools {
  private readonly kept = new Map<string, NfsPool>();

  constructor(private readonly opts: NfsPoolsOptions = {}) {}

  private readonly passing = new Map<string, NfsPool>();
  static readonly PASSING_MAX = 16;

  get(location: NfsLocation): NfsPool {
    const key = nfsPoolKey(location);
    const known = this.kept.get(key) ?? this.passing.get(key);
    if (known) return known;
    const { server, share, nfsPort, mountPort, uid, gid } = location;
    const { onReply, sourcePort, copyWaitMs, usageMaxAgeMs } = this.opts;
    const label = serverLabel(location);
    const where = { server, share, nfsPort, mountPort, uid, gid };
    const store = new NfsExportStore(
      where,
      sourcePort,
      30_000,
      onReply && ((what, seconds, replied) => onReply(label, what, seconds, replied)),
    );
    const pool = new NfsPool(where, store, copyWaitMs, usageMaxAgeMs);
    this.passing.set(key, pool);
    if (this.passing.size > NfsPools.PASSING_MAX) {
      const [oldestKey, oldest] = this.passing.entries().next().value as [string, NfsPool];
      this.passing.delete(oldestKey);
      oldest.close();
    }
    return pool;
  }

  /** Keeps a pool that holds a volume (one this registry made; any other pool is not an NFS pool of this controller). */
  keep(pool: Pool): void {
    if (!(pool instanceof NfsPool)) return;
    const key = nfsPoolKey(pool.location);
    if (this.kept.has(key)) return;
    this.passing.delete(key);
    this.kept.set(key, pool);
  }

  /** Kept pools in a stable order (for listing). */
  all(): Array<[string, NfsPool]> {
    return [...this.kept.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }

  close(): void {
    for (const p of [...this.kept.values(), ...this.passing.values()]) p.close();
  }

  /** The servers of the kept pools, each probed through one of its pools (all at once, each bounded by `timeoutMs`). */
  async servers(timeoutMs: number): Promise<NfsServerHealth[]> {
    const byServer = new Map<string, NfsPool>();
    for (const [, pool] of this.all()) {
      const label = serverLabel(pool.location);
      if (!byServer.has(label)) byServer.set(label, pool);
    }
    return Promise.all([...byServer].map(async ([server, pool]) => ({ server, ...(await pool.reachable(timeoutMs)) })));
  }
}

export interface NfsServerHealth {
  /** The server as StorageClasses name it, with its NFS port when one is given. */
  server: string;
  reachable: boolean;
  /** How long the probe took (until it failed, when it did). */
  seconds: number;
  error?: string;
}

/** A server's name in metrics and status: as StorageClasses name it, with its NFS port when one is given. */
function serverLabel(l: NfsLocation): string {
  return l.nfsPort ? `${l.server}:${l.nfsPort}` : l.server;
}
