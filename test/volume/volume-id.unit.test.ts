// The one codec for volume ids (fast tier: no root).
import { expect } from 'chai';
import { encodeNode, formatVolumeId, parseVolumeId, volumeDirName } from '../../volume/volume-id.js';

describe('volume id codec', () => {
  it('round-trips a local volume id', () => {
    const ref = { pool: 'local' as const, node: encodeNode('node-a'), kind: 'block' as const, dirName: 'pvc-1234' };
    const id = formatVolumeId(ref);
    expect(id).to.equal('local:node-a:block:pvc-1234');
    expect(parseVolumeId(id)).to.deep.equal(ref);
  });

  it('keeps ids within 128 bytes for the longest names and node ids', () => {
    const dirName = volumeDirName('x'.repeat(128));
    const id = formatVolumeId({ pool: 'local', node: encodeNode('n'.repeat(256)), kind: 'share', dirName });
    expect(Buffer.byteLength(id)).to.be.at.most(128);
    expect(parseVolumeId(id)?.dirName).to.equal(dirName);
  });

  it('never gives two distinct names one place on disk: names ending in a pool suffix are hashed', () => {
    for (const name of ['x.json', 'y.img', 'pvc-1.img']) expect(volumeDirName(name), name).to.match(/^h-[0-9a-f]{40}$/);
    expect(volumeDirName('x')).to.equal('x');
    expect(volumeDirName('x.json.bak')).to.equal('x.json.bak');
  });

  it('turns names that could escape the pool into hashes', () => {
    for (const name of ['..', '../etc', '/abs', 'a/b', '.hidden', 'név', 'a\u0000b', `h-${'a'.repeat(40)}`]) {
      const dir = volumeDirName(name);
      expect(dir, name).to.match(/^h-[0-9a-f]{40}$/);
    }
    expect(volumeDirName('pvc-6f1c1f2e-0000-4000-8000-000000000000')).to.equal('pvc-6f1c1f2e-0000-4000-8000-000000000000');
  });

  it('rejects ids that are not ours or are malformed', () => {
    for (const id of [
      '',
      'local:node-a:share',
      'nfs:x:share:y',
      'local:node-a:disk:pvc',
      'local:node-a:share:../x',
      'local:NODE:share:pvc',
      'local:n:share:pvc:extra',
    ]) {
      expect(parseVolumeId(id), id).to.equal(undefined);
    }
  });

  describe('NFS ids', () => {
    const cases: Array<[string, Record<string, unknown>, string]> = [
      ['a host name', { server: 'nas.example', share: '/export' }, 'nfs:nas.example:/export:share:pvc-1'],
      [
        'ports that skip the portmapper',
        { server: '10.0.0.5', share: '/e', nfsPort: 2049, mountPort: 20048 },
        'nfs:10.0.0.5@2049@20048:/e:share:pvc-1',
      ],
      ['only a MOUNT port', { server: '10.0.0.5', share: '/e', mountPort: 635 }, 'nfs:10.0.0.5@@635:/e:share:pvc-1'],
      ['an IPv6 server (":" escaped)', { server: 'fd00::5', share: '/e' }, 'nfs:fd00%3A%3A5:/e:share:pvc-1'],
      [
        'a bracketed IPv6 server with a port',
        { server: '[fd00::5]', share: '/e', nfsPort: 2049 },
        'nfs:[fd00%3A%3A5]@2049@:/e:share:pvc-1',
      ],
      ['the export root', { server: 'nas', share: '/' }, 'nfs:nas:/:share:pvc-1'],
      [
        'the identity used on a root_squash export',
        { server: 'nas', share: '/e', uid: 1000, gid: 100 },
        'nfs:nas@@@1000.100:/e:share:pvc-1',
      ],
      ['ports and an identity', { server: 'nas', share: '/e', nfsPort: 2049, uid: 0, gid: 0 }, 'nfs:nas@2049@@0.0:/e:share:pvc-1'],
    ];
    for (const [label, where, id] of cases) {
      it(`formats and parses ${label}`, () => {
        const ref = { pool: 'nfs' as const, kind: 'share' as const, dirName: 'pvc-1', ...where } as Parameters<typeof formatVolumeId>[0];
        expect(formatVolumeId(ref)).to.equal(id);
        expect(parseVolumeId(id)).to.deep.equal(ref);
      });
    }

    it('rejects malformed NFS ids', () => {
      for (const id of [
        'nfs:nas:../../etc:share:pvc',
        'nfs:nas@@@1000:/e:share:pvc',
        'nfs:nas@@@1000.x:/e:share:pvc',
        'nfs:nas@@@1.2@3:/e:share:pvc',
        'nfs:nas:/a/../etc:share:pvc',
        'nfs:nas:/a%3Ab:share:pvc',
        'nfs:-o:/e:share:pvc',
        'nfs:nas;reboot:/e:share:pvc',
        'local:node-a:share:x.json',
        'local:node-a:block:y.img',
        'nfs::/e:share:pvc',
        'nfs:nas@x@:/e:share:pvc',
        'nfs:nas@123456@:/e:share:pvc',
        'nfs:nas@70000@:/e:share:pvc',
        'nfs:nas::share:pvc',
        'nfs:nas:/e:disk:pvc',
        'nfs:nas:/e:share:../x',
        'nfs:nas:/e:share',
      ]) {
        expect(parseVolumeId(id), id).to.equal(undefined);
      }
    });

    it('refuses to format an id longer than 128 bytes', () => {
      expect(() => formatVolumeId({ pool: 'nfs', server: 'nas', share: `/${'s'.repeat(120)}`, kind: 'share', dirName: 'pvc-1' })).to.throw(
        /128 bytes/,
      );
    });
  });
});
