// What the kernel tier's VM gives the features that need a kernel these
// machines lack: dm-crypt (LUKS2 on a loop device) and project quotas on xfs
// and ext4. These are the tools and modules the encryption and share-quota
// work builds on; each check uses them as berth will, on images of its own.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { exec, HostState } from '../helpers/host.js';
import { requireKernelVm } from '../helpers/kernel-vm.js';

const MiB = 1024 * 1024;

/** Runs a shell script; its stdin is `input` (a key never goes to argv). */
async function sh(script: string, input?: string): Promise<string> {
  const child = exec('sh', ['-euc', script]);
  if (input !== undefined) {
    child.child.stdin?.end(input);
  } else child.child.stdin?.end();
  return (await child).stdout;
}

describe('kernel VM: dm-crypt and project quotas', function () {
  this.timeout(600_000);
  let dir: string;
  let host: HostState;

  before(async () => {
    requireKernelVm();
    host = await HostState.capture();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-kfeat-'));
  });
  after(async () => {
    const leaks = host ? await host.leaks() : { loops: [], mounts: [] };
    if (dir) await fs.rm(dir, { recursive: true, force: true });
    expect(leaks, 'loop devices or mounts left behind').to.deep.equal({ loops: [], mounts: [] });
  });

  it('formats, opens, fills and closes LUKS2 on a loop device, the key on stdin; the image holds no plaintext', async () => {
    const image = path.join(dir, 'crypt.img');
    const name = `berth-test-${process.pid}`;
    const marker = 'plaintext-marker-'.repeat(64);
    const out = await sh(
      `img=${image}; mnt=${dir}/crypt-mnt; mkdir -p $mnt
truncate -s 64M $img
dev=$(losetup -f --show $img)
trap 'mountpoint -q $mnt && umount $mnt; [ -e /dev/mapper/${name} ] && cryptsetup close ${name}; losetup -d $dev' EXIT
key=$(cat)
printf %s "$key" | cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file - $dev
printf %s "$key" | cryptsetup open --key-file - $dev ${name}
mkfs.ext4 -q /dev/mapper/${name}
mount /dev/mapper/${name} $mnt
for i in $(seq 64); do printf %s '${marker}'; done > $mnt/secret
echo "wrote $(stat -c %s $mnt/secret) bytes"
umount $mnt
cryptsetup close ${name}
if printf %s wrong | cryptsetup open --test-passphrase --key-file - $dev; then echo wrong-key-accepted; else echo wrong-key-refused; fi
cryptsetup luksDump $dev | grep -m1 '^Version'`,
      'correct horse battery staple',
    );
    expect(out)
      .to.contain('wrong-key-refused')
      .and.match(/Version:\s+2/);
    const bytes = await fs.readFile(image);
    expect(bytes.includes(Buffer.from('plaintext-marker-')), 'no plaintext on the image').to.equal(false);
  });

  it('stops a write at an xfs project quota (ENOSPC) and at an ext4 one (EDQUOT, for a process without CAP_SYS_RESOURCE)', async () => {
    const out = await sh(`d=${dir}
cleanup() { for m in $d/xfs $d/ext4; do mountpoint -q $m && umount $m; done; for l in $(losetup -j $d/xfs.img -O NAME -n) $(losetup -j $d/ext4.img -O NAME -n); do losetup -d $l; done; }
trap cleanup EXIT
mkdir -p $d/xfs $d/ext4
truncate -s 400M $d/xfs.img; mkfs.xfs -q $d/xfs.img
mount -o loop,prjquota $d/xfs.img $d/xfs
mkdir $d/xfs/share
xfs_quota -x -c "project -s -p $d/xfs/share 42" $d/xfs >/dev/null
xfs_quota -x -c "limit -p bhard=8m 42" $d/xfs
dd if=/dev/zero of=$d/xfs/share/fill bs=1M count=32 2>$d/xfs.err || true
echo "xfs: $(stat -c %s $d/xfs/share/fill) bytes, $(grep -o 'No space left on device' $d/xfs.err | head -1)"
truncate -s 128M $d/ext4.img; mkfs.ext4 -q -O quota,project $d/ext4.img
mount -o loop,prjquota $d/ext4.img $d/ext4
mkdir $d/ext4/share
chattr -p 43 +P $d/ext4/share
setquota -P 43 0 8192 0 0 $d/ext4
setpriv --inh-caps -sys_resource --bounding-set -sys_resource dd if=/dev/zero of=$d/ext4/share/fill bs=1M count=32 2>$d/ext4.err || true
echo "ext4: $(stat -c %s $d/ext4/share/fill) bytes, $(grep -o 'Disk quota exceeded' $d/ext4.err | head -1)"`);
    const bytesOf = (fsType: string) => Number(new RegExp(`${fsType}: (\\d+) bytes`).exec(out)?.[1]);
    expect(out).to.contain('No space left on device').and.contain('Disk quota exceeded');
    for (const fsType of ['xfs', 'ext4']) {
      expect(bytesOf(fsType), fsType)
        .to.be.at.most(8 * MiB)
        .and.above(4 * MiB);
    }
  });
});
