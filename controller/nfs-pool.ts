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
// This file holds the decisions (claims, adoption of what an interrupted
// attempt left, copies, capacity); what is on the export is reached through
// the export store (nfs-export-store.ts), and copies run as CopyJobs.
//
// Snapshots, restores and clones are copies made by the controller over
// NFS (no mount): sparse (zero chunks are not written), several READs and
// WRITEs in flight. A copy that outlasts copyWaitMs goes on in the
// background: a snapshot answers readyToUse false meanwhile, a volume
// ABORTED (the provisioner retries). After a restart, the next call that
// looks at the snapshot or volume starts the copy again.
//
// A create costs four NFS calls (SYMLINK of the claim, MKDIR, CREATE and
// WRITE of the record), and two more (LOOKUP, READLINK) per directory above its
// subDir (no volume is made inside another's); a share delete nine (block
// ten), on cached directory handles; a server that goes away mid-call gives UNAVAILABLE,
// and the retry adopts what the failed attempt made, so nothing half-made
// remains. Two volumes can never share a directory: the claim is made
// first, and a delete removes data only while its claim names the volume.
import path from 'node:path';
import { alreadyExists, Code, CsiError, exhausted, failedPrecondition, invalid } from '../volume/errors.js';
import { NFS_IMAGE } from '../volume/nfs.js';
import type { NfsLocation } from '../volume/parameters.js';
import type { OnDelete, SnapshotRecord, VolumeRecord } from '../volume/record.js';
import { CopyJobs } from './nfs-copies.js';
import type { ExportStore } from './nfs-export-store.js';
import type { ContentSource, Pool, SnapshotSource } from './pool.js';
import { addVolume, CachedScan, emptyKinds, forEachLimited, type PoolUsage, within } from './pool-usage.js';

const SNAPSHOT_DATA = '.berth/snapshot-data';
/** How old a usage scan a scrape may reuse, by default: a scan reads every record over the wire. */
const USAGE_MAX_AGE_MS = 10_000;

const imageOf = (subDir: string) => `${subDir}/${NFS_IMAGE}`;

export class NfsPool implements Pool {
  readonly type = 'nfs';
  private free: { bytes: number; at: number } | undefined;
  /** Copies running in this process, by `snapshot/<key>` or `volume/<key>`. */
  private readonly copies: CopyJobs;
  private readonly usageScan: CachedScan<PoolUsage>;

  constructor(
    readonly location: NfsLocation,
    private readonly store: ExportStore,
    copyWaitMs = 8_000,
    usageMaxAgeMs = USAGE_MAX_AGE_MS,
  ) {
    this.copies = new CopyJobs(copyWaitMs);
    this.usageScan = new CachedScan(() => this.scanUsage(), usageMaxAgeMs);
  }

  get where(): string {
    return this.store.where;
  }

  close(): void {
    this.store.close();
  }

  async probe(): Promise<void> {
    try {
      await this.store.ping();
    } catch (err) {
      throw failedPrecondition(`NFS server ${this.where} is not reachable: ${(err as Error).message}`);
    }
  }

  read(key: string): Promise<VolumeRecord | undefined> {
    return this.store.readRecord<VolumeRecord>('volumes', key);
  }

  async create(key: string, record: VolumeRecord, mountPermissions: number, content?: ContentSource): Promise<boolean> {
    if (content) return this.createFrom(key, record, content);
    const subDir = requireSubDir(record);
    // The directory belongs to exactly one volume: claim it first.
    const claimedBefore = await this.claim(subDir, key);
    if (!(await this.store.makeDir(subDir, mountPermissions))) {
      if (await this.read(key)) return false;
      // A directory without a record: adopt only what an interrupted
      // attempt of this volume left (it held the claim before this call;
      // the directory is empty, or holds just its image).
      const entries = await this.store.entries(subDir);
      const leftByUs = entries.length === 0 || (record.kind === 'block' && entries.length === 1 && entries[0] === NFS_IMAGE);
      if (!claimedBefore || !leftByUs) {
        if (!claimedBefore) await this.store.removeClaim(subDir); // made by this call: ours to undo
        throw alreadyExists(`${subDir} already exists on ${this.where} and berth did not make it for this volume; choose another subDir`);
      }
    }
    if (record.kind === 'block' && !(await this.store.createImage(imageOf(subDir), record.capacityBytes))) {
      // Left by an interrupted attempt of this volume (the directory was adopted above).
      if ((await this.store.stat(imageOf(subDir))).size !== record.capacityBytes)
        await this.store.setSize(imageOf(subDir), record.capacityBytes);
    }
    // The record, last: a volume exists once its record does.
    if (await this.store.addRecord('volumes', key, record)) return true;
    if (await this.read(key)) return false;
    await this.store.overwriteRecord('volumes', key, record); // half-written by an interrupted attempt
    return true;
  }

