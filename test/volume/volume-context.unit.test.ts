import { expect } from 'chai';
import { CsiError } from '../../volume/errors.js';
import {
  decodePublishContext,
  decodeVolumeContext,
  encodePublishContext,
  encodeVolumeContext,
  staticNfsShareOf,
} from '../../volume/volume-context.js';
import type { VolumeRef } from '../../volume/volume-id.js';

describe('volume and publish contexts (the controller → node contract)', () => {
  const at = { server: '10.0.0.5', share: '/export' };
  const nfsShare: VolumeRef = { pool: 'nfs', ...at, kind: 'share', dirName: 'pvc-1' };
  const nfsSourceOf = (raw: Record<string, string> | undefined) => decodeVolumeContext(raw, nfsShare);

  it('writes a local and an NFS volume context, and reads the NFS location back checked', () => {
    expect(encodeVolumeContext({ pool: 'local', kind: 'block', node: 'n1', fsType: 'xfs' })).to.deep.equal({
      pool: 'local',
      kind: 'block',
      node: 'n1',
      fsType: 'xfs',
    });
    const raw = encodeVolumeContext({ pool: 'nfs', kind: 'share', ...at, subDir: 'team/pvc-1', mountOptions: ['vers=4.1', 'hard'] });
    expect(raw).to.deep.equal({
      pool: 'nfs',
      kind: 'share',
      server: '10.0.0.5',
      share: '/export',
      subDir: 'team/pvc-1',
      mountOptions: 'vers=4.1,hard',
    });
    expect(nfsSourceOf(raw)).to.deep.equal({
      pool: 'nfs',
      kind: 'share',
      server: '10.0.0.5',
      share: '/export',
      subDir: 'team/pvc-1',
      mountOptions: ['vers=4.1', 'hard'],
    });
    const block: VolumeRef = { pool: 'local', node: 'n1', kind: 'block', dirName: 'pvc-2' };
    expect(decodeVolumeContext({ pool: 'local', kind: 'block', node: 'n1', fsType: 'xfs' }, block)).to.deep.equal({
      pool: 'local',
      kind: 'block',
      node: 'n1',
      fsType: 'xfs',
    });
    expect(decodeVolumeContext({ pool: 'nfs', kind: 'share', node: 'n1' }, block), 'the id decides the pool and kind').to.include({
      pool: 'local',
      kind: 'block',
    });
  });

  it('takes the server and export from the volume id, never from the context, and checks what the context says', () => {
    const raw = { server: 'evil.example', share: '/etc', subDir: 'pvc-1' };
    expect(nfsSourceOf(raw)).to.include({ server: '10.0.0.5', share: '/export' });
    expect(() => nfsSourceOf({ subDir: '../etc' })).to.throw(CsiError);
    expect(() => nfsSourceOf({ subDir: 'a', mountOptions: 'x;reboot' })).to.throw(CsiError);
    expect(() => nfsSourceOf({ subDir: 'a', mountedAt: 'relative' })).to.throw(CsiError);
    expect(nfsSourceOf(undefined), 'no location carried').to.equal(undefined);
    expect((nfsSourceOf({ subDir: '' }) as { subDir: string }).subDir, "the export's root").to.equal('');
  });

  it('tells a static NFS share (a hand-made or migrated PV) by every field it needs', () => {
    const raw = encodeVolumeContext({ pool: 'nfs', kind: 'share', static: true, ...at, subDir: '', mountOptions: [] });
    expect(raw.static).to.equal('true');
    expect(staticNfsShareOf(raw)).to.deep.equal(at);
    for (const [k, v] of [
      ['static', 'yes'],
      ['kind', 'block'],
      ['pool', 'local'],
      ['server', ''],
    ] as const) {
      expect(staticNfsShareOf({ ...raw, [k]: v }), `${k}=${v}`).to.equal(undefined);
    }
  });

  it('writes and reads read-only in the publish context, and reads nothing else as read-only', () => {
    expect(encodePublishContext({ kind: 'block', readonly: true })).to.deep.equal({ kind: 'block', readonly: 'true' });
    expect(encodePublishContext({ kind: 'share' })).to.deep.equal({ kind: 'share' });
    expect(decodePublishContext(encodePublishContext({ kind: 'block', readonly: true })).readonly).to.equal(true);
    const notReadOnly: Array<Record<string, string> | undefined> = [undefined, {}, { readonly: 'false' }, { readonly: 'TRUE' }];
    for (const raw of notReadOnly) expect(decodePublishContext(raw).readonly).to.equal(false);
  });
});
