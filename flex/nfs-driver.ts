// berth/nfs: a non-attachable driver that mounts server:/share[/subDir] at
// the pod's volume directory. It serves the option shape legacy NFS
// FlexVolume PVs already use ({server, share}), plus subDir, mountOptions
// and read-only from kubernetes.io/readwrite.
import fs from 'node:fs/promises';
import { type Host, mountAt, NFS_MOUNT_TIMEOUT_MS } from '../host/index.js';
import { layeredMountOptions, nfsDevice, nfsVolumeSource } from '../volume/nfs.js';
import { FlexFailure, type FlexOptions, fsGroup, notSupported, type Reply, readOnly, required, secrets, success } from './protocol.js';

/**
 * The mount(8) source and options for an NFS volume, checked by the same
 * validator as the CSI controller and node; exported so it can be checked
 * exactly. Legacy PVs name the share without its leading "/" (`share: export`).
 */
export function nfsMountArgs(opts: FlexOptions): { source: string; options: string[] } {
  required(opts, 'server');
  required(opts, 'share');
  const share = opts.share && !opts.share.startsWith('/') ? `/${opts.share}` : opts.share;
  const nfs = nfsVolumeSource({ server: opts.server, share, subDir: opts.subDir, mountOptions: opts.mountOptions }, { allowRoot: true });
  const options = layeredMountOptions(nfs.mountOptions, readOnly(opts) ? ['ro'] : []);
  return { source: nfsDevice(nfs.server, nfs.share, nfs.subDir), options };
}

export async function nfsCommand(
  host: Host,
  command: string,
  args: string[],
  parse: (json: string | undefined) => FlexOptions,
): Promise<Reply> {
  switch (command) {
    case 'init':
      return success({
        capabilities: { attach: false, selinuxRelabel: true, fsGroup: false, requiresFSResize: false, supportsMetrics: false },
      });
    case 'mount': {
      const dir = args[0];
      if (!dir) throw new FlexFailure('mount needs the pod volume directory');
      const opts = parse(args[1]);
      secrets(opts); // validated; NFS with sec=sys has no use for them
      const { source, options } = nfsMountArgs(opts);
      if (await mountAt(host, dir)) return success();
      await fs.mkdir(dir, { recursive: true, mode: 0o750 });
      await host.mount(source, dir, { fstype: 'nfs', options, timeoutMs: NFS_MOUNT_TIMEOUT_MS });
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
      if (await mountAt(host, dir)) await host.unmount(dir);
      return success();
    }
    default:
      return notSupported(command);
  }
}
