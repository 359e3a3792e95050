// berth/block: an attachable driver for sparse images in a local pool or a
// pre-mounted export. attach/isattached/detach keep the attachment record;
// waitforattach attaches the loop device; mountdevice formats only when
// blank and mounts at the device mount path; unmountdevice unmounts and
// detaches; mount/unmount answer "Not supported" so the kubelet bind-mounts
// from the device mount path itself; expandvolume/expandfs grow it.
//
// Where records live: the attachment itself is recorded in the pool
// (<pool>/.flex/attachments/<image>.json), and so is the filesystem berth
// made or mounted on an image (<pool>/.flex/filesystems/<image>.json: from
// then on the image is never formatted again), where every host that sees the
// pool sees it. detach is given only the volume name, so the host that ran
// attach also keeps name → {pool, image} in its state directory.
import fs from 'node:fs/promises';
import path from 'node:path';
import {
  attachImage,
  exists,
  ForeignContentError,
  filesystemSmallerThan,
  formatOnceAndMount,
  type Host,
  ImageRefusedError,
  loopDevice,
  loopDevicesOf,
  mountAt,
  mountsOfDevice,
  writeFileDurable,
} from '../host/index.js';
import { FS_TYPES } from '../volume/capabilities.js';
import { parseQuantity } from '../volume/quantity.js';
import {
  FlexFailure,
  type FlexOptions,
  FS_TYPE,
  notSupported,
  PV_NAME,
  type Reply,
  readOnly,
  required,
  secrets,
  success,
} from './protocol.js';

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

export interface BlockConfig {
  /** Host-local state: volume name → where its attachment record lives. */
  stateDir: string;
  host: Host;
}

interface Volume {
  pool: string;
  image: string;
  imagePath: string;
  fsType: string;
  size: number;
}

/** The image size, in whole 512-byte sectors. */
function parseSize(text: string | undefined): number {
  if (!text) return 0;
  try {
    return Math.ceil(parseQuantity(text) / 512) * 512;
  } catch (err) {
    throw new FlexFailure((err as Error).message);
  }
}

function volumeOf(opts: FlexOptions): Volume {
  const pool = required(opts, 'pool');
  if (!path.isAbsolute(pool) || path.normalize(pool) !== pool.replace(/\/+$/, ''))
    throw new FlexFailure(`pool "${pool}" must be an absolute, normalised path`);
  const image = required(opts, 'image');
  if (!SAFE_NAME.test(image)) throw new FlexFailure(`image "${image}" must be a plain file name`);
  const fsType = opts[FS_TYPE] || opts.fsType || 'ext4';
  if (!(FS_TYPES as readonly string[]).includes(fsType))
    throw new FlexFailure(`filesystem "${fsType}" is not supported (use ${FS_TYPES.join(', ')})`);
  return { pool, image, imagePath: path.join(pool, `${image}.img`), fsType, size: parseSize(opts.size) };
}

/**
 * The volume with its pool named without symbolic links (an operator may
 * link the pool's directory), so its image path is the one the kernel
 * shows for its loop device, and attachImage can refuse an image reached
 * through a link inside the pool.
 */
async function canonical(v: Volume): Promise<Volume> {
  const pool = await fs.realpath(v.pool).catch(() => v.pool);
  return { ...v, pool, imagePath: path.join(pool, `${v.image}.img`) };
}

export class BlockDriver {
  private readonly host: Host;

  constructor(private readonly cfg: BlockConfig) {
    this.host = cfg.host;
  }

  private recordPath(v: Volume): string {
    return path.join(v.pool, '.flex', 'attachments', `${v.image}.json`);
  }

  private indexPath(name: string): string {
    if (!SAFE_NAME.test(name)) throw new FlexFailure(`volume name "${name}" is not a plain name`);
    return path.join(this.cfg.stateDir, `${name}.json`);
  }

  private async readRecord(v: Volume): Promise<{ node: string } | undefined> {
    try {
      return JSON.parse(await fs.readFile(this.recordPath(v), 'utf8')) as { node: string };
    } catch {
      return undefined;
    }
  }

  async run(command: string, args: string[], parse: (json: string | undefined) => FlexOptions): Promise<Reply> {
    switch (command) {
      case 'init':
        return success({
          capabilities: { attach: true, selinuxRelabel: true, fsGroup: true, requiresFSResize: true, supportsMetrics: false },
        });
      case 'attach':
        return this.attach(parse(args[0]), args[1]);
      case 'isattached': {
        const v = volumeOf(parse(args[0]));
        const rec = await this.readRecord(v);
        return success({ attached: rec?.node === args[1] });
      }
      case 'detach':
        return this.detach(args[0], args[1]);
      case 'waitforattach':
        return this.waitForAttach(parse(args[1]));
      case 'mountdevice':
        return this.mountDevice(args[0], args[1], parse(args[2]));
      case 'unmountdevice':
        return this.unmountDevice(args[0]);
      case 'expandvolume':
        return this.expandVolume(parse(args[0]), args[2]);
      case 'expandfs':
        return this.expandFs(parse(args[0]), args[2], args[3]);
      default:
        return notSupported(command); // getvolumename, mount, unmount: the kubelet does these itself
    }
  }

