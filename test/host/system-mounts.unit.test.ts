// How mount(8) options become mount(2) flags and data, and which mount holds
// a path (fast tier: no root, no addon).
import { expect } from 'chai';
import type { MountEntry } from '../../host/mount-table.js';
import { MS } from '../../host/native.js';
import { mountHolding, systemMountArguments } from '../../host/system-mounts.js';

describe('mount(8) options as mount(2) arguments', () => {
  it('turns per-mount options into flags and passes the rest to the filesystem as data', () => {
    expect(systemMountArguments(['ro', 'noatime', 'nodev', 'errors=remount-ro', 'discard'])).to.deep.equal({
      flags: MS.RDONLY | MS.NOATIME | MS.NODEV,
      data: 'errors=remount-ro,discard',
    });
  });

  it('lets a later option undo an earlier one, as mount(8) does', () => {
    expect(systemMountArguments(['ro', 'nosuid', 'rw', 'suid'])).to.deep.equal({ flags: 0, data: '' });
  });

  it('keeps fstab-only options away from the kernel', () => {
    expect(systemMountArguments(['defaults', 'nofail', '_netdev', 'x-systemd.automount'])).to.deep.equal({ flags: 0, data: '' });
  });

  it('leaves to mount(8) what only mount(8) does', () => {
    for (const option of ['loop', 'bind', 'remount', 'user', 'offset=4096', 'X-mount.mkdir'])
      expect(systemMountArguments(['noatime', option]), option).to.equal(undefined);
  });
});

describe('the mount that holds a path', () => {
  const entry = (target: string, fstype: string): MountEntry => ({ target, source: fstype, fstype, options: ['rw'], fsroot: '/' });
  const mounts = [entry('/', 'ext4'), entry('/var', 'xfs'), entry('/var/nfs', 'nfs4'), entry('/var', 'tmpfs')];

  it('is the last mount at the longest prefix of the path', () => {
    expect(mountHolding(mounts, '/var/nfs/a/b')?.fstype).to.equal('nfs4');
    expect(mountHolding(mounts, '/var/lib/x')?.fstype, 'the later of two mounts at /var').to.equal('tmpfs');
    expect(mountHolding(mounts, '/variable')?.fstype, 'a prefix by path segments, not characters').to.equal('ext4');
    expect(mountHolding(mounts, '/var/nfs/../lib')?.fstype, 'the path is resolved first').to.equal('tmpfs');
  });

  it('is nothing when no mount is listed, not even /', () => {
    expect(mountHolding([entry('/var', 'xfs')], '/etc/x')).to.equal(undefined);
  });
});
