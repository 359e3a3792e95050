// The mount table parser (fast tier): /proc/self/mountinfo lines, as proc(5)
// describes them, and this process's own table.
import { expect } from 'chai';
import {
  boundDevice,
  mountHolding,
  mountsOfDevice,
  mountsShowing,
  parseMountInfo,
  readMountTable,
  topMount,
} from '../../host/mount-table.js';

const SAMPLE = [
  '22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro',
  '40 22 7:0 / /var/lib/kubelet/plugins/kubernetes.io/csi/berth.csi.dev/ab/globalmount rw,relatime shared:20 - ext4 /dev/loop0 rw',
  '41 22 7:0 / /var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pv\\040one/mount ro,relatime shared:20 - ext4 /dev/loop0 rw',
  '42 22 0:5 /loop3 /var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/staging/pv/device rw,nosuid master:2 - devtmpfs udev rw,size=10g',
  '43 22 0:50 / /mnt/nfs rw,relatime - nfs4 10.0.0.5:/export rw,vers=4.1',
  '44 43 0:50 / /mnt/nfs rw,relatime - nfs4 10.0.0.5:/export rw,vers=4.1',
  'garbage line',
].join('\n');

describe('mount table (mountinfo)', () => {
  const table = parseMountInfo(SAMPLE);

  it('reads target, source, type, per-mount options and root, unescaping \\040', () => {
    expect(table).to.have.length(6);
    expect(table[2]).to.deep.equal({
      target: '/var/lib/kubelet/pods/u1/volumes/kubernetes.io~csi/pv one/mount',
      source: '/dev/loop0',
      fstype: 'ext4',
      options: ['ro', 'relatime'],
      fsroot: '/',
      device: '7:0',
    });
  });

  it('finds the mounts that show a directory elsewhere (bind mounts of it), by device and root, never by stat', () => {
    const binds = parseMountInfo(
      [
        '22 1 252:1 / / rw - ext4 /dev/vda1 rw',
        '50 22 252:3 / /srv/pool rw - xfs /dev/vdb rw',
        '51 22 252:3 /volumes/pvc-a /var/lib/kubelet/plugins/kubernetes.io/csi/b/globalmount rw - xfs /dev/vdb rw',
        '52 22 252:3 /volumes/pvc-a /var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pvc-a/mount rw - xfs /dev/vdb rw',
        '53 22 252:3 /volumes/pvc-ab /elsewhere rw - xfs /dev/vdb rw',
        '54 22 252:3 / /srv/pool-again rw - xfs /dev/vdb rw',
        '55 22 252:1 /volumes/pvc-a /not-the-pool rw - ext4 /dev/vda1 rw',
      ].join('\n'),
    );
    expect(mountsShowing(binds, '/srv/pool/volumes/pvc-a').map((m) => m.target)).to.deep.equal([
      '/var/lib/kubelet/plugins/kubernetes.io/csi/b/globalmount',
      '/var/lib/kubelet/pods/u/volumes/kubernetes.io~csi/pvc-a/mount',
    ]);
    expect(mountsShowing(binds, '/srv/pool/volumes/pvc-b')).to.deep.equal([]);
    expect(mountHolding(binds, '/srv/pool/volumes/pvc-a')?.target).to.equal('/srv/pool');
  });

  it('finds the topmost of stacked mounts', () => {
    expect(topMount(table, '/mnt/nfs')).to.equal(table[5]);
    expect(topMount(table, '/mnt/nfs/')).to.equal(table[5]);
    expect(topMount(table, '/mnt')).to.equal(undefined);
  });

  it('finds a loop device mounted as a filesystem and bound as a raw device', () => {
    expect(mountsOfDevice(table, '/dev/loop0').map((m) => m.target)).to.have.length(2);
    expect(mountsOfDevice(table, '/dev/loop3').map((m) => m.target)).to.deep.equal([
      '/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices/staging/pv/device',
    ]);
    expect(boundDevice(table[3]!)).to.equal('/dev/loop3');
    expect(boundDevice(table[1]!)).to.equal(undefined);
  });

  it("reads this process's own table", async () => {
    const own = await readMountTable();
    expect(own.some((m) => m.target === '/')).to.equal(true);
  });
});
