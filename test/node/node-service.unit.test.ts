// The node service's decisions, through the fake host: no root, no devices,
// no mounts. Images, records and kubelet paths are real files in a
// temporary directory. (node.test.ts and nfs-node.test.ts run the same
// service on the real host, as root.)

import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { NodeService } from '../../node/node-service.js';
import { Code, CsiError } from '../../volume/errors.js';
import { LocalPoolLayout } from '../../volume/local-layout.js';
import type { VolumeRecord } from '../../volume/record.js';
import { FakeHost } from '../helpers/fake-host.js';
import { KubeletPaths } from '../helpers/kubelet.js';

const MiB = 1024 * 1024;
const mountCap = (mode = 'SINGLE_NODE_WRITER', fs_type = '', mount_flags: string[] = []) => ({
  access_type: 'mount',
  mount: { fs_type, mount_flags },
  access_mode: { mode },
});
const blockCap = (mode = 'SINGLE_NODE_WRITER') => ({ access_type: 'block', block: {}, access_mode: { mode } });

async function expectCode(promise: Promise<unknown>, code: Code): Promise<CsiError> {
  try {
    await promise;
  } catch (err) {
    expect(err, String(err)).to.be.instanceOf(CsiError);
    expect(Code[(err as CsiError).code], (err as Error).message).to.equal(Code[code]);
    return err as CsiError;
  }
  return expect.fail(`expected ${Code[code]}, the call succeeded`);
}

