// What an NFS pool keeps on its export, by path relative to the export's
// root: berth's records and claims under .berth/, and the volumes' bytes.
// This is the one place the controller talks NFS: one connection per export
// (made on first use, made again after the server restarts), directory
// handles kept so a create or delete costs no path walks, and every failure
// mapped to the CSI code a caller should see. The pool (nfs-pool.ts) makes
// its decisions over this interface, and its fast tests over a fake of it.
import { createHash } from 'node:crypto';
import path from 'node:path';
import {
  type FileHandle,
  FileType,
  MountError,
  NFS3ERR,
  Nfs3Error,
  NfsClient,
  type NfsClientOptions,
  RpcError,
  RpcTransportError,
  type SourcePort,
  XdrError,
} from '../nfs-client/index.js';
import { CsiError, exhausted, failedPrecondition, internal, unavailable } from '../volume/errors.js';
import type { NfsLocation } from '../volume/parameters.js';

export type { SourcePort };

/** Where berth's records live on an export: volumes and snapshots, one JSON file per key. */
export type RecordArea = 'volumes' | 'snapshots';

export interface PathStat {
  type: 'directory' | 'file' | 'other';
  size: number;
  /** Bytes the server has allocated for it. */
  used: number;
}

export interface ExportStore {
  /** `<server>:<export>`, as messages name it. */
  readonly where: string;
  /** Whether the server answers; the error as the client threw it. */
  ping(): Promise<void>;
  close(): void;

  /** A record; undefined when there is none or it is half-written. */
  readRecord<T>(area: RecordArea, key: string): Promise<T | undefined>;
  /** Writes a new record; false (changing nothing) when one with this key exists. */
  addRecord(area: RecordArea, key: string, value: unknown): Promise<boolean>;
  /** Writes a record whatever is there (one left half-written by an interrupted attempt). */
  overwriteRecord(area: RecordArea, key: string, value: unknown): Promise<void>;
  /** Replaces a record atomically: written aside, then renamed over it. */
  replaceRecord(area: RecordArea, key: string, value: unknown): Promise<void>;
  /** Removes a record; one already gone is fine. */
  removeRecord(area: RecordArea, key: string): Promise<void>;
  /** The keys of an area's records, sorted. */
  listRecords(area: RecordArea): Promise<string[]>;

  /** Claims a volume directory for `key` in one call; false when a claim exists (claimOwner says whose). */
  addClaim(subDir: string, key: string): Promise<boolean>;
  /** The key of the volume that holds `subDir`, or undefined when none does. */
  claimOwner(subDir: string): Promise<string | undefined>;
  removeClaim(subDir: string): Promise<void>;

  /** Marks a volume as being populated by a copy (the marker outlives a restart). */
  markPopulating(key: string, volumeId: string): Promise<void>;
  isPopulating(key: string): Promise<boolean>;
  unmarkPopulating(key: string): Promise<void>;

  /** Makes a directory (its parents 0755); false when it exists. */
  makeDir(p: string, mode: number): Promise<boolean>;
  exists(p: string): Promise<boolean>;
  /** The names in a directory. */
  entries(p: string): Promise<string[]>;
  stat(p: string): Promise<PathStat>;
  /** A new sparse file of `size` bytes, mode 0600; false when it exists. */
  createImage(p: string, size: number): Promise<boolean>;
  setSize(p: string, size: number): Promise<void>;
  /** rm -rf; missing is fine. */
  removeTree(p: string): Promise<void>;
  /** Moves `p` to `name` at the export's root; missing is fine. */
  moveToRoot(p: string, name: string): Promise<void>;
  /** Copies a tree (sparse, several calls in flight) to `to`, which must not exist. */
  copyTree(from: string, to: string, signal: AbortSignal): Promise<void>;
  /** Copies a file (sparse, several calls in flight) to `to`, which must not exist. */
  copyFile(from: string, to: string, signal: AbortSignal): Promise<void>;
  /** The export's size and what is free. */
  capacity(): Promise<{ totalBytes: number; availableBytes: number }>;
}

const AREAS: Record<RecordArea, string> = { volumes: '.berth/volumes', snapshots: '.berth/snapshots' };
/** One claim per volume directory: a symlink named by the directory's hash, whose text is the owner's key. */
const CLAIMS = '.berth/claims';
const POPULATING = '.berth/populating';
/** READs and WRITEs a copy keeps in flight. */
const COPY_PARALLEL = 8;
/** Directory handles of volumes kept after use (a create's image goes into the directory it just made). */
const RECENT_DIRS = 64;

