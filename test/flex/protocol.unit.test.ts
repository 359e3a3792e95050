// The FlexVolume call's options as the kubelet passes them (fast tier):
// one JSON object of strings, read strictly; secrets base64-decoded.
import { expect } from 'chai';
import { FlexFailure, FS_GROUP, fsGroup, parseOptions, readOnly, required, SECRET_PREFIX, secrets } from '../../flex/protocol.js';

describe('FlexVolume options', () => {
  it('reads an object of strings, and refuses anything else with a FlexFailure', () => {
    expect(parseOptions('{"server":"10.0.0.5","kubernetes.io/readwrite":"ro"}')).to.deep.equal({
      server: '10.0.0.5',
      'kubernetes.io/readwrite': 'ro',
    });
    for (const bad of [undefined, '', '{', '[]', 'null', '"x"', '{"a":1}', '{"a":{"b":"c"}}']) {
      expect(() => parseOptions(bad), String(bad)).to.throw(FlexFailure);
    }
  });

  it('requires what it needs, by name', () => {
    expect(required({ share: '/export' }, 'share')).to.equal('/export');
    expect(() => required({ share: '' }, 'share')).to.throw(FlexFailure, 'missing option "share"');
  });

  it('reads read-only, fsGroup and secrets as the kubelet writes them', () => {
    expect(readOnly({ 'kubernetes.io/readwrite': 'ro' })).to.equal(true);
    expect(readOnly({ 'kubernetes.io/readwrite': 'rw' })).to.equal(false);
    expect(fsGroup({ [FS_GROUP]: '2000' })).to.equal(2000);
    expect(fsGroup({})).to.equal(undefined);
    expect(() => fsGroup({ [FS_GROUP]: '-1' })).to.throw(FlexFailure);
    expect(secrets({ [`${SECRET_PREFIX}key`]: Buffer.from('s3cret').toString('base64'), other: 'x' })).to.deep.equal({ key: 's3cret' });
    expect(() => secrets({ [`${SECRET_PREFIX}key`]: 'not base64!' })).to.throw(FlexFailure);
  });
});
