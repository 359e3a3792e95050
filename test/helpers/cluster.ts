// A simulated cluster on one machine, in the chart's shape: on each node a
// mount namespace of its own (a holder process made by unshare), a kubelet
// directory and a KubeletHarness, the NFS driver's node plugin (mode node)
// and, where the node has a local pool, the local driver (mode local); one
// central controller of the NFS driver (mode controller) that reads the
// CSINode objects from a stand-in API server, which the kubelet harnesses
// keep as the kubelet does. The per-node provisioners and the scheduler's
// capacity check follow kubernetes-csi/external-provisioner (--node-deployment,
// --enable-capacity, --strict-topology) and the scheduler's VolumeBinding
// plugin (kubernetes pkg/scheduler/framework/plugins/volumebinding): a node
// fits a WaitForFirstConsumer claim when its CSIStorageCapacity for the
// class is at least the claim's size.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { rpc } from '../../cli/client.js';
import { TOPOLOGY_KEY } from '../../volume/topology.js';
import { DriverProcess } from './driver-process.js';
import { KubeletHarness } from './kubelet-harness.js';
import type { Claim, PersistentVolume, StorageClass } from './sidecars.js';
import { ExternalProvisioner } from './sidecars.js';
import type { StandInApiServer } from './stand-in-api-server.js';

const exec = promisify(execFile);

export const NFS_DRIVER = 'berth.csi.dev';
export const LOCAL_DRIVER = 'local.berth.csi.dev';

export interface NodeOptions {
  /** The local pool's directory (default: a directory under the node's); undefined with `local: false`. */
  poolDir?: string;
  local?: boolean;
  /** --mounted-at-dirs of the NFS node plugin. */
  mountedAtDirs?: string[];
}

export class SimulatedNode {
  nfs!: DriverProcess;
  local: DriverProcess | undefined;
  readonly kubelet: KubeletHarness;
  readonly provisioner: ExternalProvisioner | undefined;
  private holder!: ChildProcess;

  private constructor(
    readonly name: string,
    readonly dir: string,
    private readonly api: StandInApiServer,
    private readonly opts: NodeOptions,
  ) {
    this.kubelet = new KubeletHarness(path.join(dir, 'kubelet'), name, { 'kubernetes.io/hostname': name });
    if (opts.local !== false) this.provisioner = new ExternalProvisioner(() => (this.local as DriverProcess).clients);
  }

  static async start(name: string, dir: string, api: StandInApiServer, opts: NodeOptions = {}): Promise<SimulatedNode> {
    await fs.mkdir(path.join(dir, 'kubelet'), { recursive: true });
    const node = new SimulatedNode(name, dir, api, opts);
    await node.startHolder();
    await node.kubelet.start();
    node.nfs = await DriverProcess.start({
      mode: 'node',
      nodeId: name,
      dir: await mkdir(dir, 'nfs-driver'),
      kubeletDir: node.kubelet.root,
      wrap: node.enter(),
      extraArgs: opts.mountedAtDirs?.length ? ['--mounted-at-dirs', opts.mountedAtDirs.join(',')] : [],
    });
    await node.register(NFS_DRIVER);
    if (opts.local !== false) await node.startLocal();
    return node;
  }

  /** The node's own mount namespace: a process that only holds it. */
  private async startHolder(): Promise<void> {
    this.holder = spawn('unshare', ['--mount', '--propagation', 'private', 'sleep', 'infinity'], { stdio: 'ignore' });
    const own = await fs.readlink('/proc/self/ns/mnt');
    for (let i = 0; i < 100; i++) {
      const ns = await fs.readlink(`/proc/${this.holder.pid}/ns/mnt`).catch(() => own);
      if (ns !== own && (await fs.readFile(`/proc/${this.holder.pid}/comm`, 'utf8')).trim() === 'sleep') return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`the mount namespace of ${this.name} did not come up`);
  }

  /** A command prefix that runs inside this node's mount namespace. */
  enter(): string[] {
    return ['nsenter', '-t', String(this.holder.pid), '-m', '--'];
  }

  /** Runs a command on this node (in its mount namespace). */
  async run(command: string, ...args: string[]): Promise<string> {
    const [nsenter, ...prefix] = this.enter();
    return (await exec(nsenter as string, [...prefix, command, ...args])).stdout;
  }