const claimName = (subDir: string) => createHash('sha256').update(subDir).digest('hex').slice(0, 40);
const isNfs = (err: unknown, status: number) => err instanceof Nfs3Error && err.status === status;
const json = (value: unknown) => JSON.stringify(value);

/** Maps what the NFS client throws to the CSI code a caller should see. */
export function nfsFailure(err: unknown, where: string, identity = 'uid 0 (root)'): Error {
  if (err instanceof CsiError) return err;
  if (err instanceof RpcTransportError || err instanceof XdrError) return unavailable(`NFS server ${where}: ${err.message}`);
  if (err instanceof RpcError && err.reason === 'AUTH_ERROR') {
    // knfsd's default `secure` (ganesha: PrivilegedPort) refuses clients on ports above 1023.
    return failedPrecondition(
      `NFS server ${where} refused berth's credentials (${err.message}): an export marked secure (the Linux default) accepts only reserved source ports: run the controller with CAP_NET_BIND_SERVICE (the chart grants it), or export with insecure`,
    );
  }
  if (err instanceof RpcError) return unavailable(`NFS server ${where}: ${err.message}`);
  if (err instanceof MountError) return failedPrecondition(`NFS export ${where}: ${err.message}`);
  if (err instanceof Nfs3Error) {
    if (err.status === NFS3ERR.NOSPC || err.status === NFS3ERR.DQUOT) return exhausted(`NFS ${where}: ${err.message}`);
    if (err.status === NFS3ERR.ACCES || err.status === NFS3ERR.PERM) {
      // Most often root_squash (the Linux default): berth's root is mapped to nobody.
      return failedPrecondition(
        `NFS ${where}: ${err.message} acting as ${identity}: on a root_squash export (the Linux default) set the StorageClass parameters nfsUid and nfsGid to the owner of the export's directory, or export with no_root_squash`,
      );
    }
    if (err.status === NFS3ERR.STALE || err.status === NFS3ERR.JUKEBOX) return unavailable(`NFS ${where}: ${err.message}`);
    return internal(`NFS ${where}: ${err.message}`);
  }
  return err instanceof Error ? err : new Error(String(err));
}

export class NfsExportStore implements ExportStore {
  private client: Promise<NfsClient> | undefined;
  /** Handles of berth's own directories (.berth/...), made on first use and kept. */
  private readonly berthDirs = new Map<string, Promise<FileHandle>>();
  /** Handles of volume directories used lately, by path. */
  private readonly recentDirs = new Map<string, FileHandle>();
  private sequence = 0;

  constructor(
    readonly location: NfsLocation,
    private readonly sourcePort: SourcePort = 'auto',
    private readonly timeoutMs = 30_000,
    private readonly onReply?: NfsClientOptions['onReply'],
  ) {}

  get where(): string {
    return `${this.location.server}:${this.location.share}`;
  }

  /** One connection per export, made on first use and kept. */
  private connect(): Promise<NfsClient> {
    const { server, share, nfsPort, mountPort, uid, gid } = this.location;
    this.client ??= NfsClient.connect({
      host: server,
      exportPath: share,
      nfsPort,
      mountPort,
      auth: uid !== undefined ? { uid, gid: gid ?? uid } : undefined,
      sourcePort: this.sourcePort,
      timeoutMs: this.timeoutMs,
      onReply: this.onReply,
    }).then(
      (c) => c,
      (err: unknown) => {
        this.client = undefined;
        throw err;
      },
    );
    return this.client;
  }

  /** Runs an operation, mapping failures; a stale handle forces a new MNT next time. */
  private async run<T>(what: string, op: (c: NfsClient) => Promise<T>): Promise<T> {
    try {
      return await op(await this.connect());
    } catch (err) {
      if (isNfs(err, NFS3ERR.STALE) || isNfs(err, NFS3ERR.BADHANDLE)) this.reset();
      const { uid, gid } = this.location;
      throw nfsFailure(err, `${this.where} (${what})`, uid !== undefined ? `uid ${uid} gid ${gid ?? uid}` : undefined);
    }
  }

  private reset(): void {
    void this.client?.then(
      (c) => c.close(),
      () => undefined,
    );
    this.client = undefined;
    this.berthDirs.clear();
    this.recentDirs.clear();
  }

  close(): void {
    this.reset();
  }

  async ping(): Promise<void> {
    await (await this.connect()).ping();
  }

  /** The handle of one of berth's directories on the export, made (mode 0700) on first use. */
  private berthDir(c: NfsClient, p: string): Promise<FileHandle> {
    let handle = this.berthDirs.get(p);
    if (!handle) {
      handle = c.mkdirp(p, 0o700).catch((err: unknown) => {
        this.berthDirs.delete(p);
        throw err;
      });
      this.berthDirs.set(p, handle);
    }
    return handle;
  }

