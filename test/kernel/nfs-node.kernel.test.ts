// The node's NFS paths with the kernel NFS client, in the kernel tier's VM
// (this machine's kernel has no NFS client): nfs-ganesha on the guest's
// loopback, the driver all-in-one, and the kubelet, the external-provisioner
// and the external-attacher played by the same harnesses as the root tier's
// end-to-end tests, so a StorageClass's standard mountOptions reach the
// driver as they do in a cluster.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { AllInOne, NFS_DRIVER } from '../helpers/all-in-one.js';
import { Code, expectCode, rpc } from '../helpers/csi-client.js';
import type { DriverProcess } from '../helpers/driver-process.js';
import { Ganesha } from '../helpers/ganesha.js';
import { exec, HostState, mountRowAt, mountRows } from '../helpers/host.js';
import { requireKernelVm } from '../helpers/kernel-vm.js';
import { type KubeletHarness, newPod, type Pod } from '../helpers/kubelet-harness.js';
import {
  type Claim,
  type ExternalAttacher,
  type ExternalProvisioner,
  newClaim,
  type PersistentVolume,
  type StorageClass,
} from '../helpers/sidecars.js';

const MiB = 1024 * 1024;
/** The claims here are NFS shares, read and written from several pods unless a test says otherwise. */
const claim = (name: string, over: Partial<Claim> = {}) => newClaim(name, { accessModes: ['ReadWriteMany'], ...over });

