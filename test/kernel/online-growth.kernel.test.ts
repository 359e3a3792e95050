// NodeExpandVolume grows ext4 and xfs while mounted, in the kernel tier's VM:
// there the driver has what a privileged node pod has (CAP_SYS_RESOURCE,
// which ext4's online resize needs and the test machines withhold).
import fs from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'chai';
import { mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { exec, HostState } from '../helpers/host.js';
import { requireKernelVm } from '../helpers/kernel-vm.js';
import { KubeletPaths, podUid } from '../helpers/kubelet.js';

const MiB = 1024 * 1024;

describe('kernel VM: block volumes grow online', function () {
  this.timeout(600_000);
  let d: DriverProcess;
  let k: KubeletPaths;
  let host: HostState;

  before(async () => {
    requireKernelVm();
    host = await HostState.capture();
    d = await DriverProcess.start({ mode: 'all' });
    k = new KubeletPaths(d.kubeletDir);
  });
  after(async () => {
    await d?.stop('SIGKILL');
    const leaks = host ? await host.leaks() : { loops: [], mounts: [] };
    await d?.cleanup();
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
      const cap = mountCap('SINGLE_NODE_WRITER', fsType);
      const { volume } = await rpc<{ volume: { volume_id: string; volume_context: Record<string, string> } }>(
        d.clients.controller,
        'CreateVolume',
        {
          name: `pvc-online-${fsType}`,
          capacity_range: { required_bytes: from },
          volume_capabilities: [cap],
          parameters: { kind: 'block' },
        },
      );
      const id = volume.volume_id;
      const staging = k.staging(id);
      await k.prepareStage(staging);
      await rpc(d.clients.node, 'NodeStageVolume', {
        volume_id: id,
        staging_target_path: staging,
        volume_capability: cap,
        volume_context: volume.volume_context,
      });
      const target = k.target(podUid(), `pv-${fsType}`);
      await k.preparePublish(target);
      await rpc(d.clients.node, 'NodePublishVolume', {
        volume_id: id,
        staging_target_path: staging,
        target_path: target,
        volume_capability: cap,
        volume_context: volume.volume_context,
      });
      // A process holds a file open on the volume all along: an unmount would fail (busy), so any growth is online.
      const held = await fs.open(path.join(target, 'held-open'), 'w');
      await held.write('still here');
      await held.sync();
      const mountsBefore = (await exec('findmnt', ['-n', '-o', 'ID', '--target', staging])).stdout.trim();
      const before = await total(target);

      await rpc(d.clients.controller, 'ControllerExpandVolume', {
        volume_id: id,
        capacity_range: { required_bytes: to },
        volume_capability: cap,
      });
      const res = await rpc<{ capacity_bytes: string }>(d.clients.node, 'NodeExpandVolume', {
        volume_id: id,
        volume_path: target,
        staging_target_path: staging,
        capacity_range: { required_bytes: to },
        volume_capability: cap,
      });
      expect(res.capacity_bytes).to.equal(String(to));
      expect(await total(target), 'the mounted filesystem grew').to.be.greaterThan(before + (to - from) * 0.8);
      expect((await exec('findmnt', ['-n', '-o', 'ID', '--target', staging])).stdout.trim(), 'the same mount').to.equal(mountsBefore);
      await held.close();
      expect(await fs.readFile(path.join(target, 'held-open'), 'utf8')).to.equal('still here');

      await rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: id, target_path: target });
      await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
      await rpc(d.clients.controller, 'DeleteVolume', { volume_id: id });
    });
  }
});
