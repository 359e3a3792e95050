// Where a volume's bytes are on this node, and whether a mount holds them.
// A local volume is found by its record in the pool; an NFS volume by its id
// and the volume_context the controller returned, checked by the same
// validator as the controller's. Whether a mount holds a volume is proved
// from the kernel's tables, so a call naming one volume never unmounts,
// detaches or reports another.
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { exists, type Host, loopBehind, loopDevice, type MountEntry } from '../host/index.js';
import { notFound } from '../volume/errors.js';
import type { LocalPoolLayout } from '../volume/local-layout.js';
import { NFS_FILESYSTEM_RECORD, NFS_IMAGE, nfsDevice } from '../volume/nfs.js';
import { decodeVolumeContext } from '../volume/volume-context.js';
import { parseVolumeId, type VolumeRef } from '../volume/volume-id.js';
import { requireAllowedMountedAt } from './kubelet-paths.js';
import type { NodeConfig } from './node-config.js';

/** Where a volume's bytes are reachable on this node. */
export type VolumeSource =
  | { kind: 'share'; bind: string }
  | { kind: 'share'; nfs: { device: string; options: readonly string[] } }
  | {
      kind: 'block';
      image: string;
      /** The size the image must have at least: its volume's, where the node knows it (local pools). */
      minBytes?: number;
      filesystemRecord: string;
      export?: { device: string; options: readonly string[]; mountPoint: string };
    };

export interface Located {
  ref: VolumeRef;
  kind: 'share' | 'block';
  fsType: string;
  volumeId: string;
  /** Undefined for an NFS volume when the call carries no volume_context. */
  source?: VolumeSource;
}

export class VolumeLocator {
  private readonly host: Host;

  constructor(private readonly cfg: NodeConfig) {
    this.host = cfg.host;
  }

  /** Local volumes are served only where their pool is (a local id on the NFS driver is another driver's). */
  get localPool(): LocalPoolLayout {
    if (!this.cfg.pool) throw notFound('node-local volumes are served by the local driver, not this one');
    return this.cfg.pool;
  }

  /**
   * A volume of the local pool is found by its record; an NFS volume by its
   * id and the volume_context the controller returned (server, share,
   * subDir; mountedAt when the export is pre-mounted on every node), checked
   * by the same validator as the controller's.
   */
  async locate(id: string, context?: Record<string, string>): Promise<Located> {
    const ref = parseVolumeId(id);
    if (ref?.pool === 'nfs') {
      if (!this.cfg.servesNfs) throw notFound(`volume ${id} is on an NFS pool: NFS volumes are served by the NFS driver, not this one`);
      const nfs = decodeVolumeContext(context, ref);
      const located: Located = { ref, kind: ref.kind, fsType: nfs?.fsType ?? '', volumeId: id };
      if (nfs?.pool !== 'nfs') return located;
      if (nfs.mountedAt) {
        // volume_context is untrusted: mountedAt must be where this node's operator pre-mounts exports.
        const base = await requireAllowedMountedAt(path.join(nfs.mountedAt, nfs.subDir), this.cfg.mountedAtDirs);
        located.source =
          ref.kind === 'share'
            ? { kind: 'share', bind: base }
            : { kind: 'block', image: path.join(base, NFS_IMAGE), filesystemRecord: path.join(base, NFS_FILESYSTEM_RECORD) };
      } else if (ref.kind === 'share') {
        located.source = { kind: 'share', nfs: { device: nfsDevice(nfs.server, nfs.share, nfs.subDir), options: nfs.mountOptions } };
      } else {
        const device = nfsDevice(nfs.server, nfs.share);
        const mountPoint = this.exportMountPoint(device);
        located.source = {
          kind: 'block',
          image: path.join(mountPoint, nfs.subDir, NFS_IMAGE),
          filesystemRecord: path.join(mountPoint, nfs.subDir, NFS_FILESYSTEM_RECORD),
          export: { device, options: nfs.mountOptions, mountPoint },
        };
      }
      return located;
    }
    const rec = ref ? await this.localPool.read(ref.dirName) : undefined;
    if (!ref || !rec || rec.volumeId !== id) throw notFound(`volume ${id} does not exist in the local pool of ${this.cfg.nodeId}`);
    const source: VolumeSource =
      rec.kind === 'share'
        ? { kind: 'share', bind: this.localPool.dataDir(ref.dirName) }
        : {
            kind: 'block',
            image: this.localPool.imagePath(ref.dirName),
            minBytes: rec.capacityBytes,
            filesystemRecord: this.localPool.filesystemRecordPath(ref.dirName),
          };
    return { ref, kind: rec.kind, fsType: rec.fsType, volumeId: id, source };
  }

  /** Where this node mounts an NFS export that holds block images. */
  exportMountPoint(device: string): string {
    return path.join(this.cfg.nfsMountDir, createHash('sha256').update(device).digest('hex').slice(0, 16));
  }

  /**
   * Whether the mount `entry` at `at` shows the volume `ref`, proved from the
   * kernel's tables (the loop device's image, the bound directory's inode,
   * the NFS mount's source), so a call naming one volume never unmounts,
   * detaches or reports another.
   */
  async holds(ref: VolumeRef, entry: MountEntry, at: string): Promise<boolean> {
    if (ref.kind === 'block') {
      const device = loopBehind(entry);
      if (!device) return false;
      const loop = await loopDevice(this.host, device);
      if (!loop) return true; // a loop device detached under its mount holds no volume's bytes: safe to undo
      if (ref.pool === 'local') return loop.backingFile === this.localPool.imagePath(ref.dirName);
      if (path.basename(loop.backingFile) !== NFS_IMAGE) return false;
      const under = (dir: string) => loop.backingFile.startsWith(`${dir}/`);
      return under(this.exportMountPoint(nfsDevice(ref.server, ref.share))) || (await this.mountedAtDirs()).some(under);
    }
    if (ref.pool === 'local') {
      const dir = this.localPool.dataDir(ref.dirName);
      return (await exists(dir)) && this.host.sameFile(at, dir);
    }
    // An NFS mount shows its export in its source (server:/share/subDir).
    const device = nfsDevice(ref.server, ref.share);
    if (entry.source === device || entry.source.startsWith(ref.share === '/' ? device : `${device}/`)) return true;
    // A bind of a directory of a pre-mounted export.
    return (await this.mountedAtDirs()).some((dir) => entry.fsroot === dir || entry.fsroot.startsWith(`${dir}/`));
  }

  /**
   * The directories pre-mounted exports may be under, as given and without
   * symbolic links: the kernel shows a loop device's image and a bind's root
   * by their real paths, and an operator may name a link to the mount.
   */
  private async mountedAtDirs(): Promise<string[]> {
    const real = await Promise.all(this.cfg.mountedAtDirs.map((d) => fs.realpath(d).catch(() => d)));
    return [...new Set([...this.cfg.mountedAtDirs, ...real])];
  }
}