describe('node service decisions (fake host, no root)', () => {
  let dir: string;
  let host: FakeHost;
  let node: NodeService;
  let k: KubeletPaths;
  let pool: LocalPoolLayout;
  // Requests are plain objects; the service takes the generated request types.
  const call = (method: keyof NodeService, req: object) => (node[method] as (r: never) => Promise<unknown>).call(node, req as never);

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-node-unit-'));
    host = new FakeHost();
    pool = new LocalPoolLayout(path.join(dir, 'pool'));
    await fs.mkdir(pool.volumesDir, { recursive: true });
    k = new KubeletPaths(path.join(dir, 'kubelet'));
    await fs.mkdir(k.root);
    node = new NodeService({
      nodeId: 'node-a',
      pool,
      servesNfs: true,
      nfsMountDir: path.join(dir, 'nfs'),
      mountedAtDirs: [path.join(dir, 'premounted')],
      kubeletDir: k.root,
      stateDir: path.join(dir, 'state'),
      maxVolumesPerNode: 0,
      host,
    });
  });
  afterEach(async () => fs.rm(dir, { recursive: true, force: true }));

  /** A local volume as the controller leaves it: record and data entry. */
  async function localVolume(name: string, kind: 'share' | 'block', fsType = ''): Promise<string> {
    const volumeId = `local:node-a:${kind}:${name}`;
    const rec = {
      version: 1,
      name,
      volumeId,
      kind,
      capacityBytes: 64 * MiB,
      fsType,
      parameters: {},
      volumeContext: {},
      onDelete: 'delete',
      createdAt: '',
      attachments: {},
    } as VolumeRecord;
    await fs.writeFile(pool.recordPath(name), JSON.stringify(rec));
    if (kind === 'share') await fs.mkdir(pool.dataDir(name));
    else await fs.writeFile(pool.imagePath(name), '').then(() => fs.truncate(pool.imagePath(name), 64 * MiB));
    return volumeId;
  }

  async function stage(volumeId: string, cap: object, context: Record<string, string> = {}, staging = k.staging(volumeId)) {
    await k.prepareStage(staging);
    await call('NodeStageVolume', { volume_id: volumeId, staging_target_path: staging, volume_capability: cap, volume_context: context });
    return staging;
  }

  async function publish(volumeId: string, cap: object, staging: string, target: string, readonly = false) {
    await k.preparePublish(target);
    await call('NodePublishVolume', {
      volume_id: volumeId,
      staging_target_path: staging,
      target_path: target,
      volume_capability: cap,
      readonly,
    });
  }

  describe('required fields come before the volume (csi-sanity: INVALID_ARGUMENT, not NOT_FOUND)', () => {
    const unknown = 'local:node-a:block:no-such-volume';
    const cases: Array<[string, keyof NodeService, () => object]> = [
      ['NodeStageVolume without staging_target_path', 'NodeStageVolume', () => ({ volume_id: unknown, volume_capability: mountCap() })],
      [
        'NodeStageVolume without volume_capability',
        'NodeStageVolume',
        () => ({ volume_id: unknown, staging_target_path: k.staging(unknown) }),
      ],
      [
        'NodeStageVolume without volume_id',
        'NodeStageVolume',
        () => ({ staging_target_path: k.staging(unknown), volume_capability: mountCap() }),
      ],
      [
        'NodePublishVolume without target_path',
        'NodePublishVolume',
        () => ({ volume_id: unknown, staging_target_path: k.staging(unknown), volume_capability: mountCap() }),
      ],
      [
        'NodePublishVolume without volume_capability',
        'NodePublishVolume',
        () => ({ volume_id: unknown, staging_target_path: k.staging(unknown), target_path: k.target('u', 'pv') }),
      ],
      ['NodeUnstageVolume without staging_target_path', 'NodeUnstageVolume', () => ({ volume_id: unknown })],
      ['NodeUnpublishVolume without target_path', 'NodeUnpublishVolume', () => ({ volume_id: unknown })],
      ['NodeExpandVolume without volume_path', 'NodeExpandVolume', () => ({ volume_id: unknown })],
      ['NodeGetVolumeStats without volume_path', 'NodeGetVolumeStats', () => ({ volume_id: unknown })],
    ];
    for (const [label, method, req] of cases) {
      it(`${label}: INVALID_ARGUMENT`, async () => {
        await expectCode(call(method, req()), Code.INVALID_ARGUMENT);
        expect(host.calls).to.deep.equal([]);
      });
    }
  });

  describe('block volumes', () => {
    it('formats a blank image once, mounts it, and a second stage changes nothing', async () => {
      const id = await localVolume('pvc-a', 'block', 'ext4');
      const staging = await stage(id, mountCap('SINGLE_NODE_WRITER', 'ext4'));
      expect(host.calls).to.deep.equal([
        `losetup /dev/loop0 ${pool.imagePath('pvc-a')}`,
        'mkfs ext4 /dev/loop0',
        `mount -t ext4 /dev/loop0 ${staging}`,
      ]);
      await stage(id, mountCap('SINGLE_NODE_WRITER', 'ext4'));
      expect(host.calls).to.have.length(3);
    });

    it('refuses to format a device that holds another filesystem, and detaches it again', async () => {
      const id = await localVolume('pvc-xfs', 'block', 'ext4');
      host.image(pool.imagePath('pvc-xfs')).content = { state: 'filesystem', fsType: 'xfs' };
      const err = await expectCode(stage(id, mountCap('SINGLE_NODE_WRITER', 'ext4')), Code.FAILED_PRECONDITION);
      expect(err.message).to.match(/xfs filesystem, asked for ext4; refusing/);
      expect(host.calls.filter((c) => c.startsWith('mkfs') || c.startsWith('mount'))).to.deep.equal([]);
      expect(host.loops).to.deep.equal([]);
    });

    it('refuses a device holding a signature that is not a filesystem', async () => {
      const id = await localVolume('pvc-luks', 'block', 'ext4');
      host.image(pool.imagePath('pvc-luks')).content = { state: 'other', description: 'TYPE=crypto_LUKS USAGE=crypto' };
      const err = await expectCode(stage(id, mountCap('SINGLE_NODE_WRITER', 'ext4')), Code.FAILED_PRECONDITION);
      expect(err.message).to.contain('crypto_LUKS');
      expect(host.calls.some((c) => c.startsWith('mkfs'))).to.equal(false);
    });

    it('answers ALREADY_EXISTS when staged again with other mount flags or another access mode, and OK for the same again', async () => {
      const id = await localVolume('pvc-flags-again', 'block', 'ext4');
      const staging = await stage(id, mountCap('SINGLE_NODE_WRITER', 'ext4', ['noatime']));
      const calls = host.calls.length;
      await stage(id, mountCap('SINGLE_NODE_WRITER', 'ext4', ['noatime']));
      const flags = await expectCode(
        stage(id, mountCap('SINGLE_NODE_WRITER', 'ext4', ['noatime', 'password=hunter2'])),
        Code.ALREADY_EXISTS,
      );
      expect(flags.message).to.contain('mountFlags').and.not.contain('hunter2');
      const mode = await expectCode(stage(id, mountCap('SINGLE_NODE_MULTI_WRITER', 'ext4', ['noatime'])), Code.ALREADY_EXISTS);
      expect(mode.message).to.contain('accessMode');
      expect(host.calls).to.have.length(calls);
      await call('NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
      await stage(id, mountCap('SINGLE_NODE_MULTI_WRITER', 'ext4')); // once unstaged, anything goes
    });

    it('answers ALREADY_EXISTS when staged again as another filesystem', async () => {
      const id = await localVolume('pvc-b', 'block', 'ext4');
      await stage(id, mountCap('SINGLE_NODE_WRITER', 'ext4'));
      await expectCode(stage(id, mountCap('SINGLE_NODE_WRITER', 'xfs')), Code.ALREADY_EXISTS);
    });

    it('grows an ext4 filesystem offline before mounting when the image grew while unstaged', async () => {
      const id = await localVolume('pvc-grow', 'block', 'ext4');
      host.image(pool.imagePath('pvc-grow')).content = { state: 'filesystem', fsType: 'ext4' };
      host.image(pool.imagePath('pvc-grow')).fsBytes = 32 * MiB; // the image is 64 MiB
      const staging = await stage(id, mountCap('SINGLE_NODE_WRITER', 'ext4'));
      expect(host.calls).to.deep.equal([
        `losetup /dev/loop0 ${pool.imagePath('pvc-grow')}`,
        'fsck ext4 /dev/loop0',
        'grow offline ext4 /dev/loop0',
        `mount -t ext4 /dev/loop0 ${staging}`,
      ]);
    });

    it('trusts an intact superblock of the filesystem its record names: no probe, and e2fsck only when the superblock asks', async () => {
      const id = await localVolume('pvc-sb', 'block', 'ext4');
      const image = pool.imagePath('pvc-sb');
      const cap = mountCap('SINGLE_NODE_WRITER', 'ext4');
      const restage = async () => {
        await call('NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
        host.probes.length = 0;
        host.calls.length = 0;
        await stage(id, cap);
        return host.calls.filter((c) => !c.startsWith('losetup') && !c.startsWith('umount'));
      };
      const staging = await stage(id, cap); // formats, and records ext4
      host.superblocks.set(image, { fsType: 'ext4', bytes: 64 * MiB, needsCheck: false });
      expect(await restage()).to.deep.equal([`mount -t ext4 /dev/loop1 ${staging}`]);
      expect(host.probes).to.deep.equal([]);
      host.superblocks.set(image, { fsType: 'ext4', bytes: 32 * MiB, needsCheck: true });
      expect(await restage(), 'checked, and grown by what the superblock says').to.deep.equal([
        'fsck ext4 /dev/loop2',
        'grow offline ext4 /dev/loop2',
        `mount -t ext4 /dev/loop2 ${staging}`,
      ]);
      host.superblocks.set(image, { fsType: 'xfs', bytes: 64 * MiB, needsCheck: false });
      await restage();
      expect(host.probes, 'a superblock of another filesystem than the record’s: blkid decides').to.have.length(1);
    });

    it('keeps a filesystem record once it formatted, and then refuses a volume that lost its signature', async () => {
      const id = await localVolume('pvc-rec', 'block', 'ext4');
      const cap = mountCap('SINGLE_NODE_WRITER', 'ext4');
      const staging = await stage(id, cap);
      const record = JSON.parse(await fs.readFile(pool.filesystemRecordPath('pvc-rec'), 'utf8'));
      expect(record).to.deep.include({ volumeId: id, fsType: 'ext4', madeByBerth: true });
      await call('NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
      host.image(pool.imagePath('pvc-rec')).content = { state: 'blank' }; // the superblock was overwritten
      const err = await expectCode(stage(id, cap), Code.FAILED_PRECONDITION);
      expect(err.message).to.match(/berth made or mounted/);
      expect(host.calls.filter((c) => c.startsWith('mkfs'))).to.have.length(1);
    });

    it('records a filesystem it found (made before berth kept records), so it is never taken for blank later', async () => {
      const id = await localVolume('pvc-old', 'block', 'ext4');
      host.image(pool.imagePath('pvc-old')).content = { state: 'filesystem', fsType: 'ext4' };
      await stage(id, mountCap('SINGLE_NODE_WRITER', 'ext4'));
      const record = JSON.parse(await fs.readFile(pool.filesystemRecordPath('pvc-old'), 'utf8'));
      expect(record).to.deep.include({ fsType: 'ext4', madeByBerth: false });
    });

    it('refuses to format a blank-looking image that holds data', async () => {
      const id = await localVolume('pvc-data', 'block', 'ext4');
      host.withData.add(pool.imagePath('pvc-data'));
      const err = await expectCode(stage(id, mountCap('SINGLE_NODE_WRITER', 'ext4')), Code.FAILED_PRECONDITION);
      expect(err.message).to.match(/holds data but no filesystem signature/);
      expect(host.calls.some((c) => c.startsWith('mkfs'))).to.equal(false);
    });

    it('stages read-only without formatting or checking, and mounts ro', async () => {
      const blank = await localVolume('pvc-ro-blank', 'block', 'ext4');
      await expectCode(stage(blank, mountCap('SINGLE_NODE_READER_ONLY', 'ext4')), Code.FAILED_PRECONDITION);
      const id = await localVolume('pvc-ro-fs', 'block', 'ext4');
      host.image(pool.imagePath('pvc-ro-fs')).content = { state: 'filesystem', fsType: 'ext4' };
      host.calls.length = 0;
      const staging = await stage(id, mountCap('SINGLE_NODE_READER_ONLY', 'ext4'));
      expect(host.calls.filter((c) => !c.startsWith('losetup'))).to.deep.equal([`mount -t ext4 -o ro /dev/loop1 ${staging}`]);
    });

    it('stages raw block as a bind of the loop device onto <staging>/device, and unstage detaches it', async () => {
      const id = await localVolume('pvc-raw', 'block');
      const staging = await stage(id, blockCap(), {}, k.blockStaging('pv-raw'));
      expect(host.calls.at(-1)).to.equal(`bind /dev/loop0 ${staging}/device`);
      await call('NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
      expect(host.mounts).to.deep.equal([]);
      expect(host.loops).to.deep.equal([]);
    });

    it('publishes raw block read-only through a read-only loop device of its own, detached with its publish', async () => {
      const id = await localVolume('pvc-raw-ro', 'block');
      const staging = await stage(id, blockCap(), {}, k.blockStaging('pv-raw-ro'));
      const target = k.blockTarget('pv-raw-ro', 'pod-1');
      await publish(id, blockCap(), staging, target, true);
      expect(host.calls.slice(-2)).to.deep.equal([`losetup -r /dev/loop1 ${pool.imagePath('pvc-raw-ro')}`, `bind ro /dev/loop1 ${target}`]);
      await call('NodeUnpublishVolume', { volume_id: id, target_path: target });
      expect(host.loops.map((l) => l.device)).to.deep.equal(['/dev/loop0']);
    });

    it('refuses to unstage while published, unmounting nothing', async () => {
      const id = await localVolume('pvc-c', 'block', 'ext4');
      const cap = mountCap('SINGLE_NODE_WRITER', 'ext4');
      const staging = await stage(id, cap);
      await publish(id, cap, staging, k.target('pod-1', 'pv-c'));
      const before = host.mounts.length;
      await expectCode(call('NodeUnstageVolume', { volume_id: id, staging_target_path: staging }), Code.FAILED_PRECONDITION);
      expect(host.mounts).to.have.length(before);
    });

    it('reports a busy mount as FAILED_PRECONDITION and never detaches lazily', async () => {
      const id = await localVolume('pvc-busy', 'block', 'ext4');
      const staging = await stage(id, mountCap('SINGLE_NODE_WRITER', 'ext4'));
      host.busy.add(staging);
      const err = await expectCode(call('NodeUnstageVolume', { volume_id: id, staging_target_path: staging }), Code.FAILED_PRECONDITION);
      expect(err.message).to.contain('not detaching it lazily');
      expect(host.loops).to.have.length(1);
    });

    it('grows a mounted xfs filesystem in NodeExpandVolume once the image is larger', async () => {
      const id = await localVolume('pvc-x', 'block', 'xfs');
      const cap = mountCap('SINGLE_NODE_WRITER', 'xfs');
      const staging = await stage(id, cap);
      await fs.truncate(pool.imagePath('pvc-x'), 128 * MiB);
      const res = await call('NodeExpandVolume', {
        volume_id: id,
        volume_path: staging,
        staging_target_path: staging,
        capacity_range: { required_bytes: 128 * MiB },
      });
      expect(res).to.deep.equal({ capacity_bytes: 128 * MiB });
      expect(host.calls.at(-1)).to.equal(`grow xfs /dev/loop0 ${staging}`);
    });
  });

  describe('publish', () => {
    it('binds read-only for a read-only publish, and a read-write publish at the same target is ALREADY_EXISTS', async () => {
      const id = await localVolume('pvc-ro', 'share');
      const cap = mountCap('MULTI_NODE_MULTI_WRITER');
      const staging = await stage(id, cap);
      const target = k.target('pod-1', 'pv-ro');
      await publish(id, cap, staging, target, true);
      expect(host.calls.at(-1)).to.equal(`bind ro ${staging} ${target}`);
      await expectCode(publish(id, cap, staging, target, false), Code.ALREADY_EXISTS);
      await publish(id, cap, staging, target, true); // the same again: OK
    });

    it('stages a share read-only for a read-only access mode: the bind, and an NFS mount with ro', async () => {
      const id = await localVolume('pvc-share-ro', 'share');
      const staging = await stage(id, mountCap('MULTI_NODE_READER_ONLY'));
      expect(host.calls.at(-1)).to.equal(`bind ro ${pool.dataDir('pvc-share-ro')} ${staging}`);
      const nfs = 'nfs:127.0.0.1:/export:share:pvc-nfs-ro';
      const nfsStaging = await stage(nfs, mountCap('MULTI_NODE_READER_ONLY'), { subDir: 'pvc-nfs-ro', mountOptions: 'nfsvers=4.1' });
      expect(host.calls.at(-1)).to.equal(`mount -t nfs -o nfsvers=4.1,ro 127.0.0.1:/export/pvc-nfs-ro ${nfsStaging}`);
    });

    it('refuses a second target for SINGLE_NODE_SINGLE_WRITER', async () => {
      const id = await localVolume('pvc-rwop', 'share');
      const cap = mountCap('SINGLE_NODE_SINGLE_WRITER');
      const staging = await stage(id, cap);
      await publish(id, cap, staging, k.target('pod-1', 'pv'));
      await expectCode(publish(id, cap, staging, k.target('pod-2', 'pv')), Code.FAILED_PRECONDITION);
    });

    it('answers FAILED_PRECONDITION when the volume is not staged, creating no target', async () => {
      const id = await localVolume('pvc-unstaged', 'share');
      const target = k.target('pod-1', 'pv');
      await expectCode(publish(id, mountCap(), k.staging(id), target), Code.FAILED_PRECONDITION);
      await fs.access(target).then(
        () => expect.fail('target created'),
        () => undefined,
      );
    });
  });

  describe('NFS volumes', () => {
    const nfsId = (kind: string, name: string) => `nfs:127.0.0.1:/export:${kind}:${name}`;

    it('mounts a share with mount -t nfs, the validated options and the subDir', async () => {
      const id = nfsId('share', 'pvc-n');
      const staging = await stage(id, mountCap('MULTI_NODE_MULTI_WRITER'), { subDir: 'team/pvc-n', mountOptions: 'nfsvers=4.1, hard' });
      expect(host.calls).to.deep.equal([`mount -t nfs -o nfsvers=4.1,hard 127.0.0.1:/export/team/pvc-n ${staging}`]);
    });

    it("mounts a share with the PV's mountOptions (the capability's mount flags), which win over the class parameter", async () => {
      const id = nfsId('share', 'pvc-flags');
      const cap = mountCap('MULTI_NODE_MULTI_WRITER', '', ['nfsvers=4.2', 'nconnect=2']);
      const staging = await stage(id, cap, { subDir: 'pvc-flags', mountOptions: 'vers=3,hard' });
      expect(host.calls).to.deep.equal([`mount -t nfs -o hard,nfsvers=4.2,nconnect=2 127.0.0.1:/export/pvc-flags ${staging}`]);
    });

    for (const [label, context] of [
      ['a subDir with an empty component (a//b)', { subDir: 'a//b' }],
      ['a subDir with a "." component', { subDir: 'a/./b' }],
      ['a subDir that climbs', { subDir: '../etc' }],
      ['an absolute subDir', { subDir: '/etc' }],
      ['a subDir inside .berth', { subDir: '.berth/volumes' }],
      ['a mountedAt that climbs', { subDir: 'x', mountedAt: '/srv/../etc' }],
      ['a relative mountedAt', { subDir: 'x', mountedAt: 'srv' }],
    ] as const) {
      it(`refuses a volume_context with ${label} (INVALID_ARGUMENT), mounting nothing`, async () => {
        await expectCode(stage(nfsId('share', 'pvc-bad'), mountCap('MULTI_NODE_MULTI_WRITER'), context), Code.INVALID_ARGUMENT);
        expect(host.calls).to.deep.equal([]);
      });
    }

    it('refuses a mount option that is not a plain option without repeating its value', async () => {
      const err = await expectCode(
        stage(nfsId('share', 'pvc-opt'), mountCap('MULTI_NODE_MULTI_WRITER'), {
          subDir: 'x',
          mountOptions: 'nfsvers=4.1,pass word=hunter2',
        }),
        Code.INVALID_ARGUMENT,
      );
      expect(err.message).to.not.contain('hunter2');
      expect(host.calls).to.deep.equal([]);
    });

    it('refuses mount flags that are not plain options without repeating them', async () => {
      const id = await localVolume('pvc-flags', 'block', 'ext4');
      const err = await expectCode(stage(id, mountCap('SINGLE_NODE_WRITER', 'ext4', ['noatime', 'x;reboot'])), Code.INVALID_ARGUMENT);
      expect(err.message).to.not.contain('reboot');
      expect(host.calls).to.deep.equal([]);
    });

    it('keeps a healthy NFS staging mount, and remounts a stale one', async () => {
      const id = nfsId('share', 'pvc-s');
      const cap = mountCap('MULTI_NODE_MULTI_WRITER');
      const staging = await stage(id, cap, { subDir: 'pvc-s' });
      await stage(id, cap, { subDir: 'pvc-s' });
      expect(host.calls).to.have.length(1);
      host.stale.add(staging);
      await stage(id, cap, { subDir: 'pvc-s' });
      expect(host.calls.slice(1)).to.deep.equal([`umount ${staging}`, `mount -t nfs 127.0.0.1:/export/pvc-s ${staging}`]);
    });

    it('mounts a recreated directory with a cache of its own when the shared one still holds the old handle', async () => {
      const id = nfsId('share', 'pvc-sc');
      const cap = mountCap('MULTI_NODE_MULTI_WRITER');
      const staging = await stage(id, cap, { subDir: 'pvc-sc', mountOptions: 'vers=4.1' });
      host.stale.add(staging);
      host.staleInSharedCache.add('127.0.0.1:/export/pvc-sc');
      await stage(id, cap, { subDir: 'pvc-sc', mountOptions: 'vers=4.1' });
      expect(host.calls.slice(1)).to.deep.equal([
        `umount ${staging}`,
        `mount -t nfs -o vers=4.1 127.0.0.1:/export/pvc-sc ${staging}`,
        `umount ${staging}`,
        `mount -t nfs -o vers=4.1,nosharecache 127.0.0.1:/export/pvc-sc ${staging}`,
      ]);
      expect(await host.isStale(staging)).to.equal(false);
    });

    it('answers UNAVAILABLE when mount.nfs cannot reach the server', async () => {
      host.mountFailures.set('127.0.0.1:/export/pvc-u', 'mount.nfs: Connection refused');
      await expectCode(stage(nfsId('share', 'pvc-u'), mountCap('MULTI_NODE_MULTI_WRITER'), { subDir: 'pvc-u' }), Code.UNAVAILABLE);
      expect(host.mounts).to.deep.equal([]);
    });

    it('mounts the export of a block image once per node, and unmounts it with the last image', async () => {
      const cap = mountCap('SINGLE_NODE_WRITER', 'ext4');
      // Where the node mounts 127.0.0.1:/export; the images are real files there.
      const mountPoint = path.join(dir, 'nfs', createHash('sha256').update('127.0.0.1:/export').digest('hex').slice(0, 16));
      const stagings: string[] = [];
      for (const name of ['pvc-i1', 'pvc-i2']) {
        const image = path.join(mountPoint, name, 'disk.img');
        await fs.mkdir(path.dirname(image), { recursive: true });
        await fs.writeFile(image, '').then(() => fs.truncate(image, 64 * MiB));
        stagings.push(await stage(nfsId('block', name), cap, { subDir: name, fsType: 'ext4' }));
      }
      expect(host.calls.filter((c) => c.startsWith('mount -t nfs'))).to.deep.equal([`mount -t nfs 127.0.0.1:/export ${mountPoint}`]);
      await call('NodeUnstageVolume', { volume_id: nfsId('block', 'pvc-i1'), staging_target_path: stagings[0] });
      expect(host.mounts.filter((m) => m.fstype === 'nfs')).to.have.length(1);
      await call('NodeUnstageVolume', { volume_id: nfsId('block', 'pvc-i2'), staging_target_path: stagings[1] });
      expect(host.mounts).to.deep.equal([]);
      expect(host.loops).to.deep.equal([]);
    });
  });

  describe('paths the request names', () => {
    it('refuses a staging path that is a symbolic link, even to a place inside the kubelet directory', async () => {
      const id = await localVolume('pvc-link', 'share');
      const staging = k.staging(id);
      await fs.mkdir(path.dirname(staging), { recursive: true });
      await fs.mkdir(path.join(k.root, 'elsewhere'));
      await fs.symlink(path.join(k.root, 'elsewhere'), staging);
      const err = await expectCode(
        call('NodeStageVolume', { volume_id: id, staging_target_path: staging, volume_capability: mountCap() }),
        Code.INVALID_ARGUMENT,
      );
      expect(err.message).to.contain('symbolic link');
      expect(host.calls).to.deep.equal([]);
    });

    it('binds a pre-mounted export only from a directory the node allows, after resolving links', async () => {
      const premounted = path.join(dir, 'premounted');
      await fs.mkdir(path.join(premounted, 'pvc-pm'), { recursive: true });
      const id = 'nfs:127.0.0.1:/export:share:pvc-pm';
      const cap = mountCap('MULTI_NODE_MULTI_WRITER');
      const staging = await stage(id, cap, { subDir: 'pvc-pm', mountedAt: premounted });
      expect(host.calls).to.deep.equal([`bind ${path.join(premounted, 'pvc-pm')} ${staging}`]);
      const other = 'nfs:127.0.0.1:/export:share:pvc-other';
      await expectCode(stage(other, cap, { subDir: 'etc', mountedAt: '/' }), Code.INVALID_ARGUMENT);
      await fs.symlink('/etc', path.join(premounted, 'out'));
      await expectCode(stage(other, cap, { subDir: 'out', mountedAt: premounted }), Code.INVALID_ARGUMENT);
      expect(host.calls).to.have.length(1);
    });
  });

  describe('stats', () => {
    it('reports a share whose staging is gone as abnormal, and nothing at the path as NOT_FOUND', async () => {
      const id = await localVolume('pvc-st', 'share');
      const target = k.target('pod-1', 'pv-st');
      await fs.mkdir(target, { recursive: true });
      const res = (await call('NodeGetVolumeStats', { volume_id: id, volume_path: target })) as {
        volume_condition: { abnormal: boolean; message: string };
      };
      expect(res.volume_condition).to.deep.equal({ abnormal: true, message: `${target} is not mounted` });
      await expectCode(call('NodeGetVolumeStats', { volume_id: id, volume_path: path.join(k.root, 'nowhere') }), Code.NOT_FOUND);
    });
  });
});