  /** The handle of a directory: the root, one used lately, or looked up. */
  private async dirHandle(c: NfsClient, p: string): Promise<FileHandle> {
    if (p === '.' || p === '') return c.root;
    return this.recentDirs.get(p) ?? c.resolve(p);
  }

  private remember(p: string, fh: FileHandle): void {
    this.recentDirs.delete(p);
    this.recentDirs.set(p, fh);
    if (this.recentDirs.size > RECENT_DIRS) this.recentDirs.delete(this.recentDirs.keys().next().value as string);
  }

  private forget(p: string): void {
    for (const k of [...this.recentDirs.keys()]) if (k === p || k.startsWith(`${p}/`)) this.recentDirs.delete(k);
  }

  /** The handle of a path's parent, made if missing: berth's own directories 0700, a volume's parents 0755. */
  private makeParent(c: NfsClient, p: string): Promise<FileHandle> {
    const parentPath = path.posix.dirname(p);
    if (parentPath === '.') return Promise.resolve(c.root);
    return parentPath === '.berth' || parentPath.startsWith('.berth/') ? this.berthDir(c, parentPath) : c.mkdirp(parentPath, 0o755);
  }

  /** The directory handle and name of a path's last component. */
  private async parentOf(c: NfsClient, p: string): Promise<{ dir: FileHandle; name: string }> {
    return { dir: await this.dirHandle(c, path.posix.dirname(p)), name: path.posix.basename(p) };
  }

  // ---------------------------------------------------------------- records

  readRecord<T>(area: RecordArea, key: string): Promise<T | undefined> {
    return this.run(`read ${area} record`, async (c) => {
      try {
        const text = (await c.readFileAt(await this.berthDir(c, AREAS[area]), `${key}.json`)).toString('utf8');
        return text ? (JSON.parse(text) as T) : undefined;
      } catch (err) {
        if (isNfs(err, NFS3ERR.NOENT) || err instanceof SyntaxError) return undefined; // none, or half-written
        throw err;
      }
    });
  }

  addRecord(area: RecordArea, key: string, value: unknown): Promise<boolean> {
    return this.run(`write ${area} record`, async (c) => {
      try {
        await c.writeFileAt(await this.berthDir(c, AREAS[area]), `${key}.json`, json(value), { mode: 0o600, exclusive: true });
        return true;
      } catch (err) {
        if (isNfs(err, NFS3ERR.EXIST)) return false;
        throw err;
      }
    });
  }

  overwriteRecord(area: RecordArea, key: string, value: unknown): Promise<void> {
    return this.run(`write ${area} record`, async (c) => {
      await c.writeFileAt(await this.berthDir(c, AREAS[area]), `${key}.json`, json(value), { mode: 0o600 });
    });
  }

  replaceRecord(area: RecordArea, key: string, value: unknown): Promise<void> {
    return this.run(`write ${area} record`, async (c) => {
      const dir = await this.berthDir(c, AREAS[area]);
      const tmp = `${key}.json.tmp-${process.pid}-${++this.sequence}`;
      await c.writeFileAt(dir, tmp, json(value), { mode: 0o600, exclusive: true });
      await c.renameAt(dir, tmp, dir, `${key}.json`);
    });
  }

  removeRecord(area: RecordArea, key: string): Promise<void> {
    return this.run(`remove ${area} record`, async (c) => {
      await c.removeAt(await this.berthDir(c, AREAS[area]), `${key}.json`).catch((err: unknown) => {
        if (!isNfs(err, NFS3ERR.NOENT)) throw err;
      });
    });
  }

  listRecords(area: RecordArea): Promise<string[]> {
    return this.run(`list ${area}`, async (c) => {
      await this.berthDir(c, AREAS[area]);
      const names = (await c.list(AREAS[area])).map((e) => e.name).filter((n) => n.endsWith('.json'));
      return names.map((n) => n.slice(0, -'.json'.length)).sort();
    });
  }

  // ----------------------------------------------------------------- claims

  addClaim(subDir: string, key: string): Promise<boolean> {
    return this.run('claim', async (c) => {
      try {
        await c.symlinkAt(await this.berthDir(c, CLAIMS), claimName(subDir), key);
        return true;
      } catch (err) {
        if (isNfs(err, NFS3ERR.EXIST)) return false;
        throw err;
      }
    });
  }

