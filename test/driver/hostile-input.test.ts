// Hostile and malformed input, across every RPC: each request gets the code
// the CSI spec names for it, and changes nothing: not a file in the pool or
// the kubelet directory, not a mount, not a loop device. A real volume is
// staged and published first, so the requests have real paths to aim at.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { blockCap, Code, mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { exec, loopTable, ourMountTargets, sha256File } from '../helpers/host.js';
import { KubeletPaths, podUid } from '../helpers/kubelet.js';

type Service = 'identity' | 'controller' | 'node' | 'groupController';
interface Case {
  label: string;
  service: Service;
  method: string;
  request: () => object;
  /** The code it must get; OK where the spec says the call succeeds (an unknown volume deleted, say). */
  code: number | 'OK';
}

const MiB = 1024 * 1024;

describe('hostile input: every RPC, malformed and crafted requests, nothing changes', function () {
  this.timeout(180_000);
  let d: DriverProcess;
  let k: KubeletPaths;
  let outside: string;
  let victim: { id: string; staging: string; target: string; image: string };

  /** Everything a request could change: files under the pool and the kubelet directory, berth's mounts and loop devices. */
  async function snapshot(): Promise<string> {
    const files = async (dir: string) =>
      (await fs.readdir(dir, { recursive: true }).catch(() => [] as string[])).map((f) => path.join(dir, String(f))).sort();
    return JSON.stringify({
      pool: await files(d.poolDir),
      kubelet: (await files(d.kubeletDir)).filter((f) => !f.endsWith('.sock')),
      outside: await files(outside),
      mounts: await ourMountTargets(),
      loops: await loopTable(),
    });
  }

  before(async () => {
    d = await DriverProcess.start({ mode: 'all' });
    k = new KubeletPaths(d.kubeletDir);
    outside = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-outside-'));
    const cap = mountCap('SINGLE_NODE_WRITER', 'ext4');
    const { volume } = await rpc<{ volume: { volume_id: string } }>(d.clients.controller, 'CreateVolume', {
      name: 'pvc-victim',
      capacity_range: { required_bytes: 64 * MiB },
      volume_capabilities: [cap],
      parameters: { kind: 'block' },
    });
    await rpc(d.clients.controller, 'ControllerPublishVolume', { volume_id: volume.volume_id, node_id: 'node-a', volume_capability: cap });
    // A filesystem fully initialised up front: a fresh ext4 otherwise goes on writing its inode tables
    // (ext4lazyinit) after it is mounted, and only a request may change the victim's bytes here.
    await exec('mkfs.ext4', [
      '-q',
      '-F',
      '-E',
      'lazy_itable_init=0,lazy_journal_init=0',
      path.join(d.poolDir, 'volumes', 'pvc-victim.img'),
    ]);
    const staging = k.staging(volume.volume_id);
    await k.prepareStage(staging);
    await rpc(d.clients.node, 'NodeStageVolume', { volume_id: volume.volume_id, staging_target_path: staging, volume_capability: cap });
    const target = k.target(podUid(), 'pvc-victim');
    await k.preparePublish(target);
    await rpc(d.clients.node, 'NodePublishVolume', {
      volume_id: volume.volume_id,
      staging_target_path: staging,
      target_path: target,
      volume_capability: cap,
    });
    await fs.writeFile(path.join(target, 'precious'), 'the victim volume');
    await exec('sync');
    // A symbolic link planted below the kubelet directory, pointing outside it.
    await fs.mkdir(path.join(d.kubeletDir, 'pods', 'evil-pod'), { recursive: true });
    await fs.symlink(outside, path.join(d.kubeletDir, 'pods', 'evil-pod', 'link'));
    victim = { id: volume.volume_id, staging, target, image: path.join(d.poolDir, 'volumes', 'pvc-victim.img') };
  });

  after(async () => {
    await rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: victim.id, target_path: victim.target });
    await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: victim.id, staging_target_path: victim.staging });
    await rpc(d.clients.controller, 'ControllerUnpublishVolume', { volume_id: victim.id, node_id: 'node-a' });
    await rpc(d.clients.controller, 'DeleteVolume', { volume_id: victim.id });
    await d.cleanup();
    await fs.rm(outside, { recursive: true, force: true });
  });

  const cap = mountCap('SINGLE_NODE_WRITER', 'ext4');
  const share = mountCap('MULTI_NODE_MULTI_WRITER');
  const long = (n: number) => 'x'.repeat(n);
  const invalidUtf8 = Buffer.from([0x70, 0x76, 0x63, 0xff, 0xfe]).toString('utf8');
  const cases: Case[] = [];
  const add = (service: Service, method: string, code: number | 'OK', label: string, request: () => object) =>
    cases.push({ service, method, code, label, request });

  // ----------------------------------------------------------- CreateVolume
  const create = (over: object) => ({ name: 'pvc-hostile', volume_capabilities: [share], parameters: {}, ...over });
  for (const [label, name] of [
    ['no name', ''],
    ['a name over 128 bytes', long(129)],
    ['a name with a control character', 'pvc\u0001x'],
    ['a name with DEL', 'pvc\u007fx'],
    ['a name that was invalid UTF-8', invalidUtf8],
  ] as const) {
    add('controller', 'CreateVolume', Code.INVALID_ARGUMENT, label, () => create({ name }));
  }
  for (const [label, parameters] of [
    ['an unknown parameter', { colour: 'blue' }],
    ['a reserved csi.storage.k8s.io key that is not sent', { 'csi.storage.k8s.io/fstype': 'ext4' }],
    ['an NFS key on a local class', { server: 'nas' }],
    ['an unknown pool', { pool: 'ceph' }],
    ['an unknown kind', { kind: 'disk' }],
    ['an unknown onDelete', { onDelete: 'shred' }],
    ['a mode that is not octal', { mountPermissions: '0999' }],
    ['a mode out of range', { mountPermissions: '77777' }],
    ['mountPermissions on block', { kind: 'block', mountPermissions: '0700' }],
    ['provisioning on a share', { provisioning: 'thin' }],
    ['an unknown provisioning', { kind: 'block', provisioning: 'lazy' }],
    ['an NFS class without server', { pool: 'nfs', share: '/e' }],
    ['a server that is an option', { pool: 'nfs', server: '-oremount', share: '/e' }],
    ['a server with a shell', { pool: 'nfs', server: 'nas;reboot', share: '/e' }],
    ['a server with a space', { pool: 'nfs', server: 'nas x', share: '/e' }],
    ['a relative share', { pool: 'nfs', server: 'nas', share: 'export' }],
    ['a share that climbs', { pool: 'nfs', server: 'nas', share: '/e/../../etc' }],
    ['a share with //', { pool: 'nfs', server: 'nas', share: '/e//x' }],
    ['a share with NUL', { pool: 'nfs', server: 'nas', share: '/e\u0000x' }],
    ['a subDir that climbs', { pool: 'nfs', server: 'nas', share: '/e', subDir: '../x' }],
    ['an absolute subDir', { pool: 'nfs', server: 'nas', share: '/e', subDir: '/etc' }],
    ['a subDir with //', { pool: 'nfs', server: 'nas', share: '/e', subDir: 'a//b' }],
    ['a subDir with .', { pool: 'nfs', server: 'nas', share: '/e', subDir: 'a/./b' }],
    ['a subDir in .berth', { pool: 'nfs', server: 'nas', share: '/e', subDir: '.berth/volumes' }],
    ['an unknown subDir template', { pool: 'nfs', server: 'nas', share: '/e', subDir: '${pvc.metadata.uid}' }],
    ['a template without its metadata', { pool: 'nfs', server: 'nas', share: '/e', subDir: '${pvc.metadata.name}' }],
    [
      'a template expanding to ..',
      { pool: 'nfs', server: 'nas', share: '/e', subDir: '${pvc.metadata.name}', 'csi.storage.k8s.io/pvc/name': '..' },
    ],
    ['a mount option with a space', { pool: 'nfs', server: 'nas', share: '/e', mountOptions: 'a b' }],
    ['a mount option with a shell', { pool: 'nfs', server: 'nas', share: '/e', mountOptions: 'x;reboot' }],
    ['a mount option with $()', { pool: 'nfs', server: 'nas', share: '/e', mountOptions: 'x=$(id)' }],
    ['a port that is not a number', { pool: 'nfs', server: 'nas', share: '/e', nfsPort: 'x' }],
    ['port 0', { pool: 'nfs', server: 'nas', share: '/e', nfsPort: '0' }],
    ['a port over 65535', { pool: 'nfs', server: 'nas', share: '/e', mountPort: '65536' }],
    ['a relative mountedAt', { pool: 'nfs', server: 'nas', share: '/e', mountedAt: 'mnt' }],
    ['a mountedAt that climbs', { pool: 'nfs', server: 'nas', share: '/e', mountedAt: '/mnt/../etc' }],
    ['a uid that is not a number', { pool: 'nfs', server: 'nas', share: '/e', nfsUid: 'root' }],
    ['a negative uid', { pool: 'nfs', server: 'nas', share: '/e', nfsUid: '-1' }],
    ['a gid without a uid', { pool: 'nfs', server: 'nas', share: '/e', nfsGid: '100' }],
    ['thick on an NFS class', { pool: 'nfs', kind: 'block', server: 'nas', share: '/e', provisioning: 'thick' }],
  ] as const) {
    add('controller', 'CreateVolume', Code.INVALID_ARGUMENT, `parameters with ${label}`, () => create({ parameters }));
  }
  for (const [label, caps, code] of [
    ['no capabilities', [], Code.INVALID_ARGUMENT],
    ['a capability without access mode', [{ mount: {} }], Code.INVALID_ARGUMENT],
    ['a capability without access type', [{ access_mode: { mode: 'SINGLE_NODE_WRITER' } }], Code.INVALID_ARGUMENT],
    ['an UNKNOWN access mode', [{ mount: {}, access_mode: { mode: 'UNKNOWN' } }], Code.INVALID_ARGUMENT],
    ['raw block on a share', [blockCap()], Code.INVALID_ARGUMENT],
  ] as const) {
    add('controller', 'CreateVolume', code, label, () => create({ volume_capabilities: caps }));
  }
  for (const [label, over, code] of [
    [
      'a block volume on many nodes',
      { parameters: { kind: 'block' }, volume_capabilities: [mountCap('MULTI_NODE_MULTI_WRITER')] },
      Code.INVALID_ARGUMENT,
    ],
    [
      'an unsupported filesystem',
      { parameters: { kind: 'block' }, volume_capabilities: [mountCap('SINGLE_NODE_WRITER', 'ntfs')] },
      Code.INVALID_ARGUMENT,
    ],
    [
      'two filesystems at once',
      {
        parameters: { kind: 'block' },
        volume_capabilities: [mountCap('SINGLE_NODE_WRITER', 'xfs'), mountCap('SINGLE_NODE_WRITER', 'ext4')],
      },
      Code.INVALID_ARGUMENT,
    ],
    ['a negative size', { capacity_range: { required_bytes: '-1' } }, Code.INVALID_ARGUMENT],
    ['required over limit', { capacity_range: { required_bytes: '100', limit_bytes: '10' } }, Code.INVALID_ARGUMENT],
    ['a size beyond what berth supports', { capacity_range: { required_bytes: '9223372036854775807' } }, Code.OUT_OF_RANGE],
    [
      'a block volume smaller than ext4 allows',
      { parameters: { kind: 'block' }, volume_capabilities: [cap], capacity_range: { required_bytes: '4096' } },
      Code.OUT_OF_RANGE,
    ],
    [
      'a block volume larger than the pool',
      { parameters: { kind: 'block' }, volume_capabilities: [cap], capacity_range: { required_bytes: String(2 ** 50) } },
      Code.RESOURCE_EXHAUSTED,
    ],
    ['a volume from a snapshot that does not exist', { volume_content_source: { snapshot: { snapshot_id: 'x' } } }, Code.NOT_FOUND],
    [
      'a volume from a snapshot id that climbs out',
      { volume_content_source: { snapshot: { snapshot_id: 'local:node-a:block-snapshot:../../etc' } } },
      Code.NOT_FOUND,
    ],
    ['a volume from no snapshot id', { volume_content_source: { snapshot: { snapshot_id: '' } } }, Code.INVALID_ARGUMENT],
    [
      "a share cloned from the victim's block image",
      { volume_content_source: { volume: { volume_id: 'local:node-a:block:pvc-victim' } } },
      Code.INVALID_ARGUMENT,
    ],
    [
      "a snapshot held by another node's pool",
      { volume_content_source: { snapshot: { snapshot_id: 'local:node-z:share-snapshot:s' } } },
      Code.RESOURCE_EXHAUSTED,
    ],
    ['an unknown mutable parameter', { mutable_parameters: { iops: '1000' } }, Code.INVALID_ARGUMENT],
    [
      'a topology naming another node',
      { accessibility_requirements: { requisite: [{ segments: { 'topology.berth.csi.dev/node': 'node-z' } }] } },
      Code.RESOURCE_EXHAUSTED,
    ],
    [
      "the victim's name with another size",
      {
        name: 'pvc-victim',
        parameters: { kind: 'block' },
        volume_capabilities: [cap],
        capacity_range: { required_bytes: String(128 * MiB) },
      },
      Code.ALREADY_EXISTS,
    ],
    ["the victim's name as a share", { name: 'pvc-victim' }, Code.ALREADY_EXISTS],
  ] as const) {
    add('controller', 'CreateVolume', code, label, () => create(over));
  }

  // -------------------------------------------------- other controller RPCs
  const badIds = ['', long(129)];
  for (const id of badIds) {
    const what = id ? 'an id over 128 bytes' : 'no id';
    add('controller', 'DeleteVolume', Code.INVALID_ARGUMENT, what, () => ({ volume_id: id }));
    add('controller', 'ControllerGetVolume', Code.INVALID_ARGUMENT, what, () => ({ volume_id: id }));
    add('controller', 'ValidateVolumeCapabilities', Code.INVALID_ARGUMENT, what, () => ({ volume_id: id, volume_capabilities: [cap] }));
    add('controller', 'ControllerPublishVolume', Code.INVALID_ARGUMENT, what, () => ({
      volume_id: id,
      node_id: 'node-a',
      volume_capability: cap,
    }));
    add('controller', 'ControllerUnpublishVolume', Code.INVALID_ARGUMENT, what, () => ({ volume_id: id, node_id: 'node-a' }));
    add('controller', 'ControllerExpandVolume', Code.INVALID_ARGUMENT, what, () => ({
      volume_id: id,
      capacity_range: { required_bytes: MiB },
    }));
  }
  const crafted = [
    'local:node-a:block:../../etc/passwd',
    'local:node-a:share:x.json',
    'local:node-b:block:pvc-victim',
    'local:NODE:block:pvc-victim',
    'nfs:127.0.0.1:../../etc:share:x',
    'nfs:-oremount:/e:share:x',
    'nfs:127.0.0.1@99999@:/e:share:x',
    'local:node-a:block:pvc-victim:extra',
    'totally-not-an-id',
  ];
  for (const id of crafted) {
    add('controller', 'ControllerGetVolume', Code.NOT_FOUND, `a crafted id ${id}`, () => ({ volume_id: id }));
    add('controller', 'ValidateVolumeCapabilities', Code.NOT_FOUND, `a crafted id ${id}`, () => ({
      volume_id: id,
      volume_capabilities: [cap],
    }));
    add('controller', 'ControllerPublishVolume', Code.NOT_FOUND, `a crafted id ${id}`, () => ({
      volume_id: id,
      node_id: 'node-a',
      volume_capability: cap,
    }));
    add('controller', 'ControllerExpandVolume', Code.NOT_FOUND, `a crafted id ${id}`, () => ({
      volume_id: id,
      capacity_range: { required_bytes: MiB },
    }));
  }
  for (const id of crafted.filter((i) => !i.startsWith('local:node-b'))) {
    add('controller', 'DeleteVolume', 'OK', `a crafted id ${id} (not a volume: nothing to delete)`, () => ({ volume_id: id }));
  }
  add('controller', 'DeleteVolume', Code.FAILED_PRECONDITION, "another node's volume", () => ({
    volume_id: 'local:node-b:block:pvc-victim',
  }));
  add('controller', 'DeleteVolume', Code.FAILED_PRECONDITION, 'the victim, still published', () => ({ volume_id: victim.id }));
  add('controller', 'ControllerPublishVolume', Code.INVALID_ARGUMENT, 'no node', () => ({ volume_id: victim.id, volume_capability: cap }));
  add('controller', 'ControllerPublishVolume', Code.INVALID_ARGUMENT, 'a node id over 256 bytes', () => ({
    volume_id: victim.id,
    node_id: long(257),
    volume_capability: cap,
  }));
  add('controller', 'ControllerPublishVolume', Code.INVALID_ARGUMENT, 'no capability', () => ({ volume_id: victim.id, node_id: 'node-a' }));
  add('controller', 'ControllerPublishVolume', Code.NOT_FOUND, 'an unknown node', () => ({
    volume_id: victim.id,
    node_id: 'node-z',
    volume_capability: cap,
  }));
  add('controller', 'ControllerPublishVolume', Code.INVALID_ARGUMENT, 'a block volume to many nodes', () => ({
    volume_id: victim.id,
    node_id: 'node-a',
    volume_capability: mountCap('MULTI_NODE_MULTI_WRITER'),
  }));
  add('controller', 'ValidateVolumeCapabilities', Code.INVALID_ARGUMENT, 'no capabilities', () => ({
    volume_id: victim.id,
    volume_capabilities: [],
  }));
  add('controller', 'ControllerExpandVolume', Code.INVALID_ARGUMENT, 'no capacity range', () => ({ volume_id: victim.id }));
  add('controller', 'ControllerExpandVolume', Code.INVALID_ARGUMENT, 'a negative size', () => ({
    volume_id: victim.id,
    capacity_range: { required_bytes: '-5' },
  }));
  add('controller', 'ControllerExpandVolume', Code.RESOURCE_EXHAUSTED, 'a size larger than the pool', () => ({
    volume_id: victim.id,
    capacity_range: { required_bytes: String(2 ** 42) }, // 4 TiB: more than the disk, less than ext4's largest file
  }));
  for (const token of ['garbage', 'djE6', `${Buffer.from('v1:\n../x').toString('base64')}==`, long(500)]) {
    add('controller', 'ListVolumes', Code.ABORTED, `a starting token it did not issue (${token.slice(0, 12)})`, () => ({
      starting_token: token,
    }));
  }
  add('controller', 'ListVolumes', Code.INVALID_ARGUMENT, 'negative max_entries', () => ({ max_entries: -1 }));
  for (const parameters of [{ colour: 'blue' }, { pool: 'nfs' }, { kind: 'block', provisioning: 'x' }]) {
    add('controller', 'GetCapacity', Code.INVALID_ARGUMENT, `parameters ${JSON.stringify(parameters)}`, () => ({ parameters }));
  }
  // ---------------------------------------------- snapshots, modification
  const snap = (over: object) => ({ name: 'snap-hostile', source_volume_id: victim.id, ...over });
  add('controller', 'CreateSnapshot', Code.INVALID_ARGUMENT, 'no name', () => snap({ name: '' }));
  add('controller', 'CreateSnapshot', Code.INVALID_ARGUMENT, 'a name over 128 bytes', () => snap({ name: long(129) }));
  add('controller', 'CreateSnapshot', Code.INVALID_ARGUMENT, 'no source', () => snap({ source_volume_id: '' }));
  add('controller', 'CreateSnapshot', Code.NOT_FOUND, 'a source that does not exist', () =>
    snap({ source_volume_id: 'local:node-a:block:nosuch' }),
  );
  add('controller', 'CreateSnapshot', Code.NOT_FOUND, "another node's volume", () =>
    snap({ source_volume_id: 'local:node-z:block:pvc-victim' }),
  );
  add('controller', 'CreateSnapshot', Code.INVALID_ARGUMENT, 'an unknown parameter', () => snap({ parameters: { colour: 'blue' } }));
  add('controller', 'CreateSnapshot', Code.INVALID_ARGUMENT, 'freeze neither true nor false', () =>
    snap({ parameters: { freeze: 'maybe' } }),
  );
  add('controller', 'DeleteSnapshot', Code.INVALID_ARGUMENT, 'no id', () => ({}));
  add('controller', 'DeleteSnapshot', Code.FAILED_PRECONDITION, "another node's snapshot", () => ({
    snapshot_id: 'local:node-z:block-snapshot:s',
  }));
  add('controller', 'DeleteSnapshot', 'OK', 'an id that climbs out (not ours: nothing to do)', () => ({
    snapshot_id: 'local:node-a:block-snapshot:..',
  }));
  add('controller', 'GetSnapshot', Code.INVALID_ARGUMENT, 'no id', () => ({}));
  add('controller', 'GetSnapshot', Code.NOT_FOUND, 'a snapshot that does not exist', () => ({
    snapshot_id: 'local:node-a:block-snapshot:s',
  }));
  add('controller', 'ListSnapshots', Code.ABORTED, 'a starting token it did not issue', () => ({ starting_token: 'garbage' }));
  add('controller', 'ListSnapshots', Code.ABORTED, "a volume list's token", () => ({
    starting_token: Buffer.from('v1:\nx').toString('base64url'),
  }));
  add('controller', 'ListSnapshots', Code.INVALID_ARGUMENT, 'negative max_entries', () => ({ max_entries: -1 }));
  const modify = (mutable_parameters: Record<string, string>) => () => ({ volume_id: victim.id, mutable_parameters });
  add('controller', 'ControllerModifyVolume', Code.INVALID_ARGUMENT, 'no id', () => ({ mutable_parameters: { onDelete: 'retain' } }));
  add('controller', 'ControllerModifyVolume', Code.INVALID_ARGUMENT, 'an unknown key', modify({ size: '1Ti' }));
  add('controller', 'ControllerModifyVolume', Code.INVALID_ARGUMENT, 'an unknown onDelete', modify({ onDelete: 'shred' }));
  add('controller', 'ControllerModifyVolume', Code.NOT_FOUND, 'a volume that does not exist', () => ({
    volume_id: 'local:node-a:block:nosuch',
    mutable_parameters: { onDelete: 'retain' },
  }));
  add('groupController', 'CreateVolumeGroupSnapshot', Code.INVALID_ARGUMENT, 'no name', () => ({ source_volume_ids: [victim.id] }));
  add('groupController', 'CreateVolumeGroupSnapshot', Code.INVALID_ARGUMENT, 'no sources', () => ({ name: 'g' }));
  add('groupController', 'CreateVolumeGroupSnapshot', Code.NOT_FOUND, 'a source that does not exist', () => ({
    name: 'g',
    source_volume_ids: [victim.id, 'local:node-a:share:nosuch'],
  }));
  add('groupController', 'GetVolumeGroupSnapshot', Code.NOT_FOUND, 'a group that does not exist', () => ({
    group_snapshot_id: 'local:node-a:group:g',
  }));
  add('groupController', 'DeleteVolumeGroupSnapshot', Code.INVALID_ARGUMENT, 'no id', () => ({}));

  // -------------------------------------------------------------- node RPCs
  const badPaths: Array<[string, () => string]> = [
    ['a relative path', () => 'pods/x/mount'],
    ['a path outside the kubelet directory', () => '/etc'],
    ['a path that climbs out', () => `${d.kubeletDir}/pods/../../../etc`],
    ['a path with NUL', () => `${d.kubeletDir}/pods/a\u0000b`],
    ['a component over 255 bytes', () => `${d.kubeletDir}/pods/${long(256)}/mount`],
    ['a path over 4096 bytes', () => `${d.kubeletDir}/${long(4100)}`],
    ['a path through a symlink out', () => path.join(d.kubeletDir, 'pods', 'evil-pod', 'link', 'mount')],
    ['a path that is a symlink out', () => path.join(d.kubeletDir, 'pods', 'evil-pod', 'link')],
    ['the kubelet directory itself', () => d.kubeletDir],
  ];
  for (const [label, p] of badPaths) {
    add('node', 'NodeStageVolume', Code.INVALID_ARGUMENT, `staging: ${label}`, () => ({
      volume_id: victim.id,
      staging_target_path: p(),
      volume_capability: cap,
    }));
    add('node', 'NodeUnstageVolume', Code.INVALID_ARGUMENT, `staging: ${label}`, () => ({
      volume_id: victim.id,
      staging_target_path: p(),
    }));
    add('node', 'NodePublishVolume', Code.INVALID_ARGUMENT, `target: ${label}`, () => ({
      volume_id: victim.id,
      staging_target_path: victim.staging,
      target_path: p(),
      volume_capability: cap,
    }));
    add('node', 'NodeUnpublishVolume', Code.INVALID_ARGUMENT, `target: ${label}`, () => ({ volume_id: victim.id, target_path: p() }));
    add('node', 'NodeGetVolumeStats', Code.NOT_FOUND, `volume_path: ${label}`, () => ({ volume_id: victim.id, volume_path: p() }));
  }
  add('node', 'NodeStageVolume', Code.INVALID_ARGUMENT, 'no id', () => ({ staging_target_path: victim.staging, volume_capability: cap }));
  add('node', 'NodeStageVolume', Code.INVALID_ARGUMENT, 'no staging path', () => ({ volume_id: victim.id, volume_capability: cap }));
  add('node', 'NodeStageVolume', Code.INVALID_ARGUMENT, 'no capability', () => ({
    volume_id: victim.id,
    staging_target_path: victim.staging,
  }));
  add('node', 'NodeStageVolume', Code.ALREADY_EXISTS, 'the victim again as xfs', () => ({
    volume_id: victim.id,
    staging_target_path: victim.staging,
    volume_capability: mountCap('SINGLE_NODE_WRITER', 'xfs'),
  }));
  add('node', 'NodeStageVolume', Code.ALREADY_EXISTS, 'the victim again with other mount flags', () => ({
    volume_id: victim.id,
    staging_target_path: victim.staging,
    volume_capability: mountCap('SINGLE_NODE_WRITER', 'ext4', ['noatime']),
  }));
  add('node', 'NodeStageVolume', Code.INVALID_ARGUMENT, 'mount flags that are not options', () => ({
    volume_id: victim.id,
    staging_target_path: victim.staging,
    volume_capability: mountCap('SINGLE_NODE_WRITER', 'ext4', ['x;reboot']),
  }));
  add('node', 'NodeStageVolume', Code.NOT_FOUND, 'a volume that does not exist', () => ({
    volume_id: 'local:node-a:block:pvc-ghost',
    staging_target_path: k.staging('local:node-a:block:pvc-ghost'),
    volume_capability: cap,
  }));
  const nfsId = `nfs:127.0.0.1:/export:share:pvc-nfs-hostile`;
  for (const [label, context] of [
    ['mountedAt /etc', { subDir: '', mountedAt: '/etc' }],
    ['mountedAt /', { subDir: 'etc', mountedAt: '/' }],
    ['a subDir that climbs', { subDir: '../../etc' }],
    ['an absolute subDir', { subDir: '/etc' }],
    ['a subDir with //', { subDir: 'a//b' }],
    ['mount options with a shell', { subDir: 'x', mountOptions: 'x;reboot' }],
    ['mount options with a space', { subDir: 'x', mountOptions: 'ro, rw x' }],
  ] as const) {
    add('node', 'NodeStageVolume', Code.INVALID_ARGUMENT, `an NFS volume_context with ${label}`, () => ({
      volume_id: nfsId,
      staging_target_path: k.staging(nfsId),
      volume_capability: share,
      volume_context: context,
    }));
  }
  add('node', 'NodeStageVolume', Code.INVALID_ARGUMENT, 'an NFS volume without volume_context', () => ({
    volume_id: nfsId,
    staging_target_path: k.staging(nfsId),
    volume_capability: share,
  }));
  add('node', 'NodePublishVolume', Code.INVALID_ARGUMENT, 'no target', () => ({
    volume_id: victim.id,
    staging_target_path: victim.staging,
    volume_capability: cap,
  }));
  add('node', 'NodePublishVolume', Code.INVALID_ARGUMENT, 'no capability', () => ({
    volume_id: victim.id,
    staging_target_path: victim.staging,
    target_path: k.target('p', 'x'),
  }));
  add('node', 'NodePublishVolume', Code.FAILED_PRECONDITION, 'no staging path', () => ({
    volume_id: victim.id,
    target_path: k.target('p', 'x'),
    volume_capability: cap,
  }));
  add('node', 'NodePublishVolume', Code.INVALID_ARGUMENT, 'a target equal to the staging path', () => ({
    volume_id: victim.id,
    staging_target_path: victim.staging,
    target_path: victim.staging,
    volume_capability: cap,
  }));
  add('node', 'NodePublishVolume', Code.INVALID_ARGUMENT, 'a target inside the staging path', () => ({
    volume_id: victim.id,
    staging_target_path: victim.staging,
    target_path: path.join(victim.staging, 'inside', 'mount'),
    volume_capability: cap,
  }));
  add('node', 'NodePublishVolume', Code.ALREADY_EXISTS, 'the victim target again read-only', () => ({
    volume_id: victim.id,
    staging_target_path: victim.staging,
    target_path: victim.target,
    volume_capability: cap,
    readonly: true,
  }));
  for (const id of ['local:node-a:block:pvc-ghost', 'local:node-a:share:pvc-victim', 'nfs:127.0.0.1:/export:block:pvc-victim']) {
    add('node', 'NodeUnpublishVolume', Code.FAILED_PRECONDITION, `the victim target named as ${id}`, () => ({
      volume_id: id,
      target_path: victim.target,
    }));
    add('node', 'NodeUnstageVolume', Code.FAILED_PRECONDITION, `the victim staging named as ${id}`, () => ({
      volume_id: id,
      staging_target_path: victim.staging,
    }));
    add('node', 'NodeGetVolumeStats', Code.NOT_FOUND, `the victim target named as ${id}`, () => ({
      volume_id: id,
      volume_path: victim.target,
    }));
  }
  add('node', 'NodeUnstageVolume', Code.FAILED_PRECONDITION, 'the victim, still published', () => ({
    volume_id: victim.id,
    staging_target_path: victim.staging,
  }));
  add('node', 'NodeUnpublishVolume', Code.NOT_FOUND, "an id that is not berth's", () => ({
    volume_id: 'not-an-id',
    target_path: victim.target,
  }));
  add('node', 'NodeExpandVolume', Code.INVALID_ARGUMENT, 'no volume path', () => ({ volume_id: victim.id }));
  add('node', 'NodeExpandVolume', Code.NOT_FOUND, 'an unknown volume', () => ({
    volume_id: 'local:node-a:block:pvc-ghost',
    volume_path: victim.target,
  }));
  add('node', 'NodeExpandVolume', Code.OUT_OF_RANGE, 'a size the image does not have', () => ({
    volume_id: victim.id,
    volume_path: victim.target,
    staging_target_path: victim.staging,
    capacity_range: { required_bytes: String(2 * 64 * MiB) },
  }));
  // One volume inside another: a path below the victim's staged filesystem or its pod's mount.
  add('node', 'NodePublishVolume', Code.INVALID_ARGUMENT, 'a target inside the victim’s staged filesystem', () => ({
    volume_id: victim.id,
    staging_target_path: victim.staging,
    target_path: path.join(victim.staging, 'inner', 'mount'),
    volume_capability: cap,
  }));
  add('node', 'NodeStageVolume', Code.INVALID_ARGUMENT, 'a staging path inside the victim’s pod mount', () => ({
    volume_id: victim.id,
    staging_target_path: path.join(victim.target, 'inner'),
    volume_capability: cap,
  }));
  // Values echoed in messages are bounded, and so is every message.
  add('controller', 'CreateVolume', Code.INVALID_ARGUMENT, 'a parameter value of 1 MiB', () =>
    create({ parameters: { kind: long(1 << 20) } }),
  );
  add('controller', 'CreateVolume', Code.INVALID_ARGUMENT, 'mountOptions making a volume_context over 4 KiB', () =>
    create({ parameters: { pool: 'nfs', server: '127.0.0.1', share: '/e', mountOptions: Array(900).fill('noac').join(',') } }),
  );
  add('identity', 'Probe', 'OK', 'Probe after all of the above', () => ({}));

  it(`has at least 150 requests (${cases.length})`, () => {
    expect(cases.length).to.be.at.least(150);
  });

  it('answers each with its code, and changes nothing on disk, in the mount table or the loop table', async () => {
    const clients = () => ({
      identity: d.clients.identity,
      controller: d.clients.controller,
      node: d.clients.node,
      groupController: d.clients.groupController,
    });
    const before = await snapshot();
    await exec('sync'); // the listing above touched atimes inside the victim: let them reach its image first
    const imageBefore = await sha256File(victim.image);
    const wrong: string[] = [];
    for (const c of cases) {
      const got = await rpc(clients()[c.service], c.method, c.request()).then(
        () => 'OK',
        (err: { code: number; details: string }) => {
          if (/\n\s+at /.test(err.details ?? '')) wrong.push(`${c.method} ${c.label}: a stack trace in the message`);
          if (Buffer.byteLength(err.details ?? '') > 1024)
            wrong.push(`${c.method} ${c.label}: a message of ${Buffer.byteLength(err.details)} bytes`);
          return Code[err.code] as string;
        },
      );
      const want = c.code === 'OK' ? 'OK' : Code[c.code];
      if (got !== want) wrong.push(`${c.method} ${c.label}: got ${got}, want ${want}`);
      const now = await snapshot();
      if (now !== before) wrong.push(`${c.method} ${c.label}: changed the host (${now.length - before.length} bytes of listing)`);
    }
    expect(wrong).to.deep.equal([]);
    expect(await sha256File(victim.image), "the victim's bytes").to.equal(imageBefore);
    expect(await fs.readFile(path.join(victim.target, 'precious'), 'utf8')).to.equal('the victim volume');
  });
});
