// The chart's berth pods, run from berth's image with podman as the kubelet
// would run them (test/helpers/chart-pods.ts): the local driver privileged
// on a kubelet directory, the NFS node plugin, and the unprivileged
// controller with a stand-in API server's service account. The sidecars are
// played by the test (their images cannot be pulled here), as is the kubelet.
// With BERTH_CSI_SANITY naming a csi-sanity binary, the upstream suite also
// runs against the containerized drivers.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { stringify } from 'yaml';
import { berthImage } from '../helpers/berth-image.js';
import { ChartPod, renderChart, type Workload } from '../helpers/chart-pods.js';
import { type CsiClients, csiClients } from '../helpers/csi-client.js';
import { undoUnder } from '../helpers/driver-process.js';
import { Ganesha } from '../helpers/ganesha.js';
import { exec, HostState } from '../helpers/host.js';
import { KubeletHarness, type Pod } from '../helpers/kubelet-harness.js';
import { type Claim, ExternalAttacher, ExternalProvisioner, type StorageClass } from '../helpers/sidecars.js';
import { StandInApiServer } from '../helpers/stand-in-api-server.js';

const execFileAsync = promisify(execFile);
const MiB = 1024 * 1024;
const CSI_SANITY = process.env.BERTH_CSI_SANITY;

