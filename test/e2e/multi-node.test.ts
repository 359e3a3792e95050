// Three simulated nodes and one central controller on this machine, in the
// chart's shape (test/helpers/cluster.ts): node-local pools provisioned by
// the driver on their own node, NFS volumes by the central controller,
// which learns the nodes from CSINode objects (a stand-in API server: no
// kube-apiserver runs here). The kubelet, the per-node provisioners with
// capacity tracking, the scheduler's capacity check and the central
// attacher are harnesses that follow their sources.

import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { readLoopTable } from '../../host/loop-devices.js';
import { LOCAL_DRIVER, LocalScheduling, NFS_DRIVER, SimulatedNode } from '../helpers/cluster.js';
import { Code, csiClients, expectCode, mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { FreshFilesystem } from '../helpers/fresh-fs.js';
import { Ganesha } from '../helpers/ganesha.js';
import type { Pod } from '../helpers/kubelet-harness.js';
import { type Claim, ExternalAttacher, ExternalProvisioner, type StorageClass } from '../helpers/sidecars.js';
import { StandInApiServer } from '../helpers/stand-in-api-server.js';

const MiB = 1024 * 1024;
const pod = (name: string): Pod => ({ uid: randomUUID(), name, namespace: 'default', serviceAccount: 'default' });
const claim = (name: string, storage: number, over: Partial<Claim> = {}): Claim => ({
  uid: randomUUID(),
  name,
  namespace: 'default',
  accessModes: ['ReadWriteOnce'],
  storage,
  volumeMode: 'Filesystem',
  ...over,
});

describe('a multi-node cluster: three nodes, local pools on each, NFS through one central controller', function () {
  this.timeout(300_000);
  let dir: string;
  let api: StandInApiServer;
  let g: Ganesha;
  let smallPool: FreshFilesystem;
  let controller: DriverProcess;
  let nodes: SimulatedNode[];
  let n1: SimulatedNode;
  let n2: SimulatedNode;
  let n3: SimulatedNode;
  const localBlock: StorageClass = {
    name: 'berth-local-block',
    provisioner: LOCAL_DRIVER,
    parameters: { pool: 'local', kind: 'block', 'csi.storage.k8s.io/fstype': 'ext4' },
  };
  const nfsBlock = (): StorageClass => ({
    name: 'berth-nfs-block',
    provisioner: NFS_DRIVER,
    parameters: { pool: 'nfs', kind: 'block', server: '127.0.0.1', share: g.exportPath, mountedAt: g.exportDir },
  });

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-cluster-'));
    api = await StandInApiServer.start();
    g = new Ganesha(path.join(dir, 'nfs'));
    await fs.mkdir(path.join(dir, 'nfs'));
    await g.start();
    // node-1's pool is a small filesystem of its own, so that it fills up; made before the
    // nodes' namespaces, which then see it mounted.
    smallPool = await FreshFilesystem.make(path.join(dir, 'node-1-pool'), { bytes: 160 * MiB });
    controller = await DriverProcess.start({
      mode: 'controller',
      nodeId: 'berth-controller-0',
      dir: path.join(dir, 'controller'),
      extraArgs: ['--kubeconfig', api.kubeconfig, '--local-endpoint', `unix://${path.join(dir, 'controller', 'local.sock')}`],
    });
    const premounted = { mountedAtDirs: [g.exportDir] };
    n1 = await SimulatedNode.start('node-1', path.join(dir, 'node-1'), api, { ...premounted, poolDir: smallPool.mountpoint });
    n2 = await SimulatedNode.start('node-2', path.join(dir, 'node-2'), api, premounted);
    n3 = await SimulatedNode.start('node-3', path.join(dir, 'node-3'), api, premounted);
    nodes = [n1, n2, n3];
  });

  after(async () => {
    for (const n of nodes ?? []) await n.stop();
    await controller?.cleanup();
    await smallPool?.remove();
    await g?.stop();
    await api?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('runs one node process per driver on each node, each registered with its kubelet and listed in its CSINode', async () => {
    for (const n of nodes) {
      expect([...n.kubelet.registered.keys()].sort()).to.deep.equal([NFS_DRIVER, LOCAL_DRIVER].sort());
      expect(n.kubelet.registered.get(LOCAL_DRIVER)?.topology).to.deep.equal(n.topology);
    }
    const local = await rpc<{ capabilities: Array<{ rpc: { type: string } }> }>(n2.local!.clients.controller, 'ControllerGetCapabilities');
    const types = local.capabilities.map((c) => c.rpc.type);
    // attachRequired: false and no per-node resizer: no attach and no controller expansion.
    expect(types).to.include.members(['CREATE_DELETE_VOLUME', 'GET_CAPACITY']);
    expect(types).to.not.include('PUBLISH_UNPUBLISH_VOLUME');
    expect(types).to.not.include('EXPAND_VOLUME');
  });

  it('creates a local PVC for node 2 on node 2, and it lives through two pods there', async () => {
    const sched = new LocalScheduling(nodes, localBlock);
    await sched.pollCapacity();
    const pvc = claim('data-2', 64 * MiB);
    const { node, pv } = await sched.bind(pvc, [n2]); // the pod is pinned to node-2 (nodeSelector)
    expect(node.name).to.equal('node-2');
    expect(pv.driver).to.equal(LOCAL_DRIVER);
    expect(pv.nodeAffinity).to.deep.equal([n2.topology]);
    expect(await fs.readdir(path.join(n2.dir, 'pool', 'volumes'))).to.include(`${pv.name}.img`);
    for (const other of [n1, n3]) {
      // The other nodes' drivers do not answer for it: not theirs to stage, list or delete.
      await expectCode(rpc(other.local!.clients.controller, 'ControllerGetVolume', { volume_id: pv.volumeHandle }), Code.NOT_FOUND);
      await expectCode(rpc(other.local!.clients.controller, 'DeleteVolume', { volume_id: pv.volumeHandle }), Code.FAILED_PRECONDITION);
    }
    await expectCode(rpc(controller.clients.controller, 'DeleteVolume', { volume_id: pv.volumeHandle }), Code.FAILED_PRECONDITION);

    const first = pod('writer');
    const target = await n2.kubelet.mountPod(first, pv, {});
    await n2.run('sh', '-c', `echo kept-on-node-2 > ${target}/file && sync`);
    await n2.kubelet.unmountPod(first, pv);
    const second = pod('reader');
    const again = await n2.kubelet.mountPod(second, pv, {});
    expect((await n2.run('cat', `${again}/file`)).trim()).to.equal('kept-on-node-2');
    // No attach records it, yet the local driver will not delete a volume staged on its node.
    await expectCode(rpc(n2.local!.clients.controller, 'DeleteVolume', { volume_id: pv.volumeHandle }), Code.FAILED_PRECONDITION);
    // Mounted on node 2 only: node 1's namespace does not see it.
    expect(await n1.run('findmnt', '-rn', '-o', 'TARGET')).to.not.contain(again);

    // Growing without a per-node resizer: the node grows the image (then the filesystem).
    const grown = await n2.kubelet.expand(second, pv, 96 * MiB).catch((e: { code: number; details: string }) => e);
    expect((await fs.stat(path.join(n2.dir, 'pool', 'volumes', `${pv.name}.img`))).size).to.equal(96 * MiB);
    if ('code' in grown) {
      // ext4 cannot grow online on these machines (no CAP_SYS_RESOURCE); it grows at the next stage.
      expect(grown.code).to.equal(Code.FAILED_PRECONDITION);
    }
    await n2.kubelet.unmountPod(second, pv);
    const third = pod('after-growth');
    const t3 = await n2.kubelet.mountPod(third, pv, {});
    const size = Number((await n2.run('df', '-B1', '--output=size', t3)).trim().split('\n')[1]);
    expect(size).to.be.above(80 * MiB);
    expect((await n2.run('cat', `${t3}/file`)).trim()).to.equal('kept-on-node-2');
    await n2.kubelet.unmountPod(third, pv);
    await n2.provisioner!.delete(pv);
    expect(await fs.readdir(path.join(n2.dir, 'pool', 'volumes'))).to.not.include(`${pv.name}.img`);
  });

  it('snapshots a local volume on the node that holds it, and restores it there (elsewhere: RESOURCE_EXHAUSTED, placed again)', async () => {
    const sched = new LocalScheduling(nodes, localBlock);
    await sched.pollCapacity();
    const { pv } = await sched.bind(claim('snap-source', 64 * MiB), [n2]);
    const writer = pod('snap-writer');
    const target = await n2.kubelet.mountPod(writer, pv, {});
    await n2.run('sh', '-c', `echo taken-on-node-2 > ${target}/file`);
    // The node's csi-snapshotter calls its own local driver. These pools are ext4 (no reflinks): a staged
    // volume's frozen copy would hold its writes for the whole copy, which berth refuses; unstaged, it is taken.
    const take = () =>
      rpc<{ snapshot: { snapshot_id: string; ready_to_use: boolean } }>(n2.local!.clients.controller, 'CreateSnapshot', {
        name: 'snapshot-of-data',
        source_volume_id: pv.volumeHandle,
      });
    await expectCode(take(), Code.FAILED_PRECONDITION);
    await n2.kubelet.unmountPod(writer, pv);
    const { snapshot } = await take();
    expect(snapshot.ready_to_use).to.equal(true);
    // Another node's driver neither takes nor restores it.
    await expectCode(rpc(n1.local!.clients.controller, 'CreateSnapshot', { name: 'x', source_volume_id: pv.volumeHandle }), Code.NOT_FOUND);
    const restore = claim('snap-restored', 64 * MiB, { dataSource: { snapshotHandle: snapshot.snapshot_id } });
    const elsewhere = await (n1.provisioner as ExternalProvisioner)
      .provision(localBlock, restore, n1.topology)
      .catch((e: { code: number; details: string }) => e);
    expect(elsewhere).to.include({ code: Code.RESOURCE_EXHAUSTED });
    expect((elsewhere as { details: string }).details).to.contain('node-2');
    const { node, pv: restored } = await sched.bind(restore, [n2]); // the pod pinned to the snapshot's node
    expect(node.name).to.equal('node-2');
    const reader = pod('snap-reader');
    const at = await n2.kubelet.mountPod(reader, restored, {});
    expect((await n2.run('cat', `${at}/file`)).trim()).to.equal('taken-on-node-2');
    await n2.kubelet.unmountPod(reader, restored);
    await rpc(n2.local!.clients.controller, 'DeleteSnapshot', { snapshot_id: snapshot.snapshot_id });
  });

  it('places a PVC that does not fit on a full node where the capacity is, also when the published capacity was stale', async () => {
    const sched = new LocalScheduling(nodes, localBlock);
    await sched.pollCapacity();
    const before = sched.publishedCapacity('node-1');
    expect(before).to.be.within(100 * MiB, 160 * MiB);
    // A claim fills node-1 after the capacity poll: the next claim sees stale capacity there.
    const filler = await sched.bind(claim('filler', 96 * MiB), [n1]);
    expect(filler.node.name).to.equal('node-1');
    expect(sched.publishedCapacity('node-1')).to.equal(before); // not polled since
    const big = await sched.bind(claim('big', 64 * MiB));
    expect(sched.decisions).to.include('big exhausted on node-1: rescheduled');
    expect(big.node.name).to.equal('node-2');
    expect(sched.publishedCapacity('node-1')).to.be.below(64 * MiB);
    // node-1's provisioner left nothing behind for the claim it could not hold.
    expect((await fs.readdir(path.join(smallPool.mountpoint, 'volumes'))).filter((f) => f.startsWith(big.pv.name))).to.deep.equal([]);
    // With fresh capacity the scheduler filters node-1 out at once.
    const next = await sched.bind(claim('next', 64 * MiB));
    expect(next.node.name).to.equal('node-2');
    for (const b of [filler, big, next]) await b.node.provisioner!.delete(b.pv);
    await sched.pollCapacity();
    expect(sched.publishedCapacity('node-1')).to.be.closeTo(before, MiB);
  });

  it('attaches an NFS block volume to one node at a time: refused on node 3 until node 1 detaches', async () => {
    const provisioner = new ExternalProvisioner(() => controller.clients);
    const attacher = new ExternalAttacher(() => controller.clients);
    const pv = await provisioner.provision(nfsBlock(), claim('shared-db', 32 * MiB));
    expect(pv.nodeAffinity).to.deep.equal([]);
    const nodeId = (n: SimulatedNode) => n.kubelet.registered.get(NFS_DRIVER)!.nodeId;
    // A node without a CSINode entry for the driver does not exist for attach.
    await expectCode(attacher.attach(pv, 'node-9'), Code.NOT_FOUND);

    const ctx1 = await attacher.attach(pv, nodeId(n1));
    const p1 = pod('db-1');
    const t1 = await n1.kubelet.mountPod(p1, pv, ctx1);
    await n1.run('sh', '-c', `echo written-on-node-1 > ${t1}/row && sync`);
    const refused = await expectCode(attacher.attach(pv, nodeId(n3)), Code.FAILED_PRECONDITION);
    expect(refused.details).to.contain('node-1');
    await n1.kubelet.unmountPod(p1, pv);
    await attacher.detach(pv, nodeId(n1));

    const ctx3 = await attacher.attach(pv, nodeId(n3));
    const p3 = pod('db-3');
    const t3 = await n3.kubelet.mountPod(p3, pv, ctx3);
    expect((await n3.run('cat', `${t3}/row`)).trim()).to.equal('written-on-node-1');
    // The local drivers do not serve NFS volumes, nor the NFS node plugins local ones.
    await expectCode(rpc(n3.local!.clients.node, 'NodeGetVolumeStats', { volume_id: pv.volumeHandle, volume_path: t3 }), Code.NOT_FOUND);
    await n3.kubelet.unmountPod(p3, pv);
    await attacher.detach(pv, nodeId(n3));
    await attacher.detach(pv, nodeId(n3)); // again: converges
    await provisioner.delete(pv);
    await provisioner.delete(pv);
    expect((await fs.readdir(g.exportDir)).filter((e) => e !== '.berth')).to.deep.equal([]);
  });

  it('refuses local pools on the central controller, and serves the central resizer a view of the local driver', async () => {
    const before = await fs.readdir(dir);
    const err = await expectCode(
      rpc(controller.clients.controller, 'CreateVolume', {
        name: 'pvc-misplaced',
        volume_capabilities: [mountCap()],
        parameters: { pool: 'local', kind: 'share' },
      }),
      Code.INVALID_ARGUMENT,
    );
    expect(err.details).to.contain('NFS pools only');
    expect(await fs.readdir(dir)).to.deep.equal(before);
    const view = csiClients(path.join(dir, 'controller', 'local.sock'));
    try {
      expect((await rpc<{ name: string }>(view.identity, 'GetPluginInfo')).name).to.equal(LOCAL_DRIVER);
      const plugin = await rpc<{ capabilities: Array<{ service?: { type: string } }> }>(view.identity, 'GetPluginCapabilities');
      expect(plugin.capabilities.map((c) => c.service?.type)).to.include('CONTROLLER_SERVICE');
      const ctl = await rpc<{ capabilities: Array<{ rpc: { type: string } }> }>(view.controller, 'ControllerGetCapabilities');
      // Nor MODIFY_VOLUME: the central resizer would send ControllerModifyVolume where no pool is.
      for (const cap of ['EXPAND_VOLUME', 'MODIFY_VOLUME']) expect(ctl.capabilities.map((c) => c.rpc.type)).to.not.include(cap);
      const node = await rpc<{ capabilities: Array<{ rpc: { type: string } }> }>(view.node, 'NodeGetCapabilities');
      expect(node.capabilities.map((c) => c.rpc.type)).to.include('EXPAND_VOLUME');
      await expectCode(rpc(view.controller, 'CreateVolume', { name: 'x' }), Code.UNIMPLEMENTED);
    } finally {
      view.close();
    }
  });

  it('converges when node 2’s local driver is killed in the middle of a pod start and restarted', async () => {
    const sched = new LocalScheduling(nodes, localBlock);
    await sched.pollCapacity();
    const { pv } = await sched.bind(claim('survivor', 32 * MiB), [n2]);
    const p = pod('restarted');
    const registrations = n2.kubelet.events.filter((e) => e === `registered ${LOCAL_DRIVER}`).length;
    const mounting = n2.kubelet.mountPod(p, pv, {});
    // The kubelet makes the staging directory just before it calls NodeStageVolume, which then
    // attaches, checks, formats and mounts: the kill lands in the middle of it.
    const staging = n2.kubelet.stagingPath(pv);
    while (!(await fs.stat(staging).catch(() => undefined))) await new Promise((r) => setTimeout(r, 2));
    await new Promise((r) => setTimeout(r, 20));
    await n2.local!.stop('SIGKILL');
    await n2.local!.launch(); // same namespace, pool and kubelet directory
    await n2.register(LOCAL_DRIVER, registrations);
    const target = await mounting; // the kubelet's retries of the uncertain answers
    expect(n2.kubelet.events.some((e) => e.startsWith('retrying NodeStageVolume'))).to.equal(true);
    await n2.run('sh', '-c', `echo after-restart > ${target}/f && sync`);
    expect((await n2.run('cat', `${target}/f`)).trim()).to.equal('after-restart');
    const mounts = (await n2.run('findmnt', '-rn', '-o', 'TARGET')).split('\n').filter((t) => t.startsWith(n2.kubelet.root));
    expect(
      mounts.filter((t) => t.endsWith('/globalmount')),
      'staged once',
    ).to.have.length(1);
    await n2.kubelet.unmountPod(p, pv);
    await n2.provisioner!.delete(pv);
    const left = (await n2.run('findmnt', '-rn', '-o', 'TARGET')).split('\n').filter((t) => t.startsWith(n2.kubelet.root));
    expect(left).to.deep.equal([]);
  });

  it('leaves no mount in any node and no loop device on any image of the cluster', async () => {
    for (const n of nodes) {
      const mounts = (await n.run('findmnt', '-rn', '-o', 'TARGET')).split('\n').filter((t) => t.startsWith(n.kubelet.root));
      expect(mounts, n.name).to.deep.equal([]);
    }
    const loops = (await readLoopTable()).filter((l) => l.backingFile.startsWith(`${dir}/`));
    expect(loops.map((l) => `${l.device} ${l.backingFile}`)).to.deep.equal([]);
  });
});
