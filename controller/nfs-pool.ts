// An NFS pool: volumes on an NFS export, provisioned over the NFS protocol
// with berth's own client. The controller never mounts anything.
//
//   <share>/<subDir>/               share kind: the volume's directory
//   <share>/<subDir>/disk.img       block kind: a sparse image
//   <share>/.berth/volumes/<key>.json   records: written last on create, removed last on delete
//   <share>/.berth/claims/<hash of subDir>   a symlink to <key>: the one volume that owns subDir
//   <share>/archived-<subDir>-<ts>  onDelete: archive
//   <share>/.berth/snapshots/<key>.json   snapshot records (readyToUse false while copying)
//   <share>/.berth/snapshot-data/<key>/   a snapshot's copy: the tree, or disk.img
//   <share>/.berth/populating/<key>       a volume being copied from a snapshot or a volume
//
// Snapshots, restores and clones are copies made by the controller over
// NFS (no mount): sparse (zero chunks are not written), several READs and
// WRITEs in flight. A copy that outlasts copyWaitMs goes on in the
// background: a snapshot answers readyToUse false meanwhile, a volume
// ABORTED (the provisioner retries). After a restart, the next call that
// looks at the snapshot or volume starts the copy again.
//
// A create costs four NFS calls (SYMLINK of the claim, MKDIR, CREATE and
// WRITE of the record) and a share delete nine (block ten), on cached
// directory handles; a server that goes away mid-call gives UNAVAILABLE,
// and the retry adopts what the failed attempt made, so nothing half-made
// remains. Two volumes can never share a directory: the claim is made
// first, and a delete removes data only while its claim names the volume.
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
import { aborted, alreadyExists, Code, CsiError, exhausted, failedPrecondition, internal, invalid, unavailable } from '../volume/errors.js';
import { NFS_IMAGE } from '../volume/nfs.js';
import type { NfsLocation } from '../volume/parameters.js';
import type { OnDelete, SnapshotRecord, VolumeRecord } from '../volume/record.js';
import type { ContentSource, Pool, SnapshotSource } from './pool.js';
import { addVolume, CachedScan, emptyKinds, forEachLimited, type PoolUsage, within } from './pool-usage.js';

const RECORDS = '.berth/volumes';
const SNAPSHOTS = '.berth/snapshots';
const SNAPSHOT_DATA = '.berth/snapshot-data';
const POPULATING = '.berth/populating';
/** READs and WRITEs a copy keeps in flight. */
const COPY_PARALLEL = 8;
/** How old a usage scan a scrape may reuse, by default: a scan reads every record over the wire. */
const USAGE_MAX_AGE_MS = 10_000;
/** One claim per volume directory: a symlink named by the directory's hash, whose text is the owner's key. */
const CLAIMS = '.berth/claims';
const claimName = (subDir: string) => createHash('sha256').update(subDir).digest('hex').slice(0, 40);

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

const isNfs = (err: unknown, status: number) => err instanceof Nfs3Error && err.status === status;

export class NfsPool implements Pool {
  readonly type = 'nfs';
  private client: Promise<NfsClient> | undefined;
  /** Handles of berth's own directories on the export (.berth/...), made on first use and kept. */
  private readonly dirs = new Map<string, Promise<FileHandle>>();
  private sequence = 0;
  private free: { bytes: number; at: number } | undefined;

  /** Copies running in this process, by `snapshot/<key>` or `volume/<key>`. */
  private readonly copies = new Map<string, { done: Promise<void>; abort: AbortController }>();

  constructor(
    readonly location: NfsLocation,
    private readonly sourcePort: SourcePort = 'auto',
    private readonly timeoutMs = 30_000,
    private readonly copyWaitMs = 8_000,
    private readonly observe: { onReply?: NfsClientOptions['onReply']; usageMaxAgeMs?: number } = {},
  ) {
    this.usageScan = new CachedScan(() => this.scanUsage(), observe.usageMaxAgeMs ?? USAGE_MAX_AGE_MS);
  }

  get where(): string {
    return `${this.location.server}:${this.location.share}`;
  }

  /** One connection per export, made on first use and kept. */
  private connect(): Promise<NfsClient> {
    this.client ??= NfsClient.connect({
      host: this.location.server,
      exportPath: this.location.share,
      nfsPort: this.location.nfsPort,
      mountPort: this.location.mountPort,
      auth: this.location.uid !== undefined ? { uid: this.location.uid, gid: this.location.gid ?? this.location.uid } : undefined,
      sourcePort: this.sourcePort,
      timeoutMs: this.timeoutMs,
      onReply: this.observe.onReply,
    }).then(
      (c) => c,
      (err: unknown) => {
        this.client = undefined;
        throw err;
      },
    );
    return this.client;
  }