  private async attach(opts: FlexOptions, node: string | undefined): Promise<Reply> {
    if (!node) throw new FlexFailure('attach needs the node name');
    const v = volumeOf(opts);
    const rec = await this.readRecord(v);
    if (rec && rec.node !== node) throw new FlexFailure(`${v.image} is attached to node ${rec.node}`);
    await fs.mkdir(path.dirname(this.recordPath(v)), { recursive: true, mode: 0o700 });
    await writeFileDurable(this.recordPath(v), JSON.stringify({ node }));
    const name = opts[PV_NAME];
    if (name) {
      await fs.mkdir(this.cfg.stateDir, { recursive: true, mode: 0o700 });
      await writeFileDurable(this.indexPath(name), JSON.stringify({ pool: v.pool, image: v.image }));
    }
    return success({ device: v.imagePath });
  }

  private async detach(name: string | undefined, node: string | undefined): Promise<Reply> {
    if (!name) throw new FlexFailure('detach needs the volume name');
    let where: { pool: string; image: string };
    try {
      where = JSON.parse(await fs.readFile(this.indexPath(name), 'utf8')) as { pool: string; image: string };
    } catch {
      return success(); // never attached from this host: nothing to undo
    }
    const v = volumeOf({ pool: where.pool, image: where.image });
    const rec = await this.readRecord(v);
    if (rec && (!node || rec.node === node)) await fs.rm(this.recordPath(v), { force: true });
    await fs.rm(this.indexPath(name), { force: true });
    return success();
  }

  private async waitForAttach(opts: FlexOptions): Promise<Reply> {
    const v = await canonical(volumeOf(opts));
    secrets(opts);
    if (!(await exists(v.imagePath))) {
      if (!v.size) throw new FlexFailure(`image ${v.imagePath} does not exist and no size was given to create it`);
      const handle = await fs.open(v.imagePath, 'wx', 0o600);
      try {
        await handle.truncate(v.size); // sparse
        await handle.sync();
      } finally {
        await handle.close();
      }
    }
    try {
      return success({ device: await attachImage(this.host, v.imagePath, { minBytes: v.size ?? 1 }) });
    } catch (err) {
      if (err instanceof ImageRefusedError) throw new FlexFailure(err.message);
      throw err;
    }
  }

  private async mountDevice(target: string | undefined, device: string | undefined, opts: FlexOptions): Promise<Reply> {
    if (!target || !device) throw new FlexFailure('mountdevice needs the device mount path and the device');
    const v = await canonical(volumeOf(opts));
    const loop = await loopDevice(this.host, device);
    if (loop?.backingFile !== v.imagePath) throw new FlexFailure(`${device} is not attached to ${v.imagePath}`);
    const current = await mountAt(this.host, target);
    if (current) {
      if (current.source === device) return success();
      throw new FlexFailure(`${target} already has ${current.source} mounted`);
    }
    await fs.mkdir(target, { recursive: true, mode: 0o750 });
    try {
      await formatOnceAndMount(this.host, device, target, v.fsType, [], {
        recordPath: path.join(v.pool, '.flex', 'filesystems', `${v.image}.json`),
        image: v.imagePath,
        readonly: readOnly(opts),
      });
    } catch (err) {
      // Leave nothing attached: the kubelet retries from waitforattach.
      if (mountsOfDevice(await this.host.readMounts(), device).length === 0) await this.host.detachLoop(device).catch(() => undefined);
      if (err instanceof ForeignContentError) throw new FlexFailure(err.message);
      throw err;
    }
    // fsGroup: the kubelet applies it itself after its bind mount (capability fsGroup: true).
    return success();
  }

  private async unmountDevice(target: string | undefined): Promise<Reply> {
    if (!target) throw new FlexFailure('unmountdevice needs the device mount path');
    const entry = await mountAt(this.host, target);
    if (!entry) return success();
    await this.host.unmount(target);
    if (entry.source.startsWith('/dev/loop') && mountsOfDevice(await this.host.readMounts(), entry.source).length === 0)
      await this.host.detachLoop(entry.source);
    return success();
  }

  private async expandVolume(opts: FlexOptions, newBytes: string | undefined): Promise<Reply> {
    const v = volumeOf(opts);
    const bytes = Number(newBytes);
    if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new FlexFailure('expandvolume needs the new size in bytes');
    const handle = await fs.open(v.imagePath, 'r+');
    try {
      if ((await handle.stat()).size < bytes) {
        await handle.truncate(Math.ceil(bytes / 512) * 512);
        await handle.sync();
      }
    } finally {
      await handle.close();
    }
    return success();
  }

  private async expandFs(opts: FlexOptions, target: string | undefined, newBytes: string | undefined): Promise<Reply> {
    const v = volumeOf(opts);
    if (!target) throw new FlexFailure('expandfs needs the device mount path');
    const [loop] = await loopDevicesOf(this.host, v.imagePath);
    if (!loop) throw new FlexFailure(`${v.imagePath} is not attached`);
    await this.host.refreshLoopSize(loop.device);
    const size = await this.host.deviceSize(loop.device);
    if (Number(newBytes) > size) throw new FlexFailure(`the image is ${size} bytes, fewer than ${newBytes}: run expandvolume first`);
    if (await filesystemSmallerThan(this.host, size, v.fsType, loop.device, target))
      await this.host.growMounted(v.fsType, loop.device, target);
    return success();
  }
}