  async startLocal(): Promise<void> {
    this.local = await DriverProcess.start({
      mode: 'local',
      nodeId: this.name,
      dir: await mkdir(this.dir, 'local-driver'),
      poolDir: this.opts.poolDir ?? path.join(this.dir, 'pool'),
      kubeletDir: this.kubelet.root,
      wrap: this.enter(),
    });
    await this.register(LOCAL_DRIVER);
  }

  /** The kubelet's part of registration: the handshake, then the CSINode entry. */
  async register(driver: string, after = 0): Promise<void> {
    const plugin = await this.kubelet.waitRegistered(driver, 10_000, after);
    this.api.setDriver(this.name, {
      name: driver,
      nodeID: plugin.nodeId,
      topologyKeys: Object.keys(plugin.topology),
      ...(plugin.maxVolumes ? { allocatable: { count: plugin.maxVolumes } } : {}),
    });
  }

  get topology(): Record<string, string> {
    return { [TOPOLOGY_KEY]: this.name };
  }

  /** What this node's provisioner (--enable-capacity) publishes as CSIStorageCapacity for a class. */
  async capacity(sc: StorageClass): Promise<number> {
    if (!this.local) return 0;
    const res = await rpc<{ available_capacity: string }>(this.local.clients.controller, 'GetCapacity', {
      parameters: sc.parameters,
      accessible_topology: { segments: this.topology },
    });
    return Number(res.available_capacity);
  }

  async stop(): Promise<void> {
    await this.kubelet.stop();
    await this.local?.stop('SIGKILL');
    await this.nfs?.stop('SIGKILL');
    if (this.holder.exitCode === null) {
      const exited = new Promise((resolve) => this.holder.once('exit', resolve));
      this.holder.kill('SIGKILL');
      await exited;
    }
    // The namespace is gone with its last process, and its mounts with it; loop devices are global.
    await this.local?.cleanup();
    await this.nfs?.cleanup();
  }
}

async function mkdir(dir: string, name: string): Promise<string> {
  const p = path.join(dir, name);
  await fs.mkdir(p, { recursive: true });
  return p;
}

/**
 * The scheduler and the per-node provisioners for WaitForFirstConsumer
 * local claims: the scheduler filters nodes by their CSIStorageCapacity
 * objects (refreshed by the provisioners every --capacity-poll-interval, so
 * possibly stale) and selects one; that node's provisioner creates the
 * volume; RESOURCE_EXHAUSTED gives the claim back to the scheduler, which
 * then filters with fresh capacity.
 */
export class LocalScheduling {
  private published = new Map<string, number>();
  readonly decisions: string[] = [];

  constructor(
    private readonly nodes: SimulatedNode[],
    private readonly sc: StorageClass,
  ) {}

  /** The provisioners' capacity poll. */
  async pollCapacity(): Promise<void> {
    for (const n of this.nodes) this.published.set(n.name, await n.capacity(this.sc));
  }

  publishedCapacity(node: string): number {
    return this.published.get(node) ?? 0;
  }

  /** Binds a claim for a pod that may run on `candidates` (all nodes by default), in the scheduler's order. */
  async bind(pvc: Claim, candidates: SimulatedNode[] = this.nodes): Promise<{ node: SimulatedNode; pv: PersistentVolume }> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const node = candidates.find((n) => n.local && this.publishedCapacity(n.name) >= pvc.storage);
      if (!node) throw new Error(`no node has ${pvc.storage} bytes for ${pvc.name}: ${JSON.stringify([...this.published])}`);
      this.decisions.push(`${pvc.name} -> ${node.name}`);
      try {
        const pv = await (node.provisioner as ExternalProvisioner).provision(this.sc, pvc, node.topology);
        return { node, pv };
      } catch (err) {
        if ((err as { code?: number }).code !== 8 /* RESOURCE_EXHAUSTED */) throw err;
        this.decisions.push(`${pvc.name} exhausted on ${node.name}: rescheduled`);
        await this.pollCapacity(); // the scheduler filters again; the provisioner's refresh has run meanwhile
      }
    }
    throw new Error(`${pvc.name} could not be placed`);
  }
}
