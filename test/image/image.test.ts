// berth's image as a user gets it: built from the Dockerfile with podman (on
// a STAND-IN base, test/helpers/berth-image.ts says why), then run. Every
// tool the node service runs is run from the image, not read off the
// Dockerfile; the controller runs as the chart runs it.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { berthImage, podman } from '../helpers/berth-image.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

describe('the berth image, built from the Dockerfile with podman (on a stand-in base image)', function () {
  this.timeout(900_000);
  let tag: string;

  before(async () => {
    const image = await berthImage();
    tag = image.tag;
    console.log(`      image ${tag}: ${image.sizeMB} MB`);
  });

  const run = (args: string[], opts: string[] = []) => podman(['run', '--rm', ...opts, tag, ...args]);
  const shell = (script: string, opts: string[] = []) => podman(['run', '--rm', '--entrypoint', 'sh', ...opts, tag, '-c', script]);

  it('runs berth --version, the version of the package it was built from', async () => {
    const { version } = JSON.parse(await fs.readFile(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect((await run(['--version'])).stdout.trim()).to.equal(`berth ${version}`);
  });

  it('loads the berth_sys addon it built, and holds the FlexVolume executable', async () => {
    const script = "const s = require('/app/native/build/Release/berth_sys.node'); console.log(Object.keys(s).sort().join(','))";
    const { stdout } = await podman(['run', '--rm', '--entrypoint', 'node', tag, '-e', script]);
    expect(stdout.trim().split(',')).to.include.members(['mount', 'umount', 'loopAttach', 'loopDetach', 'fallocate']);
    // As the chart's FlexVolume installer runs it, then as the kubelet calls the installed driver.
    const flex = await shell(
      'mkdir /tmp/plugins && /app/dist/berth-flex install /tmp/plugins >/dev/null && /tmp/plugins/berth~nfs/nfs init',
    );
    expect(JSON.parse(flex.stdout)).to.deep.include({ status: 'Success' });
  });

  it("resolves what mount.nfs needs for NFSv3 (netbase's /etc/protocols and /etc/rpc)", async () => {
    const { stdout } = await shell('mount.nfs -V; getent protocols tcp udp; getent rpc portmapper mountd nfs');
    expect(stdout).to.match(/mount\.nfs: \(linux nfs-utils/);
    for (const entry of [/^tcp\s+6/m, /^udp\s+17/m, /^portmapper\s+100000/m, /^mountd\s+100005/m, /^nfs\s+100003/m])
      expect(stdout).to.match(entry);
  });

  it('runs every tool the node service runs, privileged as the node plugin: mkfs of each filesystem, losetup, blkid, mount, cp --reflink, filefrag, fsfreeze', async () => {
    // All inside one privileged container on /dev, as the node plugin runs;
    // the loop device is detached and the mount undone whatever happens.
    const script = `set -eu
img=/tmp/pool.img; dev=
cleanup() { mountpoint -q /mnt && umount /mnt; [ -n "$dev" ] && losetup -d "$dev"; rm -f "$img"; }
trap cleanup EXIT
for fs in ext4 xfs btrfs; do truncate -s 400M /tmp/$fs.img; mkfs.$fs -q /tmp/$fs.img >/dev/null 2>&1 || mkfs.$fs /tmp/$fs.img >/dev/null; echo "mkfs.$fs $(blkid -p -s TYPE -o value /tmp/$fs.img)"; rm /tmp/$fs.img; done
truncate -s 400M "$img"
dev=$(losetup -f --show "$img")
rc=0; blkid -p "$dev" >/dev/null 2>&1 || rc=$?; echo "blank: $rc"
mkfs.xfs -q "$dev"
mount "$dev" /mnt
head -c 1048576 /dev/urandom > /mnt/a
cp --reflink=always /mnt/a /mnt/b
cmp /mnt/a /mnt/b && echo "reflink copy equal"
filefrag -v /mnt/b | grep -q shared && echo "filefrag: extents shared"
fsfreeze -f /mnt && fsfreeze -u /mnt && echo "fsfreeze: frozen and thawed"
e2fsck -V 2>&1 | head -1; resize2fs 2>&1 | head -1; xfs_growfs -V
`;
    const { stdout } = await shell(script, ['--privileged', '-v', '/dev:/dev']);
    expect(stdout).to.contain('mkfs.ext4 ext4').and.contain('mkfs.xfs xfs').and.contain('mkfs.btrfs btrfs');
    expect(stdout).to.contain('blank: 2');
    expect(stdout).to.contain('reflink copy equal').and.contain('filefrag: extents shared').and.contain('fsfreeze: frozen and thawed');
    expect(stdout)
      .to.match(/e2fsck \d/)
      .and.match(/resize2fs \d/)
      .and.match(/xfs_growfs version/);
  });

  it("runs as the chart's controller: uid 65532, a read-only root filesystem, no capabilities, no privilege escalation", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-image-'));
    const name = `berth-image-test-${randomBytes(4).toString('hex')}`;
    try {
      await fs.chown(dir, 65532, 65532);
      await podman([
        'run',
        '-d',
        '--name',
        name,
        '--user',
        '65532:65532',
        '--read-only',
        '--cap-drop',
        'all',
        '--security-opt',
        'no-new-privileges',
        '-v',
        `${dir}:/csi`,
        '--entrypoint',
        'sh',
        tag,
        '-c',
        // The status of the process berth would be: who it is and what it may do.
        'id -u; id -g; grep CapEff /proc/self/status; touch /app/x 2>&1 || true; touch /csi/ok && echo socket-dir-writable; sleep 600',
      ]);
      let logs = '';
      for (let i = 0; i < 100 && !logs.includes('socket-dir-writable'); i++) {
        await new Promise((r) => setTimeout(r, 100));
        logs = (await podman(['logs', name])).stdout;
      }
      const [uid, gid, caps] = logs.split('\n');
      expect([uid, gid]).to.deep.equal(['65532', '65532']);
      expect(caps).to.match(/CapEff:\s+0{16}/);
      expect(logs).to.contain('Read-only file system');
      expect(logs).to.contain('socket-dir-writable');
    } finally {
      await podman(['rm', '-f', '-t', '0', name]).catch(() => undefined);
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