describe('kernel VM: the node service mounts NFS with the kernel client', function () {
  this.timeout(600_000);
  let dir: string;
  let g: Ganesha;
  let cluster: AllInOne;
  let d: DriverProcess;
  let kubelet: KubeletHarness;
  let provisioner: ExternalProvisioner;
  let attacher: ExternalAttacher;
  let host: HostState;

  before(async () => {
    requireKernelVm();
    host = await HostState.capture();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-knfs-'));
    g = new Ganesha(dir);
    await g.start();
    cluster = await AllInOne.start({}, 60_000);
    ({ driver: d, kubelet, provisioner, attacher } = cluster);
  });
  after(async () => {
    await cluster?.stop();
    const leaks = host ? await host.leaks() : { loops: [], mounts: [] };
    await d?.cleanup();
    await g?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
    expect(leaks, 'loop devices or mounts left behind').to.deep.equal({ loops: [], mounts: [] });
  });

  const nfsClass = (parameters: Record<string, string>, mountOptions?: string[]): StorageClass => ({
    name: 'nfs',
    provisioner: NFS_DRIVER,
    parameters: { pool: 'nfs', server: '127.0.0.1', share: g.exportDir, ...parameters },
    mountOptions,
  });

  /** What the provisioner and the attacher do for a claim. */
  async function provisioned(sc: StorageClass, c: Claim): Promise<{ pv: PersistentVolume; ctx: Record<string, string> }> {
    const pv = await provisioner.provision(sc, c);
    return { pv, ctx: await attacher.attach(pv, 'node-a') };
  }

  /** The pod goes, then the volume: unmount (unpublish, unstage), detach, delete. */
  async function release(p: Pod, pv: PersistentVolume): Promise<void> {
    await kubelet.unmountPod(p, pv);
    expect(await mountRowAt(kubelet.targetPath(p, pv)), 'target unmounted').to.equal(undefined);
    expect(await mountRowAt(kubelet.stagingPath(pv)), 'staging unmounted').to.equal(undefined);
    await attacher.detach(pv, 'node-a');
    await provisioner.delete(pv);
  }

  for (const version of ['3', '4.1', '4.2']) {
    it(`stages, publishes, unpublishes and unstages a share over NFSv${version}, the class's standard mountOptions winning over its mountOptions parameter`, async () => {
      // The parameter asks for another version: the standard field (the PV's mountOptions) wins.
      const parameterVersion = version === '4.2' ? '4.1' : '4.2';
      const sc = nfsClass({ mountOptions: `vers=${parameterVersion},retry=0,acdirmax=17` }, [
        `nfsvers=${version}`,
        ...(version === '3' ? ['nolock'] : []),
      ]);
      const { pv, ctx } = await provisioned(sc, claim(`data-v${version}`));
      const p = newPod('writer');
      const target = await kubelet.mountPod(p, pv, ctx);
      const staged = await mountRowAt(kubelet.stagingPath(pv));
      expect(staged?.fstype).to.equal(version === '3' ? 'nfs' : 'nfs4');
      expect(staged?.source).to.equal(`127.0.0.1:${g.exportDir}/${pv.name}`);
      expect(staged?.options.split(',')).to.include(`vers=${version}`).and.include('acdirmax=17');
      const bytes = Buffer.alloc(3 * MiB + 17, version);
      await fs.writeFile(path.join(target, 'data'), bytes);
      // What the pod wrote is on the server's export, byte for byte.
      expect((await fs.readFile(path.join(g.exportDir, pv.name, 'data'))).equals(bytes)).to.equal(true);
      await release(p, pv);
    });
  }

  it('stages and publishes a read-only share that refuses writes on both mounts', async () => {
    const { pv: written, ctx } = await provisioned(nfsClass({ mountOptions: 'vers=4.1,retry=0' }), claim('data-ro'));
    await fs.writeFile(path.join(g.exportDir, written.name, 'kept'), 'kept');
    const pv: PersistentVolume = { ...written, accessModes: ['ReadOnlyMany'] };
    const p = newPod('reader');
    const target = await kubelet.mountPod(p, pv, ctx, true);
    const staging = kubelet.stagingPath(pv);
    expect((await mountRowAt(staging))?.options.split(',')).to.include('ro');
    expect(await fs.readFile(path.join(target, 'kept'), 'utf8')).to.equal('kept');
    for (const where of [staging, target]) {
      const err = await fs.writeFile(path.join(where, 'new'), 'x').then(
        () => undefined,
        (e: NodeJS.ErrnoException) => e,
      );
      expect(err?.code, `a write at ${where}`).to.equal('EROFS');
    }
    expect(await fs.readdir(path.join(g.exportDir, pv.name))).to.deep.equal(['kept']);
    await release(p, pv);
  });

  it('keeps block images on the export mounted once per node, formats only blank images, and releases the export with the last image', async () => {
    const sc = nfsClass({ kind: 'block', mountOptions: 'vers=4.2,retry=0', 'csi.storage.k8s.io/fstype': 'ext4' });
    const blockClaim = (name: string) => claim(name, { accessModes: ['ReadWriteOnce'] });
    const [a, b, foreign] = [
      await provisioned(sc, blockClaim('img-a')),
      await provisioned(sc, blockClaim('img-b')),
      await provisioned(sc, blockClaim('img-foreign')),
    ];
    const exportMounts = async () => (await mountRows()).filter((m) => m.target.startsWith(`${path.join(d.dir, 'nfs')}/`));

    const [pa, pb] = [newPod('a'), newPod('b')];
    const targetA = await kubelet.mountPod(pa, a.pv, a.ctx);
    await kubelet.mountPod(pb, b.pv, b.ctx);
    const exports = await exportMounts();
    expect(exports.map((m) => [m.source, m.fstype])).to.deep.equal([[`127.0.0.1:${g.exportDir}`, 'nfs4']]);
    const { stdout: loops } = await exec('losetup', ['-l', '-n', '-O', 'BACK-FILE']);
    expect(loops).to.contain(path.join(exports[0]!.target, a.pv.name, 'disk.img'));
    expect((await mountRowAt(kubelet.stagingPath(a.pv)))?.fstype).to.equal('ext4');
    await fs.writeFile(path.join(targetA, 'kept'), 'written before unstage');

    // An image with foreign bytes is never formatted.
    const foreignImage = path.join(g.exportDir, foreign.pv.name, 'disk.img');
    const fd = await fs.open(foreignImage, 'r+');
    await fd.write(Buffer.alloc(4096, 0xab), 0, 4096, MiB);
    await fd.close();
    const before = await fs.readFile(foreignImage);
    await expectCode(kubelet.mountPod(newPod('f'), foreign.pv, foreign.ctx), Code.FAILED_PRECONDITION);
    expect((await fs.readFile(foreignImage)).equals(before), 'the foreign image unchanged').to.equal(true);

    await kubelet.unmountPod(pa, a.pv);
    expect(await exportMounts(), 'the export stays while an image on it is staged').to.have.length(1);
    await release(pb, b.pv);
    expect(await exportMounts(), 'the export released with the last image').to.deep.equal([]);

    // Staged again: the same filesystem, not a new one.
    const again = newPod('a-again');
    expect(await fs.readFile(path.join(await kubelet.mountPod(again, a.pv, a.ctx), 'kept'), 'utf8')).to.equal('written before unstage');
    await release(again, a.pv);
    expect(await exportMounts()).to.deep.equal([]);
    await attacher.detach(foreign.pv, 'node-a');
    await provisioner.delete(foreign.pv);
  });

  it('heals a share whose export directory was recreated under its mount (ESTALE) at the next stage, with other mounts of the server cached', async () => {
    const sc = nfsClass({ mountOptions: 'vers=4.1,retry=0' });
    // A neighbour from the same server keeps the node's cache of that server alive, as on any busy node.
    const neighbour = await provisioned(sc, claim('neighbour'));
    const pn = newPod('neighbour');
    await kubelet.mountPod(pn, neighbour.pv, neighbour.ctx);
    const { pv, ctx } = await provisioned(sc, claim('stale'));
    const p = newPod('stale');
    await kubelet.mountPod(p, pv, ctx);
    const staging = kubelet.stagingPath(pv);
    const onServer = path.join(g.exportDir, pv.name);
    await fs.rm(onServer, { recursive: true });
    await fs.mkdir(onServer);
    await fs.writeFile(path.join(onServer, 'fresh'), 'recreated');
    const stale = await fs.readdir(staging).then(
      () => undefined,
      (e: NodeJS.ErrnoException) => e.errno,
    );
    expect(stale, 'the old handle is stale (ESTALE)').to.equal(-os.constants.errno.ESTALE);
    // NodeStageVolume again, as the kubelet's retry sends it (its own mkdir of the staging path would fail with ESTALE).
    await rpc(d.clients.node, 'NodeStageVolume', {
      volume_id: pv.volumeHandle,
      publish_context: ctx,
      staging_target_path: staging,
      volume_capability: { mount: { fs_type: pv.fsType, mount_flags: pv.mountOptions }, access_mode: { mode: 'MULTI_NODE_MULTI_WRITER' } },
      volume_context: pv.volumeAttributes,
    });
    expect(await fs.readdir(staging)).to.deep.equal(['fresh']);
    await release(p, pv);
    await release(pn, neighbour.pv);
  });

  it('unpublishes and unstages a share whose server has stopped, every call answering within its deadline', async () => {
    const { pv, ctx } = await provisioned(nfsClass({ mountOptions: 'vers=4.1,retry=0' }), claim('down'));
    const p = newPod('down');
    const target = await kubelet.mountPod(p, pv, ctx);
    const staging = kubelet.stagingPath(pv);
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
        () => rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: pv.volumeHandle, target_path: target }, deadline),
        'NodeUnpublishVolume',
      );
      await converge(
        () => rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: pv.volumeHandle, staging_target_path: staging }, deadline),
        'NodeUnstageVolume',
      );
      expect(await mountRowAt(target)).to.equal(undefined);
      expect(await mountRowAt(staging)).to.equal(undefined);
    } finally {
      await g.startGanesha();
    }
    await attacher.detach(pv, 'node-a');
    await provisioner.delete(pv);
  });
});
