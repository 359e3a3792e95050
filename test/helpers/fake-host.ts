// A Host that keeps the mount and loop tables in memory and records every
// call (after kubernetes/mount-utils' FakeMounter), so the node service's
// decisions are tested without root, devices or mounts. Files and
// directories (images, staging and target paths) are real, in a temporary
// directory; only what needs privilege is played here.
import fs from 'node:fs/promises';
import path from 'node:path';
import {
  BusyError,
  CommandError,
  type DeviceContent,
  type Host,
  type LoopDevice,
  type MountEntry,
  type MountOptions,
  type Superblock,
  topMount,
} from '../../host/index.js';

/** What a fake device holds: keyed by its image's path, so it survives detach and attach. */
interface ImageState {
  content: DeviceContent;
  /** The filesystem's size when there is one. */
  fsBytes: number;
}

export class FakeHost implements Host {
  readonly mounts: MountEntry[] = [];
  readonly loops: LoopDevice[] = [];
  readonly images = new Map<string, ImageState>();
  /** Every mutating call, as a short line (`mount -t ext4 /dev/loop0 /x`, `mkfs ext4 /dev/loop0`...). */
  readonly calls: string[] = [];
  /** Targets whose unmount fails as busy. */
  readonly busy = new Set<string>();
  /** Targets whose stat fails with ESTALE (until unmounted). */
  readonly stale = new Set<string>();
  /**
   * NFS sources whose directory was recreated on the server while another
   * mount of that server is cached: a mount of them is stale again unless it
   * has a cache of its own (`nosharecache`).
   */
  readonly staleInSharedCache = new Set<string>();
  /** Images holding written data (for the extent check). */
  readonly withData = new Set<string>();
  /** Sources whose mount fails, with the stderr mount(8) would print. */
  readonly mountFailures = new Map<string, string>();
  private nextLoop = 0;

  private record(line: string): void {
    this.calls.push(line);
  }

  /** What is in `image` as a device would show it (blank unless set). */
  image(image: string): ImageState {
    let state = this.images.get(image);
    if (!state) {
      state = { content: { state: 'blank' }, fsBytes: 0 };
      this.images.set(image, state);
    }
    return state;
  }

  private backing(device: string): string {
    const loop = this.loops.find((l) => l.device === device);
    if (!loop) throw new CommandError('fake', [device], 1, `${device}: no such device`, '', false);
    return loop.backingFile;
  }

  async readMounts(): Promise<MountEntry[]> {
    return this.mounts.map((m) => ({ ...m, options: [...m.options] }));
  }

  async mount(source: string, target: string, opts: MountOptions = {}): Promise<void> {
    this.record(`mount -t ${opts.fstype ?? '?'}${opts.options?.length ? ` -o ${opts.options.join(',')}` : ''} ${source} ${target}`);
    const failure = this.mountFailures.get(source);
    if (failure !== undefined) throw new CommandError('mount', ['-o', '<redacted>', '--', source, target], 32, failure, '', false);
    if (this.staleInSharedCache.has(source) && !opts.options?.includes('nosharecache')) this.stale.add(path.resolve(target));
    if (source.startsWith('/dev/loop')) {
      const content = this.image(this.backing(source)).content;
      if (content.state !== 'filesystem' || content.fsType !== opts.fstype) {
        throw new CommandError(
          'mount',
          ['--', source, target],
          32,
          `mount: ${target}: wrong fs type, bad option, bad superblock on ${source}`,
          '',
          false,
        );
      }
    }
    const ro = opts.options?.includes('ro') ? 'ro' : 'rw';
    this.mounts.push({ target: path.resolve(target), source, fstype: opts.fstype ?? 'none', options: [ro], fsroot: '/' });
  }

  async bindMount(source: string, target: string, readonly: boolean): Promise<void> {
    this.record(`bind${readonly ? ' ro' : ''} ${source} ${target}`);
    const options = [readonly ? 'ro' : 'rw'];
    const onTop = topMount(this.mounts, source);
    let entry: MountEntry;
    if (/^\/dev\/loop\d+$/.test(source))
      entry = { target, source: 'udev', fstype: 'devtmpfs', options, fsroot: `/${path.basename(source)}` };
    else if (onTop) entry = { ...onTop, target, options };
    else entry = { target, source: '/dev/vda', fstype: 'ext4', options, fsroot: path.resolve(source) };
    this.mounts.push({ ...entry, target: path.resolve(target) });
  }

