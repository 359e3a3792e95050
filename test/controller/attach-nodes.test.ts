// The central controller attaches only to nodes that run the driver, as
// their CSINode objects say (read through a stand-in API server: no
// kube-apiserver runs here), and honours each node's volume limit.

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { Code, expectCode, mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess, MAIN } from '../helpers/driver-process.js';
import { Ganesha } from '../helpers/ganesha.js';
import { StandInApiServer } from '../helpers/stand-in-api-server.js';

const exec = promisify(execFile);

describe('central controller: attach knows the nodes (CSINode objects, stand-in API server)', function () {
  this.timeout(60_000);
  let dir: string;
  let g: Ganesha;
  let api: StandInApiServer;
  let d: DriverProcess;
  const share = async (name: string) =>
    (
      await rpc<{ volume: { volume_id: string } }>(d.clients.controller, 'CreateVolume', {
        name,
        volume_capabilities: [mountCap('SINGLE_NODE_WRITER')],
        parameters: { pool: 'nfs', kind: 'share', server: '127.0.0.1', share: g.exportPath },
      })
    ).volume.volume_id;
  const publish = (volume_id: string, node_id: string) =>
    rpc(d.clients.controller, 'ControllerPublishVolume', { volume_id, node_id, volume_capability: mountCap('SINGLE_NODE_WRITER') });

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-attach-nodes-'));
    g = new Ganesha(dir);
    await g.start();
    api = await StandInApiServer.start();
    d = await DriverProcess.start({ mode: 'controller', extraArgs: ['--kubeconfig', api.kubeconfig] });
  });
  after(async () => {
    await d?.cleanup();
    await api?.stop();
    await g?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('answers NOT_FOUND for a node whose CSINode does not list this driver, and attaches once the kubelet has registered it', async () => {
    const id = await share('pvc-attach-1');
    await expectCode(publish(id, 'node-1'), Code.NOT_FOUND);
    api.setDriver('node-1', { name: 'other.csi.example.com', nodeID: 'node-1' });
    await expectCode(publish(id, 'node-1'), Code.NOT_FOUND);
    api.setDriver('node-1', { name: 'berth.csi.dev', nodeID: 'node-1', topologyKeys: ['topology.berth.csi.dev/node'] });
    await publish(id, 'node-1'); // a miss looks again at once: no wait for a newly registered node
    expect(api.requests.every((r) => r.startsWith('/apis/storage.k8s.io/v1/csinodes'))).to.equal(true);
    await rpc(d.clients.controller, 'ControllerUnpublishVolume', { volume_id: id, node_id: 'node-1' });
  });

  it('answers UNAVAILABLE (retry), not OK, while the API server cannot tell', async () => {
    const id = await share('pvc-attach-2');
    api.setDown(true);
    try {
      const err = await expectCode(publish(id, 'node-2'), Code.UNAVAILABLE);
      expect(err.details).to.contain('CSINode');
    } finally {
      api.setDown(false);
    }
    const record = JSON.parse(await fs.readFile(path.join(g.exportDir, '.berth/volumes/pvc-attach-2.json'), 'utf8'));
    expect(record.attachments).to.deep.equal({});
  });

  it("applies the node's allocatable count (its max_volumes_per_node)", async () => {
    api.setDriver('node-3', { name: 'berth.csi.dev', nodeID: 'node-3', allocatable: { count: 1 } });
    const a = await share('pvc-attach-3a');
    const b = await share('pvc-attach-3b');
    await publish(a, 'node-3');
    await expectCode(publish(b, 'node-3'), Code.RESOURCE_EXHAUSTED);
    await rpc(d.clients.controller, 'ControllerUnpublishVolume', { volume_id: a, node_id: 'node-3' });
    await publish(b, 'node-3');
    await rpc(d.clients.controller, 'ControllerUnpublishVolume', { volume_id: b, node_id: 'node-3' });
  });

  it('answers GetCapacity without parameters with 0: they name no export a volume could be made on', async () => {
    const res = await rpc<{ available_capacity: string }>(d.clients.controller, 'GetCapacity', {});
    expect(Number(res.available_capacity)).to.equal(0);
    await expectCode(rpc(d.clients.controller, 'GetCapacity', { parameters: { pool: 'local' } }), Code.INVALID_ARGUMENT);
  });

  it('refuses to start without a way to read the nodes', async () => {
    const env = { ...process.env };
    delete env.KUBERNETES_SERVICE_HOST;
    const run = await exec(
      process.execPath,
      [MAIN, '--mode', 'controller', '--endpoint', `unix://${path.join(dir, 'no-api.sock')}`, '--nodeid', 'c'],
      { env },
    ).catch((e: { code: number; stderr: string }) => e);
    expect(run).to.include({ code: 1 });
    expect((run as { stderr: string }).stderr).to.contain('--kubeconfig');
  });
});
