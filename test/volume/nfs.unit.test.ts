// The one validator of NFS inputs (fast tier). The controller, the node,
// the FlexVolume shim and migrate all call it, so one table covers them.
import { expect } from 'chai';
import { Code, CsiError } from '../../volume/errors.js';
import { layeredMountOptions, mountedAt, mountOptions, nfsDevice, nfsServer, nfsShare, nfsSubDir } from '../../volume/nfs.js';

function refused(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(CsiError);
    expect((err as CsiError).code).to.equal(Code.INVALID_ARGUMENT);
    return (err as Error).message;
  }
  return expect.fail('accepted');
}

describe('NFS input validator', () => {
  it('accepts host names, IPv4 and IPv6 servers', () => {
    for (const s of ['nas', 'nas.example.com', '10.10.0.25', 'fd00::5', '[fd00::5]', '::1']) expect(nfsServer(s), s).to.equal(s);
  });

  it('refuses servers that are not a host or an address', () => {
    for (const s of ['', '-o', 'nas;rm -rf /', 'nas x', 'a..b', '[fd00::5', 'fd00::5]', 'nas/e', `${'a'.repeat(64)}.com`])
      refused(() => nfsServer(s));
  });

  it('normalises a share to an absolute path without trailing slashes', () => {
    expect(nfsShare('/export/')).to.equal('/export');
    expect(nfsShare('/')).to.equal('/');
    expect(nfsShare('///')).to.equal('/');
    expect(nfsShare('/exports/k8s')).to.equal('/exports/k8s');
  });

  it('refuses shares that are relative, climb, or hold empty or odd components', () => {
    for (const s of ['', 'export', '/a/../etc', '/a//b', '/a/./b', '/a\0b', '/a b', '../../etc']) refused(() => nfsShare(s));
  });

  const subDirs: Array<[string, boolean]> = [
    ['pvc-1', true],
    ['team-a/pvc-1', true],
    ['a.b_c-d', true],
    ['', false],
    ['a//b', false],
    ['a/./b', false],
    ['a/../b', false],
    ['..', false],
    ['/abs', false],
    ['trailing/', false],
    ['.berth', false],
    ['.berth/volumes', false],
    ['a\0b', false],
    ['név', false],
    [`${'x'.repeat(1025)}`, false],
  ];
  for (const [subDir, ok] of subDirs) {
    it(`${ok ? 'accepts' : 'refuses'} the subDir ${JSON.stringify(subDir.length > 40 ? `${subDir.slice(0, 10)}…` : subDir)}`, () => {
      if (ok) expect(nfsSubDir(subDir)).to.equal(subDir);
      else refused(() => nfsSubDir(subDir));
    });
  }

  it('accepts the export root as a subDir only where asked (static shares)', () => {
    expect(nfsSubDir('', { allowRoot: true })).to.equal('');
    refused(() => nfsSubDir(''));
  });

  it('splits, trims and checks mount options from a string or a list of entries', () => {
    expect(mountOptions('nfsvers=4.1, hard,,noatime ')).to.deep.equal(['nfsvers=4.1', 'hard', 'noatime']);
    expect(mountOptions(['nfsvers=3,nolock', 'port=2049'])).to.deep.equal(['nfsvers=3', 'nolock', 'port=2049']);
    expect(mountOptions(undefined)).to.deep.equal([]);
  });

  it('refuses a mount option that is not plain, never repeating its value', () => {
    for (const o of ['a b', 'x;reboot', 'x`id`', 'password=$(cat /etc/shadow)', 'a\nb']) {
      const message = refused(() => mountOptions(`hard,${o}`));
      expect(message).to.contain('number 2');
      expect(message).to.not.contain(o);
    }
  });

  it('checks mountedAt like any path on the node', () => {
    expect(mountedAt('/mnt/nas/')).to.equal('/mnt/nas');
    expect(mountedAt('')).to.equal(undefined);
    for (const p of ['mnt', '/mnt/../etc', '/mnt//nas']) refused(() => mountedAt(p));
  });

  it('writes the mount device with IPv6 servers bracketed', () => {
    expect(nfsDevice('nas', '/export', 'pvc-1')).to.equal('nas:/export/pvc-1');
    expect(nfsDevice('nas', '/', 'pvc-1')).to.equal('nas:/pvc-1');
    expect(nfsDevice('fd00::5', '/e')).to.equal('[fd00::5]:/e');
    expect(nfsDevice('[fd00::5]', '/e')).to.equal('[fd00::5]:/e');
  });

  it('layers mount options: a later layer replaces what sets the same thing, under any spelling', () => {
    expect(layeredMountOptions(['nfsvers=3', 'hard', 'nolock'], ['vers=4.1', 'soft'])).to.deep.equal(['nolock', 'vers=4.1', 'soft']);
    expect(layeredMountOptions(['rw', 'noac'], ['ac'], ['ro'])).to.deep.equal(['ac', 'ro']);
    expect(layeredMountOptions(['async', 'timeo=600'], ['sync'])).to.deep.equal(['timeo=600', 'sync']);
    expect(layeredMountOptions(['hard', 'hard'], [])).to.deep.equal(['hard']);
    expect(layeredMountOptions([], ['nconnect=4'])).to.deep.equal(['nconnect=4']);
  });
});
