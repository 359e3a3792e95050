// What may never reach a log (fast tier).
import { expect } from 'chai';
import { redact } from '../../volume/redact.js';

describe('redaction of logged requests', () => {
  it('replaces secrets, tokens, passwords, mount flags and mount options, at any depth', () => {
    const request = {
      name: 'pvc-1',
      secrets: { password: 'hunter2' },
      parameters: { mountOptions: 'password=hunter2', kind: 'share' },
      volume_capability: { mount: { fs_type: 'ext4', mount_flags: ['password=hunter2'] } },
      nested: [{ apiToken: 'abc' }, { 'csi.storage.k8s.io/node-stage-secret-name': 'n' }],
    };
    const out = JSON.stringify(redact(request));
    expect(out).to.not.contain('hunter2');
    expect(out).to.not.contain('"abc"');
    expect(out).to.contain('"name":"pvc-1"');
    expect(out).to.contain('"fs_type":"ext4"');
    expect(out).to.contain('"kind":"share"');
  });

  it('keeps pagination tokens and empty secret maps as they are', () => {
    expect(redact({ starting_token: 't1', next_token: 't2', secrets: {} })).to.deep.equal({
      starting_token: 't1',
      next_token: 't2',
      secrets: {},
    });
  });

  it('does not change the object it was given', () => {
    const request = { secrets: { k: 'v' } };
    redact(request);
    expect(request).to.deep.equal({ secrets: { k: 'v' } });
  });
});
