// StorageClass parameters, capabilities and sizes: parsed once at the edge
// (fast tier). Table rows: the parameters, and the code (or value) they get.
import { expect } from 'chai';
import { blockFsType, capabilityProblem } from '../../volume/capabilities.js';
import type { VolumeCapability } from '../../volume/csi.js';
import { CsiError } from '../../volume/errors.js';
import { expandSubDir, identityParameters, PV_NAME, PVC_NAME, PVC_NAMESPACE, parseParameters } from '../../volume/parameters.js';
import { parseQuantity } from '../../volume/quantity.js';
import { parseRange, requireName } from '../../volume/request-fields.js';

const refusedWith = (fn: () => unknown, pattern: RegExp) => expect(fn).to.throw(CsiError, pattern);

describe('StorageClass parameters', () => {
  it('makes local block images thick unless the class asks for thin; NFS images are thin', () => {
    expect(parseParameters({ kind: 'block' }).provisioning).to.equal('thick');
    expect(parseParameters({ kind: 'block', provisioning: 'thin' }).provisioning).to.equal('thin');
    expect(parseParameters({ pool: 'nfs', kind: 'block', server: 'nas', share: '/e' }).provisioning).to.equal('thin');
  });

  it('defaults to a local share that is deleted with its volume', () => {
    expect(parseParameters({})).to.deep.include({ pool: 'local', kind: 'share', onDelete: 'delete', mountPermissions: 0o777 });
  });

  it('parses an NFS class, normalising the share', () => {
    const p = parseParameters({
      pool: 'nfs',
      kind: 'block',
      server: 'nas',
      share: '/export/',
      mountOptions: 'nfsvers=4.1, hard',
      nfsPort: '2049',
      mountedAt: '/mnt/nas',
    });
    expect(p.pool === 'nfs' && p.nfs).to.deep.equal({
      server: 'nas',
      share: '/export',
      nfsPort: 2049,
      mountPort: undefined,
      subDir: '${pv.metadata.name}',
      mountOptions: ['nfsvers=4.1', 'hard'],
      mountedAt: '/mnt/nas',
    });
  });

  const refusals: Array<[string, Record<string, string>, RegExp]> = [
    ['an unknown key', { colour: 'blue' }, /unknown StorageClass parameter "colour"/],
    ['an NFS key on a local class', { server: 'nas' }, /belongs to pool: nfs/],
    ['an unknown pool', { pool: 'ceph' }, /must be one of local, nfs/],
    ['an unknown kind', { kind: 'disk' }, /must be one of share, block/],
    ['an unknown onDelete', { onDelete: 'shred' }, /must be one of delete, retain, archive/],
    ['a mode that is not octal', { mountPermissions: '0789' }, /octal mode/],
    ['mountPermissions on a block class', { kind: 'block', mountPermissions: '0700' }, /share kind only/],
    ['an NFS class without a server', { pool: 'nfs', share: '/e' }, /host name/],
    ['an NFS class with a relative share', { pool: 'nfs', server: 'nas', share: 'e' }, /absolute path/],
    ['a port out of range', { pool: 'nfs', server: 'nas', share: '/e', nfsPort: '70000' }, /TCP port/],
    ['a mount option with a space', { pool: 'nfs', server: 'nas', share: '/e', mountOptions: 'a b' }, /not allowed in a mount option/],
    ['provisioning on a share class', { kind: 'share', provisioning: 'thin' }, /block kind only/],
    [
      'thick provisioning on an NFS class',
      { pool: 'nfs', kind: 'block', server: 'nas', share: '/e', provisioning: 'thick' },
      /cannot reserve space/,
    ],
    ['an unknown provisioning', { kind: 'block', provisioning: 'lazy' }, /must be one of thick, thin/],
  ];
  for (const [label, params, pattern] of refusals) {
    it(`refuses ${label} with INVALID_ARGUMENT`, () => refusedWith(() => parseParameters(params), pattern));
  }

  it('accepts the external-provisioner metadata keys, and leaves them out of the identity', () => {
    const params = { kind: 'share', [PVC_NAME]: 'data', [PVC_NAMESPACE]: 'team', [PV_NAME]: 'pvc-1' };
    expect(parseParameters(params)).to.deep.include({ pvcName: 'data', pvcNamespace: 'team', pvName: 'pvc-1' });
    expect(identityParameters(params)).to.deep.equal({ kind: 'share' });
  });

  it('expands subDir templates into plain relative paths', () => {
    const p = parseParameters({
      pool: 'nfs',
      server: 'nas',
      share: '/e',
      subDir: '${pvc.metadata.namespace}/${pvc.metadata.name}',
      [PVC_NAME]: 'data',
      [PVC_NAMESPACE]: 'team',
    });
    expect(expandSubDir(p.pool === 'nfs' ? p.nfs.subDir : '', p, 'pvc-1')).to.equal('team/data');
    expect(expandSubDir('${pv.metadata.name}', p, 'pvc-1')).to.equal('pvc-1');
    refusedWith(() => expandSubDir('${pvc.metadata.uid}', p, 'pvc-1'), /only/);
    refusedWith(() => expandSubDir('a//${pv.metadata.name}', p, 'pvc-1'), /plain components/);
    refusedWith(() => expandSubDir('.berth/${pv.metadata.name}', p, 'pvc-1'), /\.berth/);
    const noMeta = parseParameters({ pool: 'nfs', server: 'nas', share: '/e' });
    refusedWith(() => expandSubDir('${pvc.metadata.name}', noMeta, 'pvc-1'), /--extra-create-metadata/);
  });
});