  claimOwner(subDir: string): Promise<string | undefined> {
    return this.run('read claim', async (c) => {
      try {
        return await c.readlinkAt(await this.berthDir(c, CLAIMS), claimName(subDir));
      } catch (err) {
        if (isNfs(err, NFS3ERR.NOENT)) return undefined;
        throw err;
      }
    });
  }

  removeClaim(subDir: string): Promise<void> {
    return this.run('remove claim', async (c) => {
      await c.removeAt(await this.berthDir(c, CLAIMS), claimName(subDir)).catch((err: unknown) => {
        if (!isNfs(err, NFS3ERR.NOENT)) throw err;
      });
    });
  }

  markPopulating(key: string, volumeId: string): Promise<void> {
    return this.run('mark', async (c) => c.writeFileAt(await this.berthDir(c, POPULATING), key, volumeId, { mode: 0o600 }));
  }

  isPopulating(key: string): Promise<boolean> {
    return this.run('read mark', async (c) =>
      c.lookupAt(await this.berthDir(c, POPULATING), key).then(
        () => true,
        (err: unknown) => {
          if (isNfs(err, NFS3ERR.NOENT)) return false;
          throw err;
        },
      ),
    );
  }

  unmarkPopulating(key: string): Promise<void> {
    return this.run('remove mark', async (c) => {
      await c.removeAt(await this.berthDir(c, POPULATING), key).catch(() => undefined);
    });
  }

  // ------------------------------------------------------------------- data

  makeDir(p: string, mode: number): Promise<boolean> {
    return this.run('mkdir', async (c) => {
      const parent = await this.makeParent(c, p);
      try {
        this.remember(p, await c.mkdirAt(parent, path.posix.basename(p), mode));
        return true;
      } catch (err) {
        if (!isNfs(err, NFS3ERR.EXIST)) throw err;
        return false;
      }
    });
  }

  exists(p: string): Promise<boolean> {
    return this.run('lookup', (c) => c.exists(p));
  }

  entries(p: string): Promise<string[]> {
    return this.run('list', async (c) => (await c.list(p)).map((e) => e.name));
  }

  stat(p: string): Promise<PathStat> {
    return this.run('stat', async (c) => {
      const { dir, name } = await this.parentOf(c, p);
      const a = await c.statAt(dir, name);
      return { type: a.type === FileType.DIR ? 'directory' : a.type === FileType.REG ? 'file' : 'other', size: a.size, used: a.used };
    });
  }

  createImage(p: string, size: number): Promise<boolean> {
    return this.run('create image', async (c) => {
      const { dir, name } = await this.parentOf(c, p);
      try {
        await c.createSparseAt(dir, name, size);
        return true;
      } catch (err) {
        if (!isNfs(err, NFS3ERR.EXIST)) throw err;
        return false;
      }
    });
  }

  setSize(p: string, size: number): Promise<void> {
    return this.run('set size', async (c) => {
      const { dir, name } = await this.parentOf(c, p);
      await c.setSizeAt(dir, name, size);
    });
  }

  removeTree(p: string): Promise<void> {
    return this.run('remove', async (c) => {
      this.forget(p);
      const parent = await this.dirHandle(c, path.posix.dirname(p)).catch((err: unknown) => {
        if (isNfs(err, NFS3ERR.NOENT)) return undefined;
        throw err;
      });
      if (parent) await c.removeTreeAt(parent, path.posix.basename(p));
    });
  }

  moveToRoot(p: string, name: string): Promise<void> {
    return this.run('rename', async (c) => {
      this.forget(p);
      const parent = await this.dirHandle(c, path.posix.dirname(p)).catch(() => undefined);
      if (!parent) return;
      await c.renameAt(parent, path.posix.basename(p), c.root, name).catch((err: unknown) => {
        if (!isNfs(err, NFS3ERR.NOENT)) throw err;
      });
    });
  }

  copyTree(from: string, to: string, signal: AbortSignal): Promise<void> {
    return this.run('copy', async (c) => {
      const parent = await this.makeParent(c, to);
      await c.copyTreeAt(await c.resolve(from), parent, path.posix.basename(to), { parallel: COPY_PARALLEL, signal });
    });
  }

  copyFile(from: string, to: string, signal: AbortSignal): Promise<void> {
    return this.run('copy', async (c) => {
      const { dir, name } = await this.parentOf(c, to);
      await c.copyFileAt(await c.resolve(from), dir, name, { parallel: COPY_PARALLEL, signal });
    });
  }

  capacity(): Promise<{ totalBytes: number; availableBytes: number }> {
    return this.run('fsstat', async (c) => {
      const st = await c.fsstat();
      return { totalBytes: st.totalBytes, availableBytes: st.availableBytes };
    });
  }
}
