// berth/nfs: a non-attachable driver that mounts server:/share[/subDir] at
// the pod's volume directory. It serves the option shape legacy NFS
// FlexVolume PVs already use ({server, share}), plus subDir, mountOptions
// and read-only from kubernetes.io/readwrite.
import fs from 'node:fs/promises';
import path from 'node:path';
import { isMountPoint, mount, NFS_MOUNT_TIMEOUT_MS, unmount, unsafeMountOption } from '../driver/toolkit/index.js';
import { FlexFailure, fsGroup, notSupported, readOnly, required, secrets, success, type FlexOptions, type Reply } from './protocol.js';

/** The mount(8) argv for an NFS volume; exported so it can be checked exactly. */
export function nfsMountArgs(opts: FlexOptions): { source: string; options: string[] } {
  const server = required(opts, 'server');
  if (!/^[A-Za-z0-9.:[\]-]+$/.test(server)) throw new FlexFailure(`server "${server}" is not a host name or address`);
  const share = `/${required(opts, 'share').replace(/^\/+/, '')}`.replace(/\/+$/, '') || '/';
  const subDir = (opts.subDir ?? '').replace(/^\/+|\/+$/g, '');
  for (const part of [...share.split('/'), ...subDir.split('/')]) {
    if (part === '..' || part.includes('\0')) throw new FlexFailure('share and subDir may not contain ".." or NUL');
  }
  const options = (opts.mountOptions ?? '').split(',').map((o) => o.trim()).filter(Boolean);
  const bad = unsafeMountOption(options);
  if (bad !== undefined) throw new FlexFailure(`mount option "${bad}" holds a character that is not allowed`);
  if (readOnly(opts) && !options.includes('ro')) options.push('ro');
  const source = `${server}:${subDir ? path.posix.join(share, subDir) : share}`;
  return { source, options };
}

export async function nfsCommand(command: string, args: string[], parse: (json: string | undefined) => FlexOptions): Promise<Reply> {
  switch (command) {
    case 'init':
      return success({ capabilities: { attach: false, selinuxRelabel: true, fsGroup: false, requiresFSResize: false, supportsMetrics: false } });
    case 'mount': {
      const dir = args[0];
      if (!dir) throw new FlexFailure('mount needs the pod volume directory');
      const opts = parse(args[1]);
      secrets(opts); // validated; NFS with sec=sys has no use for them
      const { source, options } = nfsMountArgs(opts);
      if (await isMountPoint(dir)) return success();
      await fs.mkdir(dir, { recursive: true, mode: 0o750 });
      await mount(source, dir, { fstype: 'nfs', options, timeoutMs: NFS_MOUNT_TIMEOUT_MS });
      const group = fsGroup(opts);
      if (group !== undefined && !readOnly(opts)) {
        // fsGroup is applied here (capability fsGroup: false): the root of
        // the share joins the group and keeps it for new files.
        await fs.chown(dir, -1, group);
        await fs.chmod(dir, ((await fs.stat(dir)).mode & 0o7777) | 0o2070);
      }
      return success();
    }
    case 'unmount': {
      const dir = args[0];
      if (!dir) throw new FlexFailure('unmount needs the pod volume directory');
      if (await isMountPoint(dir)) await unmount(dir);
      return success();
    }
    default:
      return notSupported(command);
  }
}
