// The driver's Prometheus endpoint, scraped by a real Prometheus (Debian's
// package, on loopback) while the driver serves a real 128 MiB ext4 local
// pool and a real nfs-ganesha export: the values after creates, deletes, a
// full pool, a volume broken behind the driver's back and a stopped NFS
// server, as PromQL reads them; and `berth-ctl status` over the same report.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';
import type { DriverReport } from '../../driver/metrics.js';
import { blockCap, Code, expectCode, mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess } from '../helpers/driver-process.js';
import { FreshFilesystem } from '../helpers/fresh-fs.js';
import { Ganesha } from '../helpers/ganesha.js';
import { exec, HostState } from '../helpers/host.js';
import { KubeletPaths, podUid } from '../helpers/kubelet.js';
import { freePort, Prometheus } from '../helpers/prometheus.js';

const MiB = 1024 * 1024;
const CTL = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../cli/ctl.js');
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const run = promisify(execFile);

describe('metrics scraped by a real Prometheus (128 MiB ext4 local pool, nfs-ganesha on loopback)', function () {
  this.timeout(180_000);
  let dir: string;
  let pool: FreshFilesystem;
  let g: Ganesha;
  let d: DriverProcess;
  let prom: Prometheus;
  let k: KubeletPaths;
  let host: HostState;
  let address: string;
  const LOCAL = '{pool="local/node-a",type="local"';
  const nfsPool = () => `{pool="127.0.0.1:${g.exportPath}",type="nfs"`;
  const poolDir = () => path.join(pool.mountpoint, 'pool');
  const create = (name: string, parameters: Record<string, string>, bytes = 8 * MiB) =>
    rpc<{ volume: { volume_id: string } }>(d.clients.controller, 'CreateVolume', {
      name,
      capacity_range: { required_bytes: bytes },
      volume_capabilities: [parameters.kind === 'block' ? mountCap('SINGLE_NODE_WRITER', 'ext4') : mountCap('MULTI_NODE_MULTI_WRITER')],
      parameters,
    }).then((r) => r.volume.volume_id);
  const del = (id: string) => rpc(d.clients.controller, 'DeleteVolume', { volume_id: id });
  const nfs = (kind: string) => ({ pool: 'nfs', kind, server: '127.0.0.1', share: g.exportPath });
  const calls = (method: string, code: string) =>
    `sum(csi_plugin_operations_seconds_count{driver_name="berth.csi.dev",method_name="${method}",grpc_status_code="${code}"})`;
  const status = async (...args: string[]) => (await run(process.execPath, [CTL, 'status', '--address', address, ...args])).stdout;

  before(async () => {
    host = await HostState.capture();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-metrics-'));
    pool = await FreshFilesystem.make(undefined, { bytes: 128 * MiB });
    g = new Ganesha(path.join(dir, 'nfs'));
    await g.start();
    address = `127.0.0.1:${await freePort()}`;
    d = await DriverProcess.start({
      mode: 'all',
      poolDir: poolDir(),
      extraArgs: ['--metrics-address', address, '--pool-scan-interval', '500', '--thin-overprovision', '4'],
    });
    k = new KubeletPaths(d.kubeletDir);
    prom = await Prometheus.start(dir, address);
    await prom.waitFor('up{job="berth"}', (v) => v === 1);
  });
  after(async () => {
    await prom?.stop();
    await d?.cleanup();
    await g?.stop();
    await pool?.remove();
    await fs.rm(dir, { recursive: true, force: true });
    expect(await host.leaks()).to.deep.equal({ loops: [], mounts: [] });
  });

  it('serves /metrics in the text format and /status as JSON, nothing else', async () => {
    const metrics = await fetch(`http://${address}/metrics`);
    expect(metrics.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
    const text = await metrics.text();
    for (const family of ['process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'berth_pool_size_bytes', 'berth_info']) {
      expect(text).to.include(`# TYPE ${family} `);
    }
    const report = (await (await fetch(`http://${address}/status`)).json()) as DriverReport;
    expect(report).to.include({ driver: 'berth.csi.dev', mode: 'all', nodeId: 'node-a' });
    expect((await fetch(`http://${address}/`)).status).to.equal(404);
    expect((await fetch(`http://${address}/metrics`, { method: 'POST' })).status).to.equal(404);
    expect(await prom.value('process_resident_memory_bytes{job="berth"}')).to.be.greaterThan(10 * MiB);
  });

  it('counts volumes, promised and allocated bytes per pool and kind after creates and deletes, and every call by method and code', async () => {
    const s1 = await create('pvc-s1', { kind: 'share' });
    const s2 = await create('pvc-s2', { kind: 'share' });
    const thick = await create('pvc-thick', { kind: 'block' }, 16 * MiB);
    const thin = await create('pvc-thin', { kind: 'block', provisioning: 'thin' }, 32 * MiB);
    await rpc(d.clients.controller, 'CreateSnapshot', { source_volume_id: thick, name: 'snap-1' });
    const ns = await create('pvc-nfs-share', nfs('share'));
    const nb = await create('pvc-nfs-block', nfs('block'), 24 * MiB);

    await prom.waitFor(`berth_pool_volumes${LOCAL},kind="block"}`, (v) => v === 2);
    expect(await prom.value(`berth_pool_volumes${LOCAL},kind="share"}`)).to.equal(2);
    expect(await prom.value(`berth_pool_provisioned_bytes${LOCAL},kind="block"}`)).to.equal(48 * MiB);
    expect(await prom.value(`berth_pool_provisioned_bytes${LOCAL},kind="share"}`)).to.equal(16 * MiB);
    // The thick image is reserved in full; the thin one holds nothing yet.
    const allocated = (await prom.value(`berth_pool_allocated_bytes${LOCAL},kind="block"}`)) as number;
    expect(allocated)
      .to.be.at.least(16 * MiB)
      .and.below(20 * MiB);
    expect(await prom.value(`berth_pool_snapshots${LOCAL}}`)).to.equal(1);
    const st = await fs.statfs(pool.mountpoint);
    expect(await prom.value(`berth_pool_size_bytes${LOCAL}}`)).to.equal(st.blocks * st.bsize);
    const free = (await prom.value(`berth_pool_free_bytes${LOCAL}}`)) as number;
    expect(Math.abs(free - st.bavail * st.bsize)).to.be.below(2 * MiB);

    await prom.waitFor(`berth_pool_volumes${nfsPool()},kind="block"}`, (v) => v === 1);
    expect(await prom.value(`berth_pool_volumes${nfsPool()},kind="share"}`)).to.equal(1);
    expect(await prom.value(`berth_pool_provisioned_bytes${nfsPool()},kind="block"}`)).to.equal(24 * MiB);
    // A sparse image: the server says it takes (almost) nothing; a share's allocation is not walked.
    expect(await prom.value(`berth_pool_allocated_bytes${nfsPool()},kind="block"}`)).to.be.below(MiB);
    expect(await prom.value(`berth_pool_allocated_bytes${nfsPool()},kind="share"}`)).to.equal(undefined);
    expect(await prom.value('berth_nfs_server_up{server="127.0.0.1"}')).to.equal(1);
    expect(await prom.value('sum(berth_nfs_rpc_seconds_count{server="127.0.0.1",procedure="NFS3 MKDIR",result="reply"})')).to.be.at.least(
      2,
    );

    expect(await prom.value(calls('/csi.v1.Controller/CreateVolume', 'OK'))).to.equal(6);
    await expectCode(rpc(d.clients.controller, 'ControllerGetVolume', { volume_id: 'local:node-a:share:pvc-none' }), Code.NOT_FOUND);
    await prom.waitFor(calls('/csi.v1.Controller/ControllerGetVolume', 'NotFound'), (v) => v === 1);

    for (const id of [s1, thin, ns]) await del(id);
    await prom.waitFor(`berth_pool_volumes${LOCAL},kind="block"}`, (v) => v === 1);
    expect(await prom.value(`berth_pool_volumes${LOCAL},kind="share"}`)).to.equal(1);
    expect(await prom.value(`berth_pool_provisioned_bytes${LOCAL},kind="block"}`)).to.equal(16 * MiB);
    await prom.waitFor(`berth_pool_volumes${nfsPool()},kind="share"}`, (v) => v === 0);
    expect(await prom.value(calls('/csi.v1.Controller/DeleteVolume', 'OK'))).to.equal(3);
    await rpc(d.clients.controller, 'DeleteSnapshot', {
      snapshot_id: (await rpc<{ entries: Array<{ snapshot: { snapshot_id: string } }> }>(d.clients.controller, 'ListSnapshots', {}))
        .entries[0]?.snapshot.snapshot_id,
    });
    for (const id of [s2, thick, nb]) await del(id);
    await prom.waitFor(`berth_pool_volumes${LOCAL},kind="block"}`, (v) => v === 0);
    await prom.waitFor(`berth_pool_snapshots${LOCAL}}`, (v) => v === 0);
  });

  it('shows a full pool: free space near zero, promised bytes up, and the refused create as ResourceExhausted', async () => {
    const made: string[] = [];
    let refused = false;
    for (let i = 0; i < 20 && !refused; i++) {
      try {
        made.push(await create(`pvc-fill-${i}`, { kind: 'block' }, 24 * MiB));
      } catch (err) {
        expect((err as { code: number }).code).to.equal(Code.RESOURCE_EXHAUSTED);
        refused = true;
      }
    }
    expect(refused, 'the pool filled up').to.equal(true);
    await prom.waitFor(`berth_pool_volumes${LOCAL},kind="block"}`, (v) => v === made.length);
    expect(await prom.value(`berth_pool_free_bytes${LOCAL}}`)).to.be.below(24 * MiB);
    expect(await prom.value(`berth_pool_provisioned_bytes${LOCAL},kind="block"}`)).to.equal(made.length * 24 * MiB);
    const size = (await prom.value(`berth_pool_size_bytes${LOCAL}}`)) as number;
    expect(await prom.value(`berth_pool_allocated_bytes${LOCAL},kind="block"}`)).to.be.above(size * 0.7);
    await prom.waitFor(calls('/csi.v1.Controller/CreateVolume', 'ResourceExhausted'), (v) => v === 1);
    expect(await status()).to.match(/local\/node-a\s+local\s+\S+ MiB\s+\S+ (MiB|KiB|B)\s+\S+ MiB/);
    for (const id of made) await del(id);
    await prom.waitFor(`berth_pool_volumes${LOCAL},kind="block"}`, (v) => v === 0);
  });

  it('counts staged and published volumes, and reports one broken behind the driver as abnormal with its reason until it is healed', async () => {
    const id = await create('pvc-node', { kind: 'block' }, 16 * MiB);
    const staging = k.staging(id);
    const target = k.target(podUid(), 'pv-node');
    const cap = mountCap('SINGLE_NODE_WRITER', 'ext4');
    await k.prepareStage(staging);
    await rpc(d.clients.node, 'NodeStageVolume', { volume_id: id, staging_target_path: staging, volume_capability: cap });
    await k.preparePublish(target);
    await rpc(d.clients.node, 'NodePublishVolume', {
      volume_id: id,
      staging_target_path: staging,
      target_path: target,
      volume_capability: cap,
    });
    const raw = await create('pvc-raw', { kind: 'block' }, 8 * MiB);
    const rawStaging = k.blockStaging('pv-raw');
    const rawTarget = k.blockTarget('pv-raw', podUid());
    await k.prepareStage(rawStaging);
    await rpc(d.clients.node, 'NodeStageVolume', { volume_id: raw, staging_target_path: rawStaging, volume_capability: blockCap() });
    await k.preparePublish(rawTarget);
    await rpc(d.clients.node, 'NodePublishVolume', {
      volume_id: raw,
      staging_target_path: rawStaging,
      target_path: rawTarget,
      volume_capability: blockCap(),
    });
    await prom.waitFor('berth_node_published_volumes', (v) => v === 2);
    expect(await prom.value('berth_node_staged_volumes')).to.equal(2);
    expect(await prom.value('sum(berth_node_abnormal_volumes)')).to.equal(0);
    expect(await prom.value(calls('/csi.v1.Node/NodeStageVolume', 'OK'))).to.equal(2);

    // Someone unmounts the staging path by hand: the pod's bind stays, the staged mount is gone.
    await exec('umount', [staging]);
    await prom.waitFor('berth_node_abnormal_volumes{reason="not_mounted"}', (v) => v === 1);
    expect(await prom.value('sum(berth_node_abnormal_volumes)')).to.equal(1);
    const report = JSON.parse(await status('--json')) as DriverReport;
    expect(report.node?.abnormal).to.deep.equal([{ volumeId: id, reason: 'not_mounted', message: `${staging} is not mounted` }]);
    expect(await status()).to.match(new RegExp(`${id.replace(/[.:]/g, '.')}\\s+not_mounted\\s+`));
    // The kubelet's retry stages it again: healthy, and the gauge goes back to 0.
    await rpc(d.clients.node, 'NodeStageVolume', { volume_id: id, staging_target_path: staging, volume_capability: cap });
    await prom.waitFor('berth_node_abnormal_volumes{reason="not_mounted"}', (v) => v === 0);

    await rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: id, target_path: target });
    await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: id, staging_target_path: staging });
    await rpc(d.clients.node, 'NodeUnpublishVolume', { volume_id: raw, target_path: rawTarget });
    await rpc(d.clients.node, 'NodeUnstageVolume', { volume_id: raw, staging_target_path: rawStaging });
    await prom.waitFor('berth_node_staged_volumes', (v) => v === 0);
    expect(await prom.value('berth_node_published_volumes')).to.equal(0);
    await del(id);
    await del(raw);
  });

  it("has every series the chart's Grafana dashboard plots, and Prometheus evaluates each of its queries", async () => {
    const dashboard = JSON.parse(await fs.readFile(path.join(ROOT, 'charts/berth/dashboards/berth.json'), 'utf8')) as {
      panels: Array<{ targets?: Array<{ expr: string }> }>;
    };
    const exprs = dashboard.panels.flatMap((p) => p.targets ?? []).map((t) => t.expr.replace(/\$(pool|driver)/g, '.*'));
    expect(exprs.length).to.be.above(10);
    const exposition = await (await fetch(`http://${address}/metrics`)).text();
    const families = new Set(
      [...exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)].flatMap(([, n, t]) => (t === 'histogram' ? [`${n}_bucket`, `${n}_count`] : [n])),
    );
    for (const expr of exprs) {
      for (const name of expr.match(/\b(berth|csi|process|nodejs)_[a-z0-9_]+/g) ?? [])
        expect(families, `${name} in ${expr}`).to.include(name);
      await prom.query(expr); // throws on a query Prometheus refuses
    }
  });

  it('reports a stopped NFS server as down (and its pool unreadable) until it is back', async () => {
    const id = await create('pvc-nfs-again', nfs('share'));
    await prom.waitFor('berth_nfs_server_up{server="127.0.0.1"}', (v) => v === 1);
    await g.stopGanesha();
    await prom.waitFor('berth_nfs_server_up{server="127.0.0.1"}', (v) => v === 0);
    await prom.waitFor(`berth_pool_up${nfsPool()}}`, (v) => v === 0);
    expect(await prom.value(`berth_pool_up${LOCAL}}`)).to.equal(1);
    expect(await prom.up(), 'the scrape itself still succeeds').to.equal(true);
    expect(await prom.value('sum(berth_nfs_rpc_seconds_count{server="127.0.0.1",result="no_reply"})')).to.be.at.least(1);
    const text = await status();
    expect(text).to.match(/127\.0\.0\.1\s+NO\s+/);
    expect(text).to.match(new RegExp(`127\\.0\\.0\\.1:${g.exportPath.replace(/[/.-]/g, '.')}\\s+nfs\\s+unreadable: `));
    await g.startGanesha();
    await prom.waitFor('berth_nfs_server_up{server="127.0.0.1"}', (v) => v === 1, 60_000);
    await prom.waitFor(`berth_pool_up${nfsPool()}}`, (v) => v === 1);
    await del(id);
  });
});