  /**
   * A volume copied from a snapshot or a volume on this export (see the top
   * of this file): claim, a populating marker, the copy, the record, then
   * the marker removed. A retry finds the copy running (and waits again), or
   * after a restart the marker, and copies again from the start.
   */
  private async createFrom(key: string, record: VolumeRecord, content: ContentSource): Promise<boolean> {
    const subDir = requireSubDir(record);
    if (await this.read(key)) return false;
    const job = `volume/${key}`;
    if (!this.copies.has(job)) {
      const from = this.contentDir(content);
      const claimedBefore = await this.claim(subDir, key);
      const marked = await this.store.isPopulating(key);
      if ((await this.store.exists(subDir)) && !(claimedBefore && marked)) {
        if (!claimedBefore) await this.store.removeClaim(subDir);
        throw alreadyExists(`${subDir} already exists on ${this.where} and berth did not make it for this volume; choose another subDir`);
      }
      if (!marked) await this.store.markPopulating(key, record.volumeId);
      this.copies.start(job, async (signal) => {
        await this.store.removeTree(subDir); // an earlier attempt's partial copy
        if (record.kind === 'share') await this.store.copyTree(from, subDir, signal);
        else {
          await this.store.makeDir(subDir, 0o755);
          await this.store.copyFile(imageOf(from), imageOf(subDir), signal);
          if ((await this.store.stat(imageOf(subDir))).size < record.capacityBytes)
            await this.store.setSize(imageOf(subDir), record.capacityBytes);
        }
        await this.store.overwriteRecord('volumes', key, record);
        await this.store.unmarkPopulating(key);
      });
    }
    await this.copies.wait(job, `volume ${record.name} is still being copied on ${this.where}; it is created once the copy completes`);
    return true;
  }

  /** The directory on the share that holds a content source's bytes (the caller checked a snapshot is ready). */
  private contentDir(content: ContentSource): string {
    const subDir = content.record.subDir;
    if (!subDir) throw failedPrecondition(`the source's record on ${this.where} names no directory`);
    return subDir;
  }

  /**
   * Claims `subDir` for the volume `key` (a claim is made in one NFS call,
   * so it is never seen without its owner). Returns whether this volume
   * held the claim already (a retried create); ALREADY_EXISTS when another
   * volume holds it.
   */
  private async claim(subDir: string, key: string): Promise<boolean> {
    // Never inside another volume: its delete would remove this one with it.
    for (let up = path.posix.dirname(subDir); up !== '.'; up = path.posix.dirname(up)) {
      const outer = await this.store.claimOwner(up);
      if (outer !== undefined && outer !== key)
        throw alreadyExists(
          `${subDir} on ${this.where} is inside ${up}, the directory of another volume (${outer}); choose another subDir`,
        );
    }
    if (await this.store.addClaim(subDir, key)) return false;
    const owner = await this.store.claimOwner(subDir);
    if (owner === key) return true;
    throw alreadyExists(`${subDir} on ${this.where} already belongs to another volume (${owner ?? 'unknown'}); choose another subDir`);
  }

  // -------------------------------------------------------------- snapshots

  readSnapshot(key: string): Promise<SnapshotRecord | undefined> {
    return this.store.readRecord<SnapshotRecord>('snapshots', key);
  }

  listSnapshots(): Promise<string[]> {
    return this.store.listRecords('snapshots');
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
    if (!(await this.store.addRecord('snapshots', key, rec))) return undefined;
    this.startSnapshotCopy(key, rec);
    return rec;
  }