describe("the chart's berth pods under podman, as the kubelet runs them (berth's image on a stand-in base; kubelet and sidecars played)", function () {
  this.timeout(900_000);
  let dir: string;
  let kubeletDir: string;
  let workloads: Workload[];
  let host: HostState;
  let g: Ganesha;
  const pods: ChartPod[] = [];
  const clients: CsiClients[] = [];

  before(async () => {
    await berthImage();
    host = await HostState.capture();
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-pods-'));
    kubeletDir = path.join(dir, 'kubelet');
    await fs.mkdir(kubeletDir, { recursive: true });
    // A kubelet directory is a shared mount on a node: what Bidirectional propagation needs.
    await exec('mount', ['--bind', kubeletDir, kubeletDir]);
    await exec('mount', ['--make-rshared', kubeletDir]);
    g = new Ganesha(path.join(dir, 'nfs'));
    await g.start();
    workloads = await renderChart(dir, {
      image: { repository: 'localhost/berth', tag: 'test', pullPolicy: 'Never' },
      kubeletDir,
      localPools: { hostPath: path.join(dir, 'pool') },
      node: { mountedAtDirs: [g.exportDir] },
      // Every pod shares the host's network here (no pod network), where the
      // controller's metrics port would be the NFS node plugin's too.
      metrics: { enabled: false },
    });
  });
  after(async () => {
    for (const c of clients) c.close();
    for (const p of pods) await p.stop();
    await g?.stop();
    const found = host ? await host.leaks() : { loops: [], mounts: [] };
    // The kubelet directory's own bind (made above) is the one mount expected.
    const leaks = { loops: found.loops, mounts: found.mounts.filter((m) => m !== `+${kubeletDir}`) };
    if (dir) {
      await undoUnder(dir);
      await exec('umount', [kubeletDir]).catch(() => undefined);
      await fs.rm(dir, { recursive: true, force: true });
    }
    expect(leaks, 'loop devices or mounts left behind').to.deep.equal({ loops: [], mounts: [] });
  });

  const workload = (name: string) => workloads.find((w) => w.metadata.name === name) as Workload;
  const socketOf = (driver: string) => path.join(kubeletDir, 'plugins', driver, 'csi.sock');
  const connect = (socket: string) => {
    const c = csiClients(socket);
    clients.push(c);
    return c;
  };

  /**
   * A pod on node-a uses a claim of `sc`: the sidecars' and the kubelet's
   * calls (the attacher's only for the NFS driver: the local one has no
   * attach step, its CSIDriver says attachRequired: false); the host writes
   * through the pod's mount.
   */
  async function podWritesThrough(kubelet: KubeletHarness, clients: () => CsiClients, sc: StorageClass, c: Partial<Claim>) {
    const attachRequired = sc.provisioner === 'berth.csi.dev';
    const provisioner = new ExternalProvisioner(clients);
    const attacher = new ExternalAttacher(clients);
    const pv = await provisioner.provision(sc, {
      uid: randomUUID(),
      name: 'data',
      namespace: 'default',
      accessModes: ['ReadWriteOnce'],
      storage: 64 * MiB,
      volumeMode: 'Filesystem',
      ...c,
    });
    const ctx = attachRequired ? await attacher.attach(pv, 'node-a') : {};
    const pod: Pod = { uid: randomUUID(), name: 'app', namespace: 'default', serviceAccount: 'default' };
    const target = await kubelet.mountPod(pod, pv, ctx);
    // The container's mounts reach the host (Bidirectional): the host writes through them.
    if (pv.volumeMode === 'Block') {
      const fd = await fs.open(target, 'r+');
      await fd.write(Buffer.from('written on the host'), 0, 19, 0);
      await fd.close();
    } else {
      await fs.writeFile(path.join(target, 'from-the-host'), 'written on the host');
    }
    return async () => {
      await kubelet.unmountPod(pod, pv);
      if (attachRequired) await attacher.detach(pv, 'node-a');
      await provisioner.delete(pv);
    };
  }

  it('runs berth-local privileged on the kubelet directory: it registers through the registration socket, and its share, block and raw block volumes reach the host', async () => {
    const kubelet = new KubeletHarness(kubeletDir, 'node-a');
    await kubelet.start();
    try {
      pods.push(await ChartPod.start(workload('berth-local'), 'berth', { nodeName: 'node-a', dir: path.join(dir, 'pods/local') }));
      const plugin = await kubelet.waitRegistered('local.berth.csi.dev', 60_000);
      expect(plugin.nodeId).to.equal('node-a');
      expect(plugin.endpoint).to.equal(socketOf('local.berth.csi.dev'));
      const c = connect(socketOf('local.berth.csi.dev'));
      const local = (parameters: Record<string, string>): StorageClass => ({
        name: 'local',
        provisioner: 'local.berth.csi.dev',
        parameters,
      });
      for (const [sc, claim] of [
        [local({ kind: 'share' }), {}],
        [local({ kind: 'block', 'csi.storage.k8s.io/fstype': 'ext4' }), {}],
        [local({ kind: 'block' }), { volumeMode: 'Block' }],
      ] as const) {
        const undo = await podWritesThrough(kubelet, () => c, sc, claim);
        await undo();
      }
    } finally {
      await kubelet.stop();
    }
    expect(await host.loopsLeft()).to.deep.equal([]);
  });

  it('runs the controller as the kubelet admits it (uid 65532, read-only root, no capabilities) beside berth-node, and provisions, attaches, stages and publishes an NFS volume from nfs-ganesha', async () => {
    const api = await StandInApiServer.start();
    const kubelet = new KubeletHarness(kubeletDir, 'node-a');
    await kubelet.start();
    try {
      api.setDriver('node-a', { name: 'berth.csi.dev', nodeID: 'node-a' });
      const controllerDir = path.join(dir, 'pods/controller');
      const controller = await ChartPod.start(workload('berth-controller'), 'berth', {
        nodeName: 'node-c',
        dir: controllerDir,
        serviceAccount: { kubeconfig: api.kubeconfig },
      });
      pods.push(controller);
      pods.push(await ChartPod.start(workload('berth-node'), 'berth', { nodeName: 'node-a', dir: path.join(dir, 'pods/node') }));
      const controllerSocket = path.join(controllerDir, 'empty-dirs/socket-dir/csi.sock');
      await controller.waitFor(controllerSocket, 60_000);
      expect((await kubelet.waitRegistered('berth.csi.dev', 60_000)).endpoint).to.equal(socketOf('berth.csi.dev'));
      const status = await controller.exec(['sh', '-c', 'id -u; grep CapEff /proc/1/status; touch /app/x 2>&1 || true']);
      expect(status)
        .to.match(/^65532\n/)
        .and.match(/CapEff:\s+0{16}/)
        .and.contain('Read-only file system');

      const ctl = connect(controllerSocket);
      const sc: StorageClass = {
        name: 'nfs',
        provisioner: 'berth.csi.dev',
        parameters: { pool: 'nfs', server: '127.0.0.1', share: g.exportDir, mountedAt: g.exportDir, subDir: 'pvc-pod-nfs' },
      };
      const undo = await podWritesThrough(kubelet, () => ctl, sc, { accessModes: ['ReadWriteMany'] });
      expect(await fs.readFile(path.join(g.exportDir, 'pvc-pod-nfs', 'from-the-host'), 'utf8')).to.equal('written on the host');
      await undo();
      await expectGone(path.join(g.exportDir, 'pvc-pod-nfs'));
    } finally {
      await kubelet.stop();
      await api.stop();
    }
  });

  it("installs the FlexVolume shim into a host directory with the installer DaemonSet's init container", async () => {
    const rendered = await renderChart(dir, {
      image: { repository: 'localhost/berth', tag: 'test' },
      flexInstaller: { enabled: true, pluginDir: path.join(dir, 'flex-plugins') },
    });
    const installer = rendered.find((w) => w.metadata.name === 'berth-flex-installer') as Workload;
    const pod = await ChartPod.start(installer, 'install', { nodeName: 'node-a', dir: path.join(dir, 'pods/flex') });
    pods.push(pod);
    const nfs = path.join(dir, 'flex-plugins/berth~nfs/nfs');
    const block = path.join(dir, 'flex-plugins/berth~block/block');
    // The installer places the drivers one after the other: wait for each.
    await pod.waitFor(nfs, 60_000);
    await pod.waitFor(block, 60_000);
    const init = JSON.parse((await execFileAsync(nfs, ['init'])).stdout) as { status: string };
    expect(init.status).to.equal('Success');
    expect((await fs.stat(block)).mode & 0o777).to.equal(0o755);
  });

  if (CSI_SANITY) {
    it('passes the upstream csi-sanity against the containerized local driver: share, block and raw block (BERTH_CSI_SANITY)', async () => {
      const failures: Array<string | undefined> = [];
      for (const [label, params, extra] of [
        ['share', { kind: 'share' }, []],
        ['block', { kind: 'block' }, []],
        ['raw block', { kind: 'block' }, ['--csi.testvolumeaccesstype', 'block']],
      ] as const) {
        failures.push(await sanity(label, socketOf('local.berth.csi.dev'), undefined, params, [...extra]));
      }
      expect(failures.filter(Boolean)).to.deep.equal([]);
    });
    it('passes the upstream csi-sanity against the containerized NFS node plugin and unprivileged controller (BERTH_CSI_SANITY)', async () => {
      const api = await StandInApiServer.start();
      try {
        api.setDriver('node-a', { name: 'berth.csi.dev', nodeID: 'node-a' });
        const controller = await ChartPod.start(workload('berth-controller'), 'berth', {
          nodeName: 'node-c',
          dir: path.join(dir, 'pods/controller-2'),
          serviceAccount: { kubeconfig: api.kubeconfig },
        });
        pods.push(controller);
        const socket = path.join(dir, 'pods/controller-2/empty-dirs/socket-dir/csi.sock');
        await controller.waitFor(socket, 60_000);
        const failure = await sanity('nfs share', socketOf('berth.csi.dev'), socket, {
          pool: 'nfs',
          server: '127.0.0.1',
          share: g.exportDir,
          mountedAt: g.exportDir,
        });
        expect(failure).to.equal(undefined);
      } finally {
        await api.stop();
      }
    });
  }

  async function sanity(label: string, endpoint: string, controllerEndpoint: string | undefined, params: object, extra: string[] = []) {
    const work = await fs.mkdtemp(path.join(kubeletDir, 'sanity-'));
    const paramsFile = path.join(dir, `sanity-${label.replace(/\W+/g, '-')}.yaml`);
    await fs.writeFile(paramsFile, stringify(params));
    const args = [
      `--csi.endpoint=${endpoint}`,
      ...(controllerEndpoint ? [`--csi.controllerendpoint=${controllerEndpoint}`] : []),
      `--csi.stagingdir=${path.join(work, 'staging')}`,
      `--csi.mountdir=${path.join(work, 'mount')}`,
      `--csi.testvolumeparameters=${paramsFile}`,
      ...extra,
    ];
    const run = await execFileAsync(CSI_SANITY as string, args, { maxBuffer: 64 << 20 }).then(
      (r) => ({ ok: true, out: r.stdout }),
      (e: { stdout: string; stderr: string }) => ({ ok: false, out: `${e.stdout}\n${e.stderr}` }),
    );
    // csi-sanity colours its summary with ANSI escapes.
    const summary = run.out
      .replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'), '')
      .split('\n')
      .filter((l) => /Passed|Ran \d+ of|\[FAIL\]/.test(l));
    console.log(`      csi-sanity ${label}: ${summary.join(' | ')}`);
    return run.ok ? undefined : `${label}: ${run.out.slice(-4000)}`;
  }
});

async function expectGone(p: string): Promise<void> {
  const err = await fs.stat(p).then(
    () => undefined,
    (e: NodeJS.ErrnoException) => e.code,
  );
  expect(err, `${p} removed`).to.equal('ENOENT');
}