describe('volume capabilities', () => {
  const cap = (c: object) => c as VolumeCapability;
  const cases: Array<[string, 'share' | 'block', object, RegExp | undefined]> = [
    ['a share mounted by many', 'share', { access_type: 'mount', mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } }, undefined],
    [
      'a share as raw block',
      'share',
      { access_type: 'block', block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
      /raw block access needs kind "block"/,
    ],
    [
      'a block volume on many nodes',
      'block',
      { access_type: 'mount', mount: {}, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } },
      /single-node/,
    ],
    [
      'an unsupported filesystem',
      'block',
      { access_type: 'mount', mount: { fs_type: 'ntfs' }, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
      /not supported/,
    ],
    ['no access mode', 'block', { access_type: 'mount', mount: {} }, /access_mode is required/],
    ['no access type', 'share', { access_mode: { mode: 'SINGLE_NODE_WRITER' } }, /access_type/],
    ['raw block, single node', 'block', { access_type: 'block', block: {}, access_mode: { mode: 'SINGLE_NODE_SINGLE_WRITER' } }, undefined],
  ];
  for (const [label, kind, c, problem] of cases) {
    it(`${problem ? 'explains why it refuses' : 'accepts'} ${label}`, () => {
      const got = capabilityProblem(kind, cap(c));
      if (problem) expect(got).to.match(problem);
      else expect(got).to.equal(undefined);
    });
  }

  it('finds the one filesystem a block volume is made for', () => {
    const m = (fs_type: string) => cap({ access_type: 'mount', mount: { fs_type }, access_mode: { mode: 'SINGLE_NODE_WRITER' } });
    expect(blockFsType([m('')])).to.equal('ext4');
    expect(blockFsType([m('xfs'), m('xfs')])).to.equal('xfs');
    expect(blockFsType([cap({ access_type: 'block', block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } })])).to.equal('');
    expect(() => blockFsType([m('xfs'), m('ext4')])).to.throw(/different filesystems/);
  });
});

describe('sizes and names', () => {
  it('parses Kubernetes quantities', () => {
    expect(parseQuantity('512Mi')).to.equal(512 * 2 ** 20);
    expect(parseQuantity('10Gi')).to.equal(10 * 2 ** 30);
    expect(parseQuantity('500M')).to.equal(500e6);
    expect(parseQuantity('1024')).to.equal(1024);
    expect(() => parseQuantity('1.5Gi')).to.throw(/not like/);
  });

  it('reads int64 capacity ranges and refuses impossible ones', () => {
    expect(parseRange({ required_bytes: '1048576', limit_bytes: '0' })).to.deep.equal({ required: 1048576, limit: 0 });
    refusedWith(() => parseRange({ required_bytes: '10', limit_bytes: '5' }), /exceeds limit_bytes/);
    refusedWith(() => parseRange({ required_bytes: '-1' }), /negative/);
    refusedWith(() => parseRange({ required_bytes: '9223372036854775807' }), /larger than berth supports/);
  });

  it('refuses names that are missing, too long or hold control characters', () => {
    refusedWith(() => requireName(''), /required/);
    refusedWith(() => requireName('x'.repeat(129)), /128 bytes/);
    refusedWith(() => requireName('a\u0007b'), /control characters/);
    refusedWith(() => requireName(Buffer.from([0x70, 0xff, 0x71]).toString('utf8')), /not valid UTF-8/);
    expect(requireName('pvc-1')).to.equal('pvc-1');
  });
});