  async unmount(target: string): Promise<void> {
    this.record(`umount ${target}`);
    if (this.busy.has(target)) throw new BusyError(target, 'target is busy.');
    const want = path.resolve(target);
    const i = this.mounts.map((m) => m.target).lastIndexOf(want);
    if (i < 0) throw new CommandError('umount', ['--', target], 32, `umount: ${target}: not mounted.`, '', false);
    this.mounts.splice(i, 1);
    this.stale.delete(want);
  }

  async readLoops(): Promise<LoopDevice[]> {
    return this.loops.map((l) => ({ ...l }));
  }

  async attachLoop(image: string, opts: { readOnly?: boolean } = {}): Promise<string> {
    await fs.access(image); // losetup fails on a missing file too
    const device = `/dev/loop${this.nextLoop++}`;
    this.record(`losetup${opts.readOnly ? ' -r' : ''} ${device} ${image}`);
    this.loops.push({ device, backingFile: path.resolve(image), backingDeleted: false, readOnly: opts.readOnly ?? false });
    return device;
  }

  async detachLoop(device: string): Promise<void> {
    this.record(`losetup -d ${device}`);
    const i = this.loops.findIndex((l) => l.device === device);
    if (i < 0) throw new CommandError('losetup', ['-d', device], 1, `${device}: detach failed: No such device`, '', false);
    this.loops.splice(i, 1);
  }

  async refreshLoopSize(device: string): Promise<void> {
    this.backing(device);
  }

  async deviceSize(device: string): Promise<number> {
    return (await fs.stat(this.backing(device))).size;
  }

  /** Devices probed (blkid), in order. */
  readonly probes: string[] = [];

  async probe(device: string): Promise<DeviceContent> {
    this.probes.push(device);
    return this.image(this.backing(device)).content;
  }

  /** Set: what superblock() reports for an image's device; otherwise none, so every stage probes and checks. */
  readonly superblocks = new Map<string, Superblock>();

  async superblock(device: string): Promise<Superblock | undefined> {
    return this.superblocks.get(this.backing(device));
  }

  async mkfs(device: string, fsType: string): Promise<void> {
    this.record(`mkfs ${fsType} ${device}`);
    const state = this.image(this.backing(device));
    state.content = { state: 'filesystem', fsType };
    state.fsBytes = await this.deviceSize(device);
  }

  async filesystemSize(_fsType: string, device: string): Promise<number> {
    return this.image(this.backing(device)).fsBytes;
  }

  async growOffline(fsType: string, device: string): Promise<void> {
    this.record(`grow offline ${fsType} ${device}`);
    this.image(this.backing(device)).fsBytes = await this.deviceSize(device);
  }

  async growMounted(fsType: string, device: string, mountPoint: string): Promise<void> {
    this.record(`grow ${fsType} ${device} ${mountPoint}`);
    this.image(this.backing(device)).fsBytes = await this.deviceSize(device);
  }

  async checkFilesystem(fsType: string, device: string): Promise<void> {
    this.record(`fsck ${fsType} ${device}`);
  }

  /** Errors each device's filesystem has recorded. */
  readonly fsErrors = new Map<string, number>();

  async filesystemErrors(_fsType: string, device: string): Promise<number | undefined> {
    return this.fsErrors.get(device);
  }

  async imageHasData(image: string): Promise<boolean | undefined> {
    return this.withData.has(path.resolve(image)) || this.image(path.resolve(image)).content.state !== 'blank';
  }

  async deviceHasData(device: string): Promise<boolean> {
    return (await this.imageHasData(this.backing(device))) ?? false;
  }

  async isStale(target: string): Promise<boolean> {
    return this.stale.has(target);
  }

  /** Resolves a path through the fake bind mounts of plain directories. */
  private resolveBinds(p: string): string {
    const entry = topMount(this.mounts, p);
    return entry && entry.fstype === 'ext4' && entry.source === '/dev/vda' ? entry.fsroot : path.resolve(p);
  }

  async sameFile(a: string, b: string): Promise<boolean> {
    return this.resolveBinds(a) === this.resolveBinds(b);
  }
}
