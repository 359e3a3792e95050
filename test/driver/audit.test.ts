// The audit trail (root: a volume's whole life on a real driver): one info
// line for each call that changed something, with its request id, the
// volume's id, its pool and the duration, and never a secret or a mount flag.
import { expect } from 'chai';
import { mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { KubeletPaths, podUid } from '../helpers/kubelet.js';

describe('audit trail: the info lines of a volume’s life', function () {
  this.timeout(60_000);
  let d: DriverProcess;
  before(async () => {
    d = await DriverProcess.start({ mode: 'all', logLevel: 'info', extraArgs: ['--self-register=false'] });
  });
  after(async () => d.cleanup());

  it('logs each change that succeeded once, with what changed, and nothing secret', async () => {
    const k = new KubeletPaths(d.kubeletDir);
    const cap = mountCap('SINGLE_NODE_WRITER', 'ext4', ['noatime']);
    const { volume } = await rpc<{ volume: { volume_id: string } }>(d.clients.controller, 'CreateVolume', {
      name: 'pvc-audited',
      capacity_range: { required_bytes: 64 << 20 },
      volume_capabilities: [cap],
      parameters: { kind: 'block' },
      secrets: { password: 'hunter2-secret' },
    });
    const id = volume.volume_id;
    const staging = k.staging(id);
    const target = k.target(podUid(), 'pvc-audited');
    await k.prepareStage(staging);
    await rpc(d.clients.node, 'NodeStageVolume', { volume_id: id, staging_target_path: staging, volume_capability: cap });
    await k.preparePublish(target);
    await rpc(d.clients.node, 'NodePublishVolume', {
      volume_id: id,
      staging_target_path: staging,
      target_path: target,
      volume_capability: cap,
    });
    await rpc(d.clients.controller, 'ListVolumes', {}); // a read: no line
    await rpc(d.clients.node, 'NodeGetVolumeStats', { volume_id: id, volume_path: target }); // a read: no line
    await rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: id, target_path: target });
    await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
    await rpc(d.clients.controller, 'DeleteVolume', { volume_id: id });
    await new Promise((r) => setTimeout(r, 200)); // the last lines reach stderr
    const lines = d.stderr
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const done = lines.filter((l) => l.message === 'done' && l.volumeId === id);
    expect(done.map((l) => l.method)).to.deep.equal([
      'CreateVolume',
      'NodeStageVolume',
      'NodePublishVolume',
      'NodeUnpublishVolume',
      'NodeUnstageVolume',
      'DeleteVolume',
    ]);
    for (const l of done) {
      expect(l.level).to.equal('info');
      expect(l.pool).to.equal('local/node-a');
      expect(l.requestId).to.be.a('string');
      expect(l.ms).to.be.a('number');
    }
    expect(new Set(done.map((l) => l.requestId)).size, 'one line per call').to.equal(done.length);
    expect(d.stderr).to.not.include('hunter2-secret');
    expect(JSON.stringify(done)).to.not.include('noatime');
  });
});
