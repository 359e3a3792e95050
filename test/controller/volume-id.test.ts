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

  it('turns names that could escape the pool into hashes', () => {
    for (const name of ['..', '../etc', '/abs', 'a/b', '.hidden', 'név', 'a\u0000b', 'h-' + 'a'.repeat(40)]) {
      const dir = volumeDirName(name);
      expect(dir, name).to.match(/^h-[0-9a-f]{40}$/);
    }
    expect(volumeDirName('pvc-6f1c1f2e-0000-4000-8000-000000000000')).to.equal('pvc-6f1c1f2e-0000-4000-8000-000000000000');
  });

  it('rejects ids that are not ours or are malformed', () => {
    for (const id of ['', 'local:node-a:share', 'nfs:x:share:y', 'local:node-a:disk:pvc', 'local:node-a:share:../x', 'local:NODE:share:pvc', 'local:n:share:pvc:extra']) {
      expect(parseVolumeId(id), id).to.equal(undefined);
    }
  });
});