  private startSnapshotCopy(key: string, rec: SnapshotRecord): void {
    const from = rec.sourceSubDir;
    if (!from) return;
    const data = `${SNAPSHOT_DATA}/${key}`;
    this.copies.start(`snapshot/${key}`, async (signal) => {
      await this.store.removeTree(data); // an earlier attempt's partial copy
      if (rec.kind === 'share') await this.store.copyTree(from, data, signal);
      else {
        await this.store.makeDir(data, 0o700);
        await this.store.copyFile(imageOf(from), imageOf(data), signal);
      }
      signal.throwIfAborted();
      await this.store.replaceRecord('snapshots', key, { ...rec, readyToUse: true });
    });
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
      await this.copies.wait(job, '');
    } catch (err) {
      if (err instanceof CsiError && err.code === Code.ABORTED) return rec;
      throw err;
    }
    return (await this.readSnapshot(key)) ?? rec;
  }

  /** Removes a snapshot: a copy still running is stopped, the data removed, the record last. */
  async removeSnapshot(key: string): Promise<void> {
    await this.copies.stop(`snapshot/${key}`);
    await this.store.removeTree(`${SNAPSHOT_DATA}/${key}`);
    await this.store.removeRecord('snapshots', key);
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

  // ---------------------------------------------------------------- volumes

  writeRecord(key: string, record: VolumeRecord): Promise<void> {
    return this.store.replaceRecord('volumes', key, record);
  }

  /**
   * Removes the data in place, then the record. A crash part-way leaves the
   * record, so DeleteVolume's retry finds the volume and finishes. (No
   * rename into a trash directory first: nfs-ganesha answers about 1 % of
   * RENAMEs only after a 1 s delay, and DeleteVolume only runs on volumes
   * nothing uses.)
   */
  async remove(key: string, record: VolumeRecord, mode: OnDelete): Promise<void> {
    const subDir = record.subDir;
    const owner = subDir ? await this.store.claimOwner(subDir) : undefined;
    if (subDir && (owner === key || (owner === undefined && (await this.unclaimedIsOurs(key, subDir))))) {
      if (mode === 'delete') await this.store.removeTree(subDir);
      if (mode === 'archive') {
        const stamp = new Date().toISOString().replace(/[:.]/g, '-');
        await this.store.moveToRoot(subDir, `archived-${subDir.replace(/\//g, '-')}-${stamp}`);
      }
      // retain: the directory stays where it is.
      if (owner === key && mode !== 'retain') await this.store.removeClaim(subDir);
    }
    await this.store.removeRecord('volumes', key);
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

  list(): Promise<string[]> {
    return this.store.listRecords('volumes');
  }

  async growImage(_key: string, record: VolumeRecord, bytes: number): Promise<void> {
    const growth = bytes - record.capacityBytes;
    const free = await this.freeBytes();
    if (growth > free) throw exhausted(`the NFS export ${this.where} has ${free} bytes free, growing needs ${growth}`);
    const image = imageOf(requireSubDir(record));
    if ((await this.store.stat(image)).size < bytes) await this.store.setSize(image, bytes);
  }

  async problem(_key: string, record: VolumeRecord): Promise<string | undefined> {
    try {
      const attrs = await this.store.stat(record.kind === 'block' ? imageOf(record.subDir ?? '') : (record.subDir ?? ''));
      if (record.kind === 'share' && attrs.type !== 'directory') return `${record.subDir} is not a directory`;
      if (record.kind === 'block' && attrs.size < record.capacityBytes)
        return `the image is ${attrs.size} bytes, smaller than the volume's ${record.capacityBytes}`;
      return undefined;
    } catch (err) {
      if (err instanceof CsiError && err.code === Code.UNAVAILABLE) return `the NFS server is unreachable: ${err.message}`;
      return `the volume's ${record.kind === 'share' ? 'directory' : 'image'} is missing on ${this.where}`;
    }
  }

  // --------------------------------------------------------------- capacity

  async freeBytes(maxAgeMs = 0): Promise<number> {
    const now = Date.now();
    if (!this.free || now - this.free.at > maxAgeMs) this.free = { bytes: (await this.store.capacity()).availableBytes, at: now };
    return this.free.bytes;
  }

  /** NFS images are thin (see parameters.ts): a new one must fit what the server has free now. */
  async doesNotFit(record: VolumeRecord): Promise<string | undefined> {
    const free = await this.freeBytes(250);
    return record.capacityBytes <= free ? undefined : `the NFS export ${this.where} has ${free} bytes free, ${record.capacityBytes} asked`;
  }

  capacityFor(): Promise<number> {
    return this.freeBytes();
  }

  /**
   * What the export holds (pool-usage.ts), from a scan at most a few seconds
   * old. An image's allocation is the server's own count (fattr3 `used`); a
   * share's would take a walk of its tree over the wire, so it is left unknown.
   */
  usage(): Promise<PoolUsage> {
    return this.usageScan.get();
  }

  private async scanUsage(): Promise<PoolUsage> {
    const st = await this.store.capacity();
    const allocated = async (rec: { kind: VolumeRecord['kind']; subDir?: string }) =>
      rec.kind === 'block' && rec.subDir
        ? this.store.stat(imageOf(rec.subDir)).then(
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
}

function requireSubDir(record: VolumeRecord): string {
  if (!record.subDir) throw new Error('an NFS volume record needs its subDir');
  return record.subDir;
}
