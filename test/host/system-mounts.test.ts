// The berth_sys addon (native/berth_sys.c) through SystemMounts and durable.ts,
// on real loop devices, ext4 and bind mounts (root tier, private mount
// namespace). `npm ci` builds the addon: a missing addon fails here rather
// than leaving the driver on commands unnoticed.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { punchHole, reserveSpace } from '../../host/durable.js';
import { readLoopTable } from '../../host/loop-devices.js';
import { readMountTable, topMount } from '../../host/mount-table.js';
import { BusyError } from '../../host/mounter.js';
import { loadSystemCalls, type SystemCalls } from '../../host/native.js';
import { BUILT_ADDON } from '../../host/native-addon.js';
import { SystemMounts } from '../../host/system-mounts.js';
import { exec, HostState } from '../helpers/host.js';

const MiB = 2 ** 20;
const sysfs = (device: string, file: string) => fs.readFile(`/sys/block/${path.basename(device)}/${file}`, 'utf8').then((s) => s.trim());
const mountOf = async (target: string) => topMount(await readMountTable(), target);

describe('system calls through the berth_sys addon', function () {
  this.timeout(60_000);
  let host: HostState;
  let work: string;
  let sys: SystemCalls;
  let calls: SystemMounts;
  const attached: string[] = [];
  const mounted: string[] = [];

  before(async () => {
    host = await HostState.capture();
    const loaded = loadSystemCalls(BUILT_ADDON);
    expect(loaded.reason, 'npm ci builds native/build/Release/berth_sys.node').to.equal(undefined);
    sys = loaded.sys as SystemCalls;
    calls = new SystemMounts(sys);
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-sys-'));
  });

  afterEach(async () => {
    for (const target of mounted.splice(0).reverse()) await exec('umount', [target]).catch(() => undefined);
    for (const device of attached.splice(0)) await exec('losetup', ['-d', device]).catch(() => undefined);
  });

  after(async () => {
    await fs.rm(work, { recursive: true, force: true });
    expect(await host.leaks()).to.deep.equal({ loops: [], mounts: [] });
  });

  async function image(name: string, bytes: number): Promise<string> {
    const file = path.join(work, name);
    await fs.writeFile(file, '');
    await fs.truncate(file, bytes);
    return file;
  }

  async function attach(file: string, readOnly = false): Promise<string> {
    const device = await calls.attachLoop(file, { readOnly });
    attached.push(device);
    return device;
  }

  /** A loop-attached ext4, mounted by the syscall at a new directory. */
  async function ext4(name: string, options: string[] = []): Promise<{ device: string; target: string }> {
    const file = await image(`${name}.img`, 64 * MiB);
    await exec('mkfs.ext4', ['-q', '-F', file]);
    const device = await attach(file);
    const target = path.join(work, name);
    await fs.mkdir(target);
    await calls.mount(device, target, { fstype: 'ext4', options });
    mounted.push(target);
    return { device, target };
  }

  it('attaches an image to a loop device with 512-byte sectors and direct I/O, and detaches it', async () => {
    const file = await image('plain.img', 8 * MiB);
    const device = await attach(file);
    expect((await readLoopTable()).find((l) => l.device === device)).to.deep.include({ backingFile: file, readOnly: false });
    expect(await sysfs(device, 'queue/logical_block_size')).to.equal('512');
    expect(await sysfs(device, 'loop/dio')).to.equal('1');
    expect(Number(await sysfs(device, 'size')) * 512).to.equal(8 * MiB);
    await calls.detachLoop(device);
    attached.pop();
    expect((await readLoopTable()).map((l) => l.device)).to.not.include(device);
  });

  it('attaches read-only so that no write reaches the image', async () => {
    const file = await image('ro.img', 4 * MiB);
    const device = await attach(file, true);
    expect(await sysfs(device, 'ro')).to.equal('1');
    const err = await exec('dd', ['if=/dev/zero', `of=${device}`, 'bs=4096', 'count=1', 'oflag=direct']).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err, 'a write to a read-only loop device').to.be.instanceOf(Error);
    expect((await fs.stat(file)).blocks, 'nothing written to the image').to.equal(0);
  });

  it('gives three attaches at once three devices', async () => {
    const files = await Promise.all([image('a.img', MiB), image('b.img', MiB), image('c.img', MiB)]);
    const devices = await Promise.all(files.map((f) => attach(f)));
    expect(new Set(devices).size).to.equal(3);
    const table = await readLoopTable();
    for (const [i, device] of devices.entries()) expect(table.find((l) => l.device === device)?.backingFile).to.equal(files[i]);
  });

  it('makes a loop device take its image’s new size', async () => {
    const file = await image('grow.img', 4 * MiB);
    const device = await attach(file);
    await fs.truncate(file, 12 * MiB);
    await calls.refreshLoopSize(device);
    expect(Number(await sysfs(device, 'size')) * 512).to.equal(12 * MiB);
  });

  it('reports a failed attach with the call and the errno, and attaches nothing', async () => {
    const before = (await readLoopTable()).length;
    const err = await calls.attachLoop(path.join(work, 'absent.img')).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).to.match(/absent\.img.*open: No such file or directory/);
    expect((await readLoopTable()).length).to.equal(before);
  });

  it('mounts ext4 with per-mount options as flags and filesystem options as data', async () => {
    const { target } = await ext4('opts', ['noatime', 'nodev', 'nosuid', 'errors=remount-ro']);
    const m = await mountOf(target);
    expect(m?.fstype).to.equal('ext4');
    expect(m?.options).to.include.members(['rw', 'noatime', 'nodev', 'nosuid']);
    const { stdout } = await exec('findmnt', ['-n', '-o', 'FS-OPTIONS', target]);
    expect(stdout).to.contain('errors=remount-ro');
  });

  it('never shows the filesystem options of a refused mount', async () => {
    const file = await image('refused.img', 64 * MiB);
    await exec('mkfs.ext4', ['-q', '-F', file]);
    const device = await attach(file);
    const target = path.join(work, 'refused');
    await fs.mkdir(target);
    const err = await calls.mount(device, target, { fstype: 'ext4', options: ['password=hunter2'] }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).to.match(/mount of ext4 .* failed: mount: Invalid argument/);
    expect(err?.message).to.not.contain('hunter2');
    expect(await mountOf(target)).to.equal(undefined);
  });

  it('bind-mounts read-only, keeping the flags the source mount has, while the source stays writable', async () => {
    const { target } = await ext4('bindsrc', ['nosuid', 'nodev']);
    await fs.mkdir(path.join(target, 'vol'));
    const bind = path.join(work, 'bind-ro');
    await fs.mkdir(bind);
    await calls.bindMount(path.join(target, 'vol'), bind, true);
    mounted.push(bind);
    expect((await mountOf(bind))?.options).to.include.members(['ro', 'nosuid', 'nodev']);
    const err = await fs.writeFile(path.join(bind, 'x'), 'x').then(
      () => undefined,
      (e: NodeJS.ErrnoException) => e.code,
    );
    expect(err).to.equal('EROFS');
    await fs.writeFile(path.join(target, 'vol', 'y'), 'y');
    expect(await fs.readFile(path.join(bind, 'y'), 'utf8')).to.equal('y');
  });

  it('bind-mounts writable', async () => {
    const { target } = await ext4('bindrw');
    const bind = path.join(work, 'bind-rw');
    await fs.mkdir(bind);
    await calls.bindMount(target, bind, false);
    mounted.push(bind);
    await fs.writeFile(path.join(bind, 'z'), 'z');
    expect(await fs.readFile(path.join(target, 'z'), 'utf8')).to.equal('z');
  });

  it('refuses to unmount a busy target with a BusyError, and unmounts once it is free', async () => {
    const { target } = await ext4('busy');
    const open = await fs.open(path.join(target, 'held'), 'w');
    try {
      const err = await calls.unmount(target).then(
        () => undefined,
        (e: Error) => e,
      );
      expect(err).to.be.instanceOf(BusyError);
      expect(await mountOf(target)).to.not.equal(undefined);
    } finally {
      await open.close();
    }
    await calls.unmount(target);
    mounted.pop();
    expect(await mountOf(target)).to.equal(undefined);
  });

  it('reserves a thick image’s blocks with fallocate(2) and gives unwritten ranges back with a punched hole', async () => {
    const file = await image('thick.img', 0);
    await reserveSpace(file, 16 * MiB, sys);
    const reserved = await fs.stat(file);
    expect(reserved.size).to.equal(16 * MiB);
    expect(reserved.blocks * 512).to.be.at.least(16 * MiB);
    await punchHole(file, 4 * MiB, 8 * MiB, sys);
    const punched = await fs.stat(file);
    expect(punched.size, 'a punched hole keeps the size').to.equal(16 * MiB);
    expect(punched.blocks * 512).to.be.at.most(8 * MiB + 64 * 1024);
  });

  it('refuses a reservation the filesystem cannot hold, and leaves the image as it was', async () => {
    const file = await image('huge.img', MiB);
    const err = await reserveSpace(file, 2 ** 50, sys).then(
      () => undefined,
      (e: NodeJS.ErrnoException) => e.code,
    );
    expect(err).to.equal('ENOSPC');
    expect((await fs.stat(file)).size).to.equal(MiB);
  });

  it('rejects a failed call with the errno’s name and the call, as Node’s own errors do', async () => {
    const small = path.join(work, 'small');
    await fs.mkdir(small);
    await calls.mount('tmpfs', small, { fstype: 'tmpfs', options: ['size=1m'] });
    mounted.push(small);
    const file = await fs.open(path.join(small, 'f'), 'w');
    try {
      const err = await sys.fallocate(file.fd, 0, 0, 4 * MiB).then(
        () => undefined,
        (e: NodeJS.ErrnoException) => e,
      );
      expect(err).to.include({ code: 'ENOSPC', syscall: 'fallocate', message: 'No space left on device' });
    } finally {
      await file.close();
    }
  });

  it('refuses wrong arguments with a TypeError before any system call', () => {
    expect(() => (sys.mount as (...a: unknown[]) => unknown)('/x', 1, null, null, 0)).to.throw(TypeError);
    expect(() => (sys.loopDetach as (...a: unknown[]) => unknown)('/dev/loop0\0x')).to.throw(TypeError);
    expect(() => (sys.fallocate as (...a: unknown[]) => unknown)(1, 0, 0)).to.throw(TypeError);
  });
});
