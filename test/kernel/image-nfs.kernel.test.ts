// berth's image mounts NFS with a real kernel: the VM has no container
// runtime, so the image's root filesystem (unpacked by
// scripts/image/export-root.sh into .tools/image/root before the VM boots)
// is entered with chroot, and its own mount.nfs mounts from nfs-ganesha on
// the guest's loopback, as the node plugin's container would.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { Ganesha } from '../helpers/ganesha.js';
import { exec } from '../helpers/host.js';
import { requireKernelVm } from '../helpers/kernel-vm.js';

const IMAGE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../.tools/image');
const IMAGE_ROOT = path.join(IMAGE, 'root');

describe("kernel VM: berth's image mounts NFS with its own mount.nfs (the image's root in a chroot)", function () {
  this.timeout(600_000);
  let dir: string;
  let g: Ganesha;
  let root: string;

  before(async () => {
    requireKernelVm();
    await fs.access(path.join(IMAGE, 'image-id'));
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-kimage-'));
    g = new Ganesha(dir);
    await g.start();
    // The image's files, seen through a bind on the guest's own disk: the
    // chroot's mount points then are not on the project's 9p share.
    root = path.join(dir, 'root');
    await fs.mkdir(root);
    await exec('mount', ['--bind', IMAGE_ROOT, root]);
    await exec('mount', ['-t', 'proc', 'proc', path.join(root, 'proc')]);
    await exec('mount', ['-t', 'tmpfs', 'tmpfs', path.join(root, 'mnt')]);
  });
  after(async () => {
    if (root) {
      for (const m of ['mnt', 'proc', ''].map((p) => path.join(root, p))) await exec('umount', ['-R', m]).catch(() => undefined);
    }
    await g?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  for (const [version, options] of [
    ['3', 'vers=3,nolock,retry=0'],
    ['4.1', 'vers=4.1,retry=0'],
  ] as const) {
    it(`mounts an export over NFSv${version}, writes through it, and unmounts it`, async () => {
      const inside = `/mnt/v${version}`;
      await fs.mkdir(path.join(root, inside));
      await exec('chroot', [root, 'mount', '-t', 'nfs', '-o', options, `127.0.0.1:${g.exportDir}`, inside]);
      try {
        await exec('chroot', [root, 'sh', '-c', `echo from-the-image > ${inside}/v${version}`]);
        expect(await fs.readFile(path.join(g.exportDir, `v${version}`), 'utf8')).to.equal('from-the-image\n');
      } finally {
        await exec('chroot', [root, 'umount', inside]);
      }
    });
  }
});