  /** Runs an operation, mapping failures; a stale root handle forces a new MNT next time. */
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
    this.dirs.clear();
  }

  close(): void {
    this.reset();
  }

  /** The handle of one of berth's directories on the export, made (mode 0700) on first use. */
  private dir(c: NfsClient, p: string): Promise<FileHandle> {
    let handle = this.dirs.get(p);
    if (!handle) {
      handle = c.mkdirp(p, 0o700).catch((err: unknown) => {
        this.dirs.delete(p);
        throw err;
      });
      this.dirs.set(p, handle);
    }
    return handle;
  }

  private records(c: NfsClient): Promise<FileHandle> {
    return this.dir(c, RECORDS);
  }

  async probe(): Promise<void> {
    try {
      await (await this.connect()).nfs.null();
    } catch (err) {
      throw failedPrecondition(`NFS server ${this.where} is not reachable: ${(err as Error).message}`);
    }
  }

  async read(key: string): Promise<VolumeRecord | undefined> {
    return this.run('read record', async (c) => {
      try {
        const text = (await c.readFileAt(await this.records(c), `${key}.json`)).toString('utf8');
        return text ? (JSON.parse(text) as VolumeRecord) : undefined;
      } catch (err) {
        if (isNfs(err, NFS3ERR.NOENT) || err instanceof SyntaxError) return undefined; // none, or half-written
        throw err;
      }
    });
  }

  async create(key: string, record: VolumeRecord, mountPermissions: number, content?: ContentSource): Promise<boolean> {
    if (content) return this.createFrom(key, record, content);
    const subDir = record.subDir;
    if (!subDir) throw new Error('an NFS volume record needs its subDir');
    return this.run('create', async (c) => {
      const records = await this.records(c);
      // The directory belongs to exactly one volume: claim it first.
      const claimedBefore = await this.claim(c, subDir, key);
      const parentPath = path.posix.dirname(subDir);
      const parent = parentPath === '.' ? c.root : await c.mkdirp(parentPath, 0o755);
      const name = path.posix.basename(subDir);
      let dir: FileHandle;
      try {
        dir = (await c.nfs.mkdir(parent, name, { mode: mountPermissions })).fh ?? (await c.nfs.lookup(parent, name)).fh;
      } catch (err) {
        if (!isNfs(err, NFS3ERR.EXIST)) throw err;
        if (await this.read(key)) return false;
        // A directory without a record: adopt only what an interrupted
        // attempt of this volume left (it held the claim before this call;
        // the directory is empty, or holds just its image).
        dir = (await c.nfs.lookup(parent, name)).fh;
        const entries = (await c.list(subDir)).map((e) => e.name);
        const leftByUs = entries.length === 0 || (record.kind === 'block' && entries.length === 1 && entries[0] === NFS_IMAGE);
        if (!claimedBefore || !leftByUs) {
          if (!claimedBefore) await this.removeClaim(c, subDir); // made by this call: ours to undo
          throw alreadyExists(`${subDir} already exists on ${this.where} and berth did not make it for this volume; choose another subDir`);
        }
      }
      if (record.kind === 'block') {
        try {
          await c.createSparseAt(dir, NFS_IMAGE, record.capacityBytes);
        } catch (err) {
          if (!isNfs(err, NFS3ERR.EXIST)) throw err;
          // Left by an interrupted attempt of this volume (the directory was adopted above).
          const { fh, attributes } = await c.nfs.lookup(dir, NFS_IMAGE);
          if ((attributes ?? (await c.nfs.getattr(fh))).size !== record.capacityBytes)
            await c.nfs.setattr(fh, { size: record.capacityBytes });
        }
      }
      // The record, last: a volume exists once its record does.
      const text = JSON.stringify(record);
      try {
        await c.writeFileAt(records, `${key}.json`, text, { mode: 0o600, exclusive: true });
      } catch (err) {
        if (!isNfs(err, NFS3ERR.EXIST)) throw err;
        if (await this.read(key)) return false;
        await c.writeFileAt(records, `${key}.json`, text, { mode: 0o600 }); // half-written by an interrupted attempt
      }
      return true;
    });
  }

  /**
   * A volume copied from a snapshot or a volume on this export (see the top
   * of this file): claim, a populating marker, the copy, the record, then
   * the marker removed. A retry finds the copy running (and waits again), or
   * after a restart the marker, and copies again from the start.
   */
  private async createFrom(key: string, record: VolumeRecord, content: ContentSource): Promise<boolean> {
    const subDir = record.subDir;
    if (!subDir) throw new Error('an NFS volume record needs its subDir');
    if (await this.read(key)) return false;
    const job = `volume/${key}`;
    if (!this.copies.has(job)) {
      const from = this.contentDir(content);
      await this.run('restore', async (c) => {
        const populating = await this.dir(c, POPULATING);
        const claimedBefore = await this.claim(c, subDir, key);
        const marked = await c.nfs.lookup(populating, key).then(
          () => true,
          () => false,
        );
        const parentPath = path.posix.dirname(subDir);
        const parent = parentPath === '.' ? c.root : await c.mkdirp(parentPath, 0o755);
        const name = path.posix.basename(subDir);
        const there = await c.nfs.lookup(parent, name).then(
          () => true,
          () => false,
        );
        if (there && !(claimedBefore && marked)) {
          if (!claimedBefore) await this.removeClaim(c, subDir);
          throw alreadyExists(`${subDir} already exists on ${this.where} and berth did not make it for this volume; choose another subDir`);
        }
        if (!marked) await c.writeFileAt(populating, key, record.volumeId, { mode: 0o600 });
        this.startCopy(job, async (signal) => {
          await this.run('restore', async (cc) => {
            await cc.removeTreeAt(parent, name); // an earlier attempt's partial copy
            const src = await cc.resolve(from);
            if (record.kind === 'share') await cc.copyTreeAt(src, parent, name, { parallel: COPY_PARALLEL, signal });
            else {
              const dir = (await cc.nfs.mkdir(parent, name, { mode: 0o755 })).fh ?? (await cc.nfs.lookup(parent, name)).fh;
              const image = await cc.nfs.lookup(src, NFS_IMAGE);
              await cc.copyFileAt(image.fh, dir, NFS_IMAGE, { parallel: COPY_PARALLEL, signal });
              const copied = await cc.nfs.lookup(dir, NFS_IMAGE);
              const size = (copied.attributes ?? (await cc.nfs.getattr(copied.fh))).size;
              if (size < record.capacityBytes) await cc.nfs.setattr(copied.fh, { size: record.capacityBytes });
            }
            await cc.writeFileAt(await this.records(cc), `${key}.json`, JSON.stringify(record), { mode: 0o600 });
            await cc.nfs.remove(populating, key).catch(() => undefined);
          });
        });
      });
    }
    await this.awaitCopy(job, `volume ${record.name} is still being copied on ${this.where}; it is created once the copy completes`);
    return true;
  }

  /** The directory on the share that holds a content source's bytes (the caller checked a snapshot is ready). */
  private contentDir(content: ContentSource): string {
    const subDir = content.record.subDir;
    if (!subDir) throw failedPrecondition(`the source's record on ${this.where} names no directory`);
    return subDir;
  }

  /** Runs a copy in the background, once per job. */
  private startCopy(job: string, copy: (signal: AbortSignal) => Promise<void>): void {
    const abort = new AbortController();
    const done = copy(abort.signal).finally(() => this.copies.delete(job));
    done.catch(() => undefined); // awaited by the callers; a failure is seen by the next one
    this.copies.set(job, { done, abort });
  }

  /** Waits up to copyWaitMs for a copy; ABORTED (retry later) when it is still running. */
  private async awaitCopy(job: string, stillRunning: string): Promise<void> {
    const running = this.copies.get(job);
    if (!running) return;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.copyWaitMs);
    });
    try {
      if ((await Promise.race([running.done, late])) === 'late') throw aborted(stillRunning);
    } finally {
      clearTimeout(timer);
    }
  }

  // -------------------------------------------------------------- snapshots

  async readSnapshot(key: string): Promise<SnapshotRecord | undefined> {
    return this.run('read snapshot', async (c) => {
      try {
        const text = (await c.readFileAt(await this.dir(c, SNAPSHOTS), `${key}.json`)).toString('utf8');
        return text ? (JSON.parse(text) as SnapshotRecord) : undefined;
      } catch (err) {
        if (isNfs(err, NFS3ERR.NOENT) || err instanceof SyntaxError) return undefined;
        throw err;
      }
    });
  }

  async listSnapshots(): Promise<string[]> {
    return this.run('list snapshots', async (c) => {
      await this.dir(c, SNAPSHOTS);
      const names = (await c.list(SNAPSHOTS)).map((e) => e.name).filter((n) => n.endsWith('.json'));
      return names.map((n) => n.slice(0, -'.json'.length)).sort();
    });
  }

  /**
   * Writes the snapshot's record (not ready) and starts its copy; the
   * record is rewritten ready once the copy is whole (see Pool). Nothing to
   * freeze over NFS.
   */
  async createSnapshot(key: string, record: SnapshotRecord, source: SnapshotSource) {
    const rec: SnapshotRecord = {
      ...record,
      readyToUse: false,
      method: 'nfs-copy',
      subDir: `${SNAPSHOT_DATA}/${key}`,
      sourceSubDir: this.contentDir({ volume: source.key, record: source.record }),
    };
    const made = await this.run('snapshot', async (c) => {
      try {
        await c.writeFileAt(await this.dir(c, SNAPSHOTS), `${key}.json`, JSON.stringify(rec), { mode: 0o600, exclusive: true });
        return true;
      } catch (err) {
        if (isNfs(err, NFS3ERR.EXIST)) return false;
        throw err;
      }
    });
    if (!made) return undefined;
    this.startSnapshotCopy(key, rec);
    return rec;
  }

  private startSnapshotCopy(key: string, rec: SnapshotRecord): void {
    const from = rec.sourceSubDir;
    if (!from) return;
    this.startCopy(`snapshot/${key}`, (signal) =>
      this.run('snapshot copy', async (c) => {
        const data = await this.dir(c, SNAPSHOT_DATA);
        await c.removeTreeAt(data, key); // an earlier attempt's partial copy
        const src = await c.resolve(from);
        if (rec.kind === 'share') await c.copyTreeAt(src, data, key, { parallel: COPY_PARALLEL, signal });
        else {
          const dir = (await c.nfs.mkdir(data, key, { mode: 0o700 })).fh ?? (await c.nfs.lookup(data, key)).fh;
          await c.copyFileAt((await c.nfs.lookup(src, NFS_IMAGE)).fh, dir, NFS_IMAGE, { parallel: COPY_PARALLEL, signal });
        }
        signal.throwIfAborted();
        const ready: SnapshotRecord = { ...rec, readyToUse: true };
        const tmp = `${SNAPSHOTS}/${key}.json.tmp-${process.pid}-${++this.sequence}`;
        await c.writeFile(tmp, JSON.stringify(ready), { mode: 0o600, exclusive: true });
        await c.rename(tmp, `${SNAPSHOTS}/${key}.json`);
      }),
    );
  }

  /**
   * The snapshot's record once its copy is done or copyWaitMs has passed; a
   * copy that is not running (the controller restarted) is started again.
   */
  async settleSnapshot(key: string, rec: SnapshotRecord, waitForIt = true): Promise<SnapshotRecord> {
    if (rec.readyToUse) return rec;
    const job = `snapshot/${key}`;
    if (!this.copies.has(job)) this.startSnapshotCopy(key, rec);
    if (!waitForIt) return rec;
    try {
      await this.awaitCopy(job, '');
    } catch (err) {
      if (err instanceof CsiError && err.code === Code.ABORTED) return rec;
      throw err;
    }
    return (await this.readSnapshot(key)) ?? rec;
  }

  /** Changed-block tracking reads images in place: not over NFS. */
  snapshotImagePath(): undefined {
    return undefined;
  }

  async changeProvisioning(): Promise<void> {
    throw invalid('mutable parameter "provisioning" applies to local block volumes only (NFS images are always thin)');
  }

  /** The controller does not see nodes' NFS mounts: the attachments in the record say where a volume is used. */
  async inUseHere(): Promise<string | undefined> {
    return undefined;
  }

  /** NFS has no freeze: a group's members are copied one after another. */
  async freezeVolumes(): Promise<() => Promise<void>> {
    return async () => undefined;
  }

  /** Removes a snapshot: a copy still running is stopped, the data removed, the record last. */
  async removeSnapshot(key: string): Promise<void> {
    const running = this.copies.get(`snapshot/${key}`);
    if (running) {
      running.abort.abort();
      await running.done.catch(() => undefined);
    }
    await this.run('delete snapshot', async (c) => {
      await c.removeTreeAt(await this.dir(c, SNAPSHOT_DATA), key);
      await c.nfs.remove(await this.dir(c, SNAPSHOTS), `${key}.json`).catch((err: unknown) => {
        if (!isNfs(err, NFS3ERR.NOENT)) throw err;
      });
    });
  }

  /**
   * Claims `subDir` for the volume `key`: a symbolic link in .berth/claims
   * named by the directory's hash, whose text is the key, made in one NFS
   * call (so it is never seen without its owner). Returns whether this
   * volume held the claim already (a retried create); ALREADY_EXISTS when
   * another volume holds it.
   */
  private async claim(c: NfsClient, subDir: string, key: string): Promise<boolean> {
    const claims = await this.claims(c);
    try {
      await c.nfs.symlink(claims, claimName(subDir), key);
      return false;
    } catch (err) {
      if (!isNfs(err, NFS3ERR.EXIST)) throw err;
    }
    const owner = await this.claimOwner(c, subDir);
    if (owner === key) return true;
    throw alreadyExists(`${subDir} on ${this.where} already belongs to another volume (${owner ?? 'unknown'}); choose another subDir`);
  }

  /** The key of the volume that holds `subDir`, or undefined when none does. */
  private async claimOwner(c: NfsClient, subDir: string): Promise<string | undefined> {
    try {
      return await c.readlinkAt(await this.claims(c), claimName(subDir));
    } catch (err) {
      if (isNfs(err, NFS3ERR.NOENT)) return undefined;
      throw err;
    }
  }

  private async removeClaim(c: NfsClient, subDir: string): Promise<void> {
    await c.nfs.remove(await this.claims(c), claimName(subDir)).catch((err: unknown) => {
      if (!isNfs(err, NFS3ERR.NOENT)) throw err;
    });
  }

  private claims(c: NfsClient): Promise<FileHandle> {
    return this.dir(c, CLAIMS);
  }

  async writeRecord(key: string, record: VolumeRecord): Promise<void> {
    await this.run('write record', async (c) => {
      const tmp = `${RECORDS}/${key}.json.tmp-${process.pid}-${++this.sequence}`;
      await c.writeFile(tmp, JSON.stringify(record), { mode: 0o600, exclusive: true });
      await c.rename(tmp, `${RECORDS}/${key}.json`);
    });
  }

  /**
   * Deletes by handles on cached directories: remove the data in place, then
   * the record. A crash part-way leaves the record, so DeleteVolume's retry
   * finds the volume and finishes. (No rename into a trash directory first:
   * nfs-ganesha answers about 1 % of RENAMEs only after a 1 s delay, and
   * DeleteVolume only runs on volumes nothing uses.)
   */
  async remove(key: string, record: VolumeRecord, mode: OnDelete): Promise<void> {
    await this.run('delete', async (c) => {
      const records = await this.records(c);
      const subDir = record.subDir;
      const owner = subDir ? await this.claimOwner(c, subDir) : undefined;
      if (subDir && (owner === key || (owner === undefined && (await this.unclaimedIsOurs(key, subDir))))) {
        const parentPath = path.posix.dirname(subDir);
        const parent = parentPath === '.' ? c.root : await c.resolve(parentPath).catch(() => undefined);
        const name = path.posix.basename(subDir);
        if (parent && mode === 'delete') await c.removeTreeAt(parent, name);
        if (parent && mode === 'archive') {
          const stamp = new Date().toISOString().replace(/[:.]/g, '-');
          await c.nfs.rename(parent, name, c.root, `archived-${subDir.replace(/\//g, '-')}-${stamp}`).catch((err: unknown) => {
            if (!isNfs(err, NFS3ERR.NOENT)) throw err;
          });
        }
        // retain: the directory stays where it is.
        if (owner === key && mode !== 'retain') await this.removeClaim(c, subDir);
      }
      await this.removeRecord(c, records, key);
    });
  }

  /**
   * For a directory nobody claims (a volume made before claims existed):
   * whether it is this volume's, that is, no other volume's record names it.
   */
  private async unclaimedIsOurs(key: string, subDir: string): Promise<boolean> {
    for (const other of await this.list()) {
      if (other !== key && (await this.read(other))?.subDir === subDir) return false;
    }
    return true;
  }

  private async removeRecord(c: NfsClient, records: FileHandle, key: string): Promise<void> {
    try {
      await c.nfs.remove(records, `${key}.json`);
    } catch (err) {
      if (!isNfs(err, NFS3ERR.NOENT)) throw err;
    }
  }

  async list(): Promise<string[]> {
    return this.run('list', async (c) => {
      await this.records(c);
      const names = (await c.list(RECORDS)).map((e) => e.name).filter((n) => n.endsWith('.json'));
      return names.map((n) => n.slice(0, -'.json'.length)).sort();
    });
  }

  async freeBytes(maxAgeMs = 0): Promise<number> {
    const now = Date.now();
    if (!this.free || now - this.free.at > maxAgeMs) {
      const st = await this.run('fsstat', (c) => c.fsstat());
      this.free = { bytes: st.availableBytes, at: now };
    }
    return this.free.bytes;
  }

  /** NFS images are thin (see parameters.ts): a new one must fit what the server has free now. */
  async doesNotFit(record: VolumeRecord): Promise<string | undefined> {
    const free = await this.freeBytes(250);
    return record.capacityBytes <= free ? undefined : `the NFS export ${this.where} has ${free} bytes free, ${record.capacityBytes} asked`;
  }

  async capacityFor(): Promise<number> {
    return this.freeBytes();
  }

  async problem(_key: string, record: VolumeRecord): Promise<string | undefined> {
    try {
      const attrs = await this.run('check', (c) =>
        c.stat(record.kind === 'block' ? `${record.subDir}/${NFS_IMAGE}` : (record.subDir ?? '')),
      );
      if (record.kind === 'share' && attrs.type !== FileType.DIR) return `${record.subDir} is not a directory`;
      if (record.kind === 'block' && attrs.size < record.capacityBytes)
        return `the image is ${attrs.size} bytes, smaller than the volume's ${record.capacityBytes}`;
      return undefined;
    } catch (err) {
      if (err instanceof CsiError && err.code === Code.UNAVAILABLE) return `the NFS server is unreachable: ${err.message}`;
      return `the volume's ${record.kind === 'share' ? 'directory' : 'image'} is missing on ${this.where}`;
    }
  }

  private readonly usageScan: CachedScan<PoolUsage>;

  /**
   * What the export holds (pool-usage.ts), from a scan at most a few seconds
   * old. An image's allocation is the server's own count (fattr3 `used`); a
   * share's would take a walk of its tree over the wire, so it is left unknown.
   */
  usage(): Promise<PoolUsage> {
    return this.usageScan.get();
  }

  private async scanUsage(): Promise<PoolUsage> {
    const st = await this.run('fsstat', (c) => c.fsstat());
    const allocated = async (rec: { kind: VolumeRecord['kind']; subDir?: string }) =>
      rec.kind === 'block' && rec.subDir
        ? this.run('usage', (c) => c.stat(`${rec.subDir}/${NFS_IMAGE}`)).then(
            (a) => a.used,
            () => 0, // gone while we scanned
          )
        : undefined;
    const kinds = emptyKinds();
    await forEachLimited(await this.list(), 16, async (key) => {
      const rec = await this.read(key);
      if (rec) addVolume(kinds, rec.kind, rec.capacityBytes, await allocated(rec));
    });
    const snapshots = await this.listSnapshots();
    const snapshotKinds = emptyKinds();
    await forEachLimited(snapshots, 16, async (key) => {
      const rec = await this.readSnapshot(key);
      if (rec) addVolume(snapshotKinds, rec.kind, rec.sizeBytes, await allocated(rec));
    });
    const { share, block } = snapshotKinds;
    const snapshotBytes =
      share.allocatedBytes === undefined || block.allocatedBytes === undefined ? undefined : share.allocatedBytes + block.allocatedBytes;
    return {
      totalBytes: st.totalBytes,
      freeBytes: st.availableBytes,
      kinds,
      snapshots: { count: snapshots.length, allocatedBytes: snapshotBytes },
    };
  }

  /** Whether the server answers a NULL call within `timeoutMs`, and how long it took. */
  async reachable(timeoutMs: number): Promise<{ reachable: boolean; seconds: number; error?: string }> {
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      await within(timeoutMs, `NFS server ${this.where}`, this.probe());
      return { reachable: true, seconds: seconds() };
    } catch (err) {
      return { reachable: false, seconds: seconds(), error: (err as Error).message };
    }
  }

  async growImage(_key: string, record: VolumeRecord, bytes: number): Promise<void> {
    const growth = bytes - record.capacityBytes;
    const free = await this.freeBytes();
    if (growth > free) throw exhausted(`the NFS export ${this.where} has ${free} bytes free, growing needs ${growth}`);
    await this.run('grow', async (c) => {
      const p = `${record.subDir}/${NFS_IMAGE}`;
      if ((await c.stat(p)).size < bytes) await c.truncate(p, bytes);
    });
  }
}
