// Whole volume lives, end to end: the sidecar harnesses drive the
// controller, the kubelet harness discovers the driver through its
// registration socket and drives the node service. No cluster exists on
// these machines; the harnesses follow the kubelet's and the sidecars'
// source (named in test/helpers).

import fs from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { AllInOne } from '../helpers/all-in-one.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { HostState, mountTargets } from '../helpers/host.js';
import { KubeletHarness, newPod } from '../helpers/kubelet-harness.js';
import { rawGrpcCall } from '../helpers/raw-h2.js';
import { type Claim, type ExternalAttacher, type ExternalProvisioner, newClaim, type StorageClass } from '../helpers/sidecars.js';

const DRIVER = 'berth.csi.dev';
const MiB = 1024 * 1024;

const pod = newPod;
const claim = newClaim;
const sc = (parameters: Record<string, string>, mountOptions?: string[]): StorageClass => ({
  name: 'berth',
  provisioner: DRIVER,
  parameters,
  mountOptions,
});

describe('end to end: sidecars, kubelet registration and pod lifecycles', function () {
  this.timeout(120_000);
  let cluster: AllInOne;
  let d: DriverProcess;
  let kubelet: KubeletHarness;
  let provisioner: ExternalProvisioner;
  let attacher: ExternalAttacher;
  let host: HostState;

  before(async () => {
    host = await HostState.capture();
    cluster = await AllInOne.start();
    ({ driver: d, kubelet, provisioner, attacher } = cluster);
  });

  after(async () => {
    await cluster.stop();
    const leaks = await host.leaks();
    await d.cleanup();
    expect(leaks, 'loop devices or mounts left behind').to.deep.equal({ loops: [], mounts: [] });
  });

  describe('registration', () => {
    it('registers through plugins_registry with the CSI socket as endpoint and the node id', async () => {
      const p = kubelet.registered.get(DRIVER)!;
      expect(p.endpoint).to.equal(d.socket);
      expect(p.nodeId).to.equal('node-a');
      expect(p.topology).to.deep.equal({ 'topology.berth.csi.dev/node': 'node-a' });
      const st = await fs.stat(path.join(d.kubeletDir, 'plugins_registry', `${DRIVER}-reg.sock`));
      expect(st.isSocket()).to.equal(true);
      expect(st.mode & 0o077).to.equal(0);
    });

    for (const [label, authority] of [
      ['no :authority', undefined],
      ['the socket path', 'SOCKET'],
      ['localhost', 'localhost'],
    ] as const) {
      it(`the registration socket answers a client sending ${label}`, async () => {
        const sock = path.join(d.kubeletDir, 'plugins_registry', `${DRIVER}-reg.sock`);
        const res = await rawGrpcCall(sock, '/pluginregistration.Registration/GetInfo', authority === 'SOCKET' ? sock : authority);
        expect(res.rstCode).to.equal(undefined);
        expect(res.message?.toString('latin1')).to.contain('CSIPlugin');
      });
    }

    it('a refused registration makes the node plugin exit non-zero', async () => {
      const other = await DriverProcess.start({ mode: 'node', nodeId: 'node-x' });
      // The node already carries a label with our topology key and another value.
      const strict = new KubeletHarness(other.kubeletDir, 'node-x', { 'topology.berth.csi.dev/node': 'somewhere-else' });
      await strict.start();
      const exit = await other.waitExit();
      await strict.stop();
      await other.cleanup();
      expect(exit.code).to.equal(1);
      expect(strict.events.join('\n')).to.match(/refused berth.csi.dev: topology label/);
      expect(other.stderr).to.contain('REFUSED');
    });

    it('serves no registration socket with --self-register=false', async () => {
      const quiet = await DriverProcess.start({ mode: 'node', extraArgs: ['--self-register=false'] });
      const entries = await fs.readdir(path.join(quiet.kubeletDir, 'plugins_registry')).catch(() => []);
      await quiet.cleanup();
      expect(entries).to.deep.equal([]);
    });
  });

  describe('volume lives', () => {
    const cases: Array<[string, StorageClass, Partial<Claim>, (t: string) => Promise<void>, (t: string) => Promise<string>]> = [
      [
        'share',
        sc({ kind: 'share' }),
        { accessModes: ['ReadWriteMany'] },
        (t) => fs.writeFile(path.join(t, 'f'), 'pod A was here'),
        (t) => fs.readFile(path.join(t, 'f'), 'utf8'),
      ],
      [
        'block, ext4 filesystem',
        sc({ kind: 'block', 'csi.storage.k8s.io/fstype': 'ext4' }, ['noatime']),
        {},
        (t) => fs.writeFile(path.join(t, 'f'), 'pod A was here'),
        (t) => fs.readFile(path.join(t, 'f'), 'utf8'),
      ],
      [
        'block, raw device',
        sc({ kind: 'block' }),
        { volumeMode: 'Block', storage: 16 * MiB },
        async (t) => {
          const fh = await fs.open(t, 'r+');
          await fh.write(Buffer.from('pod A was here'), 0, 14, 0);
          await fh.sync();
          await fh.close();
        },
        async (t) => {
          const fh = await fs.open(t, 'r');
          const buf = Buffer.alloc(14);
          await fh.read(buf, 0, 14, 0);
          await fh.close();
          return buf.toString();
        },
      ],
    ];

    for (const [label, storageClass, over, write, read] of cases) {
      it(`${label}: provision, attach, pod A writes, pod B reads, then everything undone`, async () => {
        const pv = await provisioner.provision(storageClass, claim(`data-${label.split(' ')[0]}`, over));
        expect(pv.nodeAffinity).to.deep.equal([{ 'topology.berth.csi.dev/node': 'node-a' }]);
        const node = kubelet.registered.get(DRIVER)!.nodeId;
        const ctx = await attacher.attach(pv, node);
        const [a, b] = [pod('a'), pod('b')];
        const ta = await kubelet.mountPod(a, pv, ctx);
        await write(ta);
        const stats = await kubelet.volumeStats(a, pv);
        expect(stats.volume_condition?.abnormal).to.equal(false);
        await kubelet.unmountPod(a, pv);
        const tb = await kubelet.mountPod(b, pv, ctx);
        expect(await read(tb)).to.equal('pod A was here');
        await kubelet.unmountPod(b, pv);
        await attacher.detach(pv, node);
        await provisioner.delete(pv);
        expect(await fs.readdir(path.join(d.poolDir, 'volumes'))).to.not.include(pv.name);
      });
    }

    it('a ReadWriteMany share is used by two pods at once', async () => {
      const pv = await provisioner.provision(sc({ kind: 'share' }), claim('shared', { accessModes: ['ReadWriteMany'] }));
      const node = kubelet.registered.get(DRIVER)!.nodeId;
      const ctx = await attacher.attach(pv, node);
      const [a, b] = [pod('a'), pod('b')];
      const ta = await kubelet.mountPod(a, pv, ctx);
      const tb = await kubelet.mountPod(b, pv, ctx);
      await fs.writeFile(path.join(ta, 'x'), 'from a');
      await fs.writeFile(path.join(tb, 'y'), 'from b');
      expect((await fs.readdir(ta)).sort()).to.deep.equal(['x', 'y']);
      await kubelet.unmountPod(a, pv);
      expect(await fs.readFile(path.join(tb, 'x'), 'utf8')).to.equal('from a'); // still staged for b
      await kubelet.unmountPod(b, pv);
      await attacher.detach(pv, node);
      await provisioner.delete(pv);
    });

    it('a volume expanded while in use grows after the kubelet calls NodeExpandVolume', async () => {
      const pv = await provisioner.provision(
        sc({ kind: 'block', 'csi.storage.k8s.io/fstype': 'xfs' }),
        claim('grow', { storage: 320 * MiB }),
      );
      const node = kubelet.registered.get(DRIVER)!.nodeId;
      const ctx = await attacher.attach(pv, node);
      const a = pod('a');
      const t = await kubelet.mountPod(a, pv, ctx);
      const { rpc } = await import('../../cli/client.js');
      await rpc(d.clients.controller, 'ControllerExpandVolume', {
        volume_id: pv.volumeHandle,
        capacity_range: { required_bytes: 480 * MiB },
      });
      expect((await kubelet.expand(a, pv, 480 * MiB)).capacity_bytes).to.equal(String(480 * MiB));
      const st = await fs.statfs(t);
      expect(st.blocks * st.bsize).to.be.greaterThan(400 * MiB);
      await kubelet.unmountPod(a, pv);
      await attacher.detach(pv, node);
      await provisioner.delete(pv);
    });
  });

  describe('restarts', () => {
    it('survives the driver killed mid-life: socket recreated, re-registered, unmount still works', async () => {
      const pv = await provisioner.provision(sc({ kind: 'block', 'csi.storage.k8s.io/fstype': 'ext4' }), claim('restart'));
      const node = kubelet.registered.get(DRIVER)!.nodeId;
      const ctx = await attacher.attach(pv, node);
      const a = pod('a');
      const t = await kubelet.mountPod(a, pv, ctx);
      await fs.writeFile(path.join(t, 'f'), 'kept');
      const registrations = kubelet.events.filter((e) => e === `registered ${DRIVER}`).length;
      await d.restart('SIGKILL');
      await kubelet.waitRegistered(DRIVER, 10_000, registrations);
      expect(await fs.readFile(path.join(t, 'f'), 'utf8')).to.equal('kept');
      await kubelet.unmountPod(a, pv);
      await attacher.detach(pv, node);
      await provisioner.delete(pv);
    });

    it('survives the kubelet restarted while volumes are mounted', async () => {
      const pv = await provisioner.provision(sc({ kind: 'share' }), claim('kubelet-restart'));
      const node = kubelet.registered.get(DRIVER)!.nodeId;
      const ctx = await attacher.attach(pv, node);
      const a = pod('a');
      const t = await kubelet.mountPod(a, pv, ctx);
      await kubelet.stop();
      kubelet = new KubeletHarness(d.kubeletDir, 'node-a');
      await kubelet.start();
      await kubelet.waitRegistered(DRIVER);
      expect(await mountTargets()).to.include(t);
      await kubelet.unmountPod(a, pv);
      expect(await mountTargets()).to.not.include(t);
      await attacher.detach(pv, node);
      await provisioner.delete(pv);
    });

    it('removes the registration socket on shutdown so the kubelet deregisters', async () => {
      const n = await DriverProcess.start({ mode: 'node', nodeId: 'node-y' });
      const h = new KubeletHarness(n.kubeletDir, 'node-y');
      await h.start();
      await h.waitRegistered(DRIVER);
      await n.stop('SIGTERM');
      const deadline = Date.now() + 5000;
      while (!h.events.includes(`deregistered ${DRIVER}`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await h.stop();
      await n.cleanup();
      expect(h.events).to.include(`deregistered ${DRIVER}`);
    });
  });
});
