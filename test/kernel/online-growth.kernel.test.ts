// NodeExpandVolume grows ext4 and xfs while mounted, in the kernel tier's VM:
// there the driver has what a privileged node pod has (CAP_SYS_RESOURCE,
// which ext4's online resize needs and the test machines withhold). The
// kubelet and the external-provisioner are the root tier's harnesses; the
// external-resizer's one call, ControllerExpandVolume, is made inline.
import fs from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { AllInOne, NFS_DRIVER } from '../helpers/all-in-one.js';
import { rpc } from '../helpers/csi-client.js';
import { exec, HostState } from '../helpers/host.js';
import { requireKernelVm } from '../helpers/kernel-vm.js';
import { newPod } from '../helpers/kubelet-harness.js';
import { newClaim } from '../helpers/sidecars.js';

const MiB = 1024 * 1024;

describe('kernel VM: block volumes grow online', function () {
  this.timeout(600_000);
  let cluster: AllInOne;
  let host: HostState;

  before(async () => {
    requireKernelVm();
    host = await HostState.capture();
    cluster = await AllInOne.start({}, 60_000);
  });
  after(async () => {
    await cluster?.stop();
    const leaks = host ? await host.leaks() : { loops: [], mounts: [] };
    await cluster?.driver.cleanup();
    expect(leaks, 'loop devices or mounts left behind').to.deep.equal({ loops: [], mounts: [] });
  });

  const total = async (p: string) => {
    const s = await fs.statfs(p);
    return s.blocks * s.bsize;
  };

  for (const [fsType, from, to] of [
    ['ext4', 64 * MiB, 192 * MiB],
    ['xfs', 320 * MiB, 640 * MiB],
  ] as const) {
    it(`grows ${fsType} while it stays mounted and published, keeping the data`, async () => {
      const { kubelet, provisioner, attacher, driver: d } = cluster;
      const sc = { name: fsType, provisioner: NFS_DRIVER, parameters: { kind: 'block', 'csi.storage.k8s.io/fstype': fsType } };
      const pv = await provisioner.provision(sc, newClaim(`online-${fsType}`, { storage: from }));
      const ctx = await attacher.attach(pv, 'node-a');
      const pod = newPod('app');
      const target = await kubelet.mountPod(pod, pv, ctx);
      const staging = kubelet.stagingPath(pv);
      // A process holds a file open on the volume all along: an unmount would fail (busy), so any growth is online.
      const held = await fs.open(path.join(target, 'held-open'), 'w');
      await held.write('still here');
      await held.sync();
      const mountId = async () => (await exec('findmnt', ['-n', '-o', 'ID', '--target', staging])).stdout.trim();
      const mountBefore = await mountId();
      const before = await total(target);

      await rpc(d.clients.controller, 'ControllerExpandVolume', {
        volume_id: pv.volumeHandle,
        capacity_range: { required_bytes: to },
        volume_capability: { mount: { fs_type: fsType }, access_mode: { mode: 'SINGLE_NODE_WRITER' } },
      });
      const res = await kubelet.expand(pod, pv, to);
      expect(res.capacity_bytes).to.equal(String(to));
      expect(await total(target), 'the mounted filesystem grew').to.be.greaterThan(before + (to - from) * 0.8);
      expect(await mountId(), 'the same mount').to.equal(mountBefore);
      await held.close();
      expect(await fs.readFile(path.join(target, 'held-open'), 'utf8')).to.equal('still here');

      await kubelet.unmountPod(pod, pv);
      await attacher.detach(pv, 'node-a');
      await provisioner.delete(pv);
    });
  }
});
