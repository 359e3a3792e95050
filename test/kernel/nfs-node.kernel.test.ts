// The node's NFS paths with the kernel NFS client, in the kernel tier's VM
// (this machine's kernel has no NFS client): nfs-ganesha on the guest's
// loopback, the driver all-in-one, the kubelet played as in the root tier.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { Code, expectCode, mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { Ganesha } from '../helpers/ganesha.js';
import { exec, HostState, mountRowAt, mountRows } from '../helpers/host.js';
import { requireKernelVm } from '../helpers/kernel-vm.js';
import { KubeletPaths, podUid } from '../helpers/kubelet.js';

const MiB = 1024 * 1024;

interface Volume {
  volume_id: string;
  volume_context: Record<string, string>;
}
describe('kernel VM: the node service mounts NFS with the kernel client', function () {
  this.timeout(600_000);
  let dir: string;
  let g: Ganesha;
  let d: DriverProcess;
  let k: KubeletPaths;
  let host: HostState;

  before(async () => {
    requireKernelVm();
    host = await HostState.capture();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-knfs-'));
    g = new Ganesha(dir);
    await g.start();
    d = await DriverProcess.start({ mode: 'all' });
    k = new KubeletPaths(d.kubeletDir);
  });
  after(async () => {
    await d?.stop('SIGKILL');
    const leaks = host ? await host.leaks() : { loops: [], mounts: [] };
    await d?.cleanup();
    await g?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
    expect(leaks, 'loop devices or mounts left behind').to.deep.equal({ loops: [], mounts: [] });
  });

  const nfsClass = (extra: Record<string, string> = {}) => ({ pool: 'nfs', server: '127.0.0.1', share: g.exportDir, ...extra });

  async function provision(name: string, parameters: Record<string, string>, cap: object, bytes = 0): Promise<Volume> {
    const { volume } = await rpc<{ volume: Volume }>(d.clients.controller, 'CreateVolume', {
      name,
      capacity_range: bytes ? { required_bytes: bytes } : null,
      volume_capabilities: [cap],
      parameters,
    });
    await rpc(d.clients.controller, 'ControllerPublishVolume', { volume_id: volume.volume_id, node_id: 'node-a', volume_capability: cap });
    return volume;
  }

  async function stage(v: Volume, cap: object): Promise<string> {
    const staging = k.staging(v.volume_id);
    await k.prepareStage(staging);
    await rpc(d.clients.node, 'NodeStageVolume', {
      volume_id: v.volume_id,
      staging_target_path: staging,
      volume_capability: cap,
      volume_context: v.volume_context,
    });
    return staging;
  }

  async function publish(v: Volume, cap: object, staging: string, readonly = false): Promise<string> {
    const target = k.target(podUid(), `pv-${v.volume_id.split(':').at(-1)}`);
    await k.preparePublish(target);
    await rpc(d.clients.node, 'NodePublishVolume', {
      volume_id: v.volume_id,
      staging_target_path: staging,
      target_path: target,
      volume_capability: cap,
      volume_context: v.volume_context,
      readonly,
    });
    return target;
  }

  async function unpublishUnstage(v: Volume, staging: string, target?: string): Promise<void> {
    if (target) await rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: v.volume_id, target_path: target });
    await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: v.volume_id, staging_target_path: staging });
    expect(await mountRowAt(staging), 'staging unmounted').to.equal(undefined);
    if (target) expect(await mountRowAt(target), 'target unmounted').to.equal(undefined);
  }

  for (const version of ['3', '4.1', '4.2']) {
    it(`stages, publishes, unpublishes and unstages a share over NFSv${version}, the PV's mountOptions winning over the class's`, async () => {
      const cap = mountCap('MULTI_NODE_MULTI_WRITER', '', [`nfsvers=${version}`, ...(version === '3' ? ['nolock'] : [])]);
      // The class asks for another version: the PV's standard mountOptions (the capability's flags) win.
      const classVersion = version === '4.2' ? '4.1' : '4.2';
      const name = `pvc-v${version.replace('.', '')}`;
      const v = await provision(name, nfsClass({ mountOptions: `vers=${classVersion},retry=0,acdirmax=17` }), cap);
      const staging = await stage(v, cap);
      const staged = await mountRowAt(staging);
      expect(staged?.fstype).to.equal(version === '3' ? 'nfs' : 'nfs4');
      expect(staged?.source).to.equal(`127.0.0.1:${g.exportDir}/${name}`);
      expect(staged?.options.split(',')).to.include(`vers=${version}`).and.include('acdirmax=17');
      const target = await publish(v, cap, staging);
      const bytes = Buffer.alloc(3 * MiB + 17, version);
      await fs.writeFile(path.join(target, 'data'), bytes);
      // What the pod wrote is on the server's export, byte for byte.
      expect((await fs.readFile(path.join(g.exportDir, name, 'data'))).equals(bytes)).to.equal(true);
      await unpublishUnstage(v, staging, target);
    });
  }

  it('stages and publishes a read-only share that refuses writes on both mounts', async () => {
    const writer = mountCap('MULTI_NODE_MULTI_WRITER');
    const v = await provision('pvc-ro', nfsClass({ mountOptions: 'vers=4.1,retry=0' }), writer);
    await fs.writeFile(path.join(g.exportDir, 'pvc-ro', 'kept'), 'kept');
    const cap = mountCap('MULTI_NODE_READER_ONLY');
    const staging = await stage(v, cap);
    const target = await publish(v, cap, staging, true);
    expect((await mountRowAt(staging))?.options.split(',')).to.include('ro');
    expect(await fs.readFile(path.join(target, 'kept'), 'utf8')).to.equal('kept');
    for (const where of [staging, target]) {
      const err = await fs.writeFile(path.join(where, 'new'), 'x').then(
        () => undefined,
        (e: NodeJS.ErrnoException) => e,
      );
      expect(err?.code, `a write at ${where}`).to.equal('EROFS');
    }
    expect(await fs.readdir(path.join(g.exportDir, 'pvc-ro'))).to.deep.equal(['kept']);
    await unpublishUnstage(v, staging, target);
  });

  it('keeps block images on the export mounted once per node, formats only blank images, and releases the export with the last image', async () => {
    const cap = mountCap('SINGLE_NODE_WRITER', 'ext4');
    const params = nfsClass({ kind: 'block', mountOptions: 'vers=4.2,retry=0' });
    const [a, b, foreign] = [
      await provision('pvc-img-a', params, cap, 64 * MiB),
      await provision('pvc-img-b', params, cap, 64 * MiB),
      await provision('pvc-img-foreign', params, cap, 64 * MiB),
    ];
    const exportMounts = async () => (await mountRows()).filter((m) => m.target.startsWith(`${path.join(d.dir, 'nfs')}/`));

    const stagingA = await stage(a, cap);
    const stagingB = await stage(b, cap);
    const exports = await exportMounts();
    expect(exports.map((m) => [m.source, m.fstype])).to.deep.equal([[`127.0.0.1:${g.exportDir}`, 'nfs4']]);
    const { stdout: loops } = await exec('losetup', ['-l', '-n', '-O', 'BACK-FILE']);
    expect(loops).to.contain(path.join(exports[0].target, 'pvc-img-a', 'disk.img'));
    expect((await mountRowAt(stagingA))?.fstype).to.equal('ext4');
    await fs.writeFile(path.join(stagingA, 'kept'), 'written before unstage');

    // An image with foreign bytes is never formatted.
    const foreignImage = path.join(g.exportDir, 'pvc-img-foreign', 'disk.img');
    const fd = await fs.open(foreignImage, 'r+');
    await fd.write(Buffer.alloc(4096, 0xab), 0, 4096, MiB);
    await fd.close();
    const before = await fs.readFile(foreignImage);
    const foreignStaging = k.staging(foreign.volume_id);
    await k.prepareStage(foreignStaging);
    await expectCode(
      rpc(d.clients.node, 'NodeStageVolume', {
        volume_id: foreign.volume_id,
        staging_target_path: foreignStaging,
        volume_capability: cap,
        volume_context: foreign.volume_context,
      }),
      Code.FAILED_PRECONDITION,
    );
    expect((await fs.readFile(foreignImage)).equals(before), 'the foreign image unchanged').to.equal(true);

    await unpublishUnstage(a, stagingA);
    expect(await exportMounts(), 'the export stays while an image on it is staged').to.have.length(1);
    await unpublishUnstage(b, stagingB);
    expect(await exportMounts(), 'the export released with the last image').to.deep.equal([]);

    // Staged again: the same filesystem, not a new one.
    const again = await stage(a, cap);
    expect(await fs.readFile(path.join(again, 'kept'), 'utf8')).to.equal('written before unstage');
    await unpublishUnstage(a, again);
    expect(await exportMounts()).to.deep.equal([]);
  });

  it('heals a share whose export directory was recreated under its mount (ESTALE) at the next stage, with other mounts of the server cached', async () => {
    const cap = mountCap('MULTI_NODE_MULTI_WRITER');
    const params = nfsClass({ mountOptions: 'vers=4.1,retry=0' });
    // A neighbour from the same server keeps the node's cache of that server alive, as on any busy node.
    const neighbour = await provision('pvc-neighbour', params, cap);
    const neighbourStaging = await stage(neighbour, cap);
    const v = await provision('pvc-stale', params, cap);
    const staging = await stage(v, cap);
    const onServer = path.join(g.exportDir, 'pvc-stale');
    await fs.rm(onServer, { recursive: true });
    await fs.mkdir(onServer);
    await fs.writeFile(path.join(onServer, 'fresh'), 'recreated');
    const stale = await fs.readdir(staging).then(
      () => undefined,
      (e: NodeJS.ErrnoException) => e.errno,
    );
    expect(stale, 'the old handle is stale (ESTALE)').to.equal(-os.constants.errno.ESTALE);
    // The kubelet calls NodeStageVolume again (its own mkdir of the staging path would fail with ESTALE).
    await rpc(d.clients.node, 'NodeStageVolume', {
      volume_id: v.volume_id,
      staging_target_path: staging,
      volume_capability: cap,
      volume_context: v.volume_context,
    });
    expect(await fs.readdir(staging)).to.deep.equal(['fresh']);
    await unpublishUnstage(v, staging);
    await unpublishUnstage(neighbour, neighbourStaging);
  });

  it('unpublishes and unstages a share whose server has stopped, every call answering within its deadline', async () => {
    const cap = mountCap('MULTI_NODE_MULTI_WRITER');
    const v = await provision('pvc-down', nfsClass({ mountOptions: 'vers=4.1,retry=0' }), cap);
    const staging = await stage(v, cap);
    const target = await publish(v, cap, staging);
    await fs.writeFile(path.join(target, 'data'), 'flushed before the server stops');
    await g.stopGanesha();
    try {
      // Each call with a deadline of its own, as the kubelet's (2 minutes there; shorter here).
      const deadline = 30_000;
      const converge = async (call: () => Promise<unknown>, what: string) => {
        for (let attempt = 0; ; attempt++) {
          const started = Date.now();
          const err = await call().then(
            () => undefined,
            (e: Error) => e,
          );
          expect(Date.now() - started, `${what} answered within its deadline`).to.be.below(deadline + 5_000);
          if (!err) return;
          if (attempt > 5) throw err;
        }
      };
      await converge(
        () => rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: v.volume_id, target_path: target }, deadline),
        'NodeUnpublishVolume',
      );
      await converge(
        () => rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: v.volume_id, staging_target_path: staging }, deadline),
        'NodeUnstageVolume',
      );
      expect(await mountRowAt(target)).to.equal(undefined);
      expect(await mountRowAt(staging)).to.equal(undefined);
    } finally {
      await g.startGanesha();
    }
  });
});
