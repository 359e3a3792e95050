// A test harness that behaves like the kubelet toward a CSI driver
// (kubernetes pkg/volume/csi and pkg/kubelet/pluginmanager; registration API
// kubernetes/kubelet pkg/apis/pluginregistration/v1): plugin discovery through plugins_registry, the
// registration handshake with its validations, and pod volume lifecycles at
// the kubelet's exact paths, with its directories, vol_data.json files,
// access-mode mapping, pod-info volume_context, NodeGetCapabilities before
// operations, and retries on the "uncertain" codes. State lives on disk, as
// the kubelet's does, so a restarted harness picks up where one left off.

import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type CsiClients, csiClients, rpc } from '../../cli/client.js';
import { loadRegistration } from '../../proto/load.js';
import { KubeletPaths } from './kubelet.js';
import type { PersistentVolume } from './sidecars.js';

export interface RegisteredPlugin {
  name: string;
  endpoint: string;
  nodeId: string;
  topology: Record<string, string>;
  maxVolumes: number;
  socket: string;
  /** Identity of the socket file: inode and birth time (inode numbers are reused). */
  inode: string;
}

export interface Pod {
  uid: string;
  name: string;
  namespace: string;
  serviceAccount: string;
}

/** A new pod in the default namespace. */
export const newPod = (name: string): Pod => ({ uid: randomUUID(), name, namespace: 'default', serviceAccount: 'default' });

const UNCERTAIN = new Set([
  grpc.status.CANCELLED,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.UNAVAILABLE,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.ABORTED,
]);
const KUBELET_TIMEOUT_MS = 120_000;

export class KubeletHarness {
  readonly paths: KubeletPaths;
  readonly registered = new Map<string, RegisteredPlugin>();
  readonly events: string[] = [];
  private watcher: fs.FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private scanning = Promise.resolve();

  constructor(
    readonly root: string,
    readonly nodeName: string,
    /** Labels already on the Node object; topology keys may not collide with them. */
    readonly nodeLabels: Record<string, string> = { 'kubernetes.io/hostname': 'node-a' },
  ) {
    this.paths = new KubeletPaths(root);
  }

  get registryDir(): string {
    return path.join(this.root, 'plugins_registry');
  }

  async start(): Promise<void> {
    await fsp.mkdir(this.registryDir, { recursive: true });
    // The kubelet uses inotify; we do too, with a periodic rescan as a safety net.
    this.watcher = fs.watch(this.registryDir, { recursive: true }, (_event, name) => {
      // A create or delete event: whatever is there now must be (re)registered.
      if (name) this.touched.add(path.join(this.registryDir, name.toString()));
      this.rescan();
    });
    this.timer = setInterval(() => this.rescan(), 200);
    this.rescan();
    await this.scanning;
  }

  async stop(): Promise<void> {
    this.watcher?.close();
    clearInterval(this.timer);
    await this.scanning;
  }

  private rescan(): void {
    this.scanning = this.scanning.then(() => this.scan()).catch((err: Error) => void this.events.push(`scan failed: ${err.message}`));
  }

  private async scan(): Promise<void> {
    const found = new Map<string, string>();
    const walk = async (dir: string) => {
      for (const entry of await fsp.readdir(dir, { withFileTypes: true }).catch(() => [])) {
        if (entry.name.startsWith('.')) continue; // the kubelet ignores dot-names
        const p = path.join(dir, entry.name);
        if (entry.isDirectory()) await walk(p);
        else if (entry.isSocket()) {
          const st = await fsp.stat(p, { bigint: true }).catch(() => undefined);
          if (st) found.set(p, `${st.ino}:${st.birthtimeNs || st.ctimeNs}`);
        }
      }
    };
    await walk(this.registryDir);
    const touched = new Set(this.touched);
    this.touched.clear();
    for (const [name, plugin] of this.registered) {
      if (found.get(plugin.socket) !== plugin.inode || touched.has(plugin.socket)) {
        this.registered.delete(name);
        this.events.push(`deregistered ${name}`);
      }
    }
    const known = new Set([...this.registered.values()].map((p) => `${p.socket}:${p.inode}`));
    for (const [socket, inode] of found) {
      if (!known.has(`${socket}:${inode}`) && !this.failed.has(`${socket}:${inode}`)) await this.register(socket, inode);
    }
  }

  private readonly failed = new Set<string>();
  private readonly touched = new Set<string>();

  /** The registration handshake, with the kubelet's validations. */
  private async register(socket: string, inode: string): Promise<void> {
    const Registration = loadRegistration().pluginregistration.Registration;
    const client = new Registration(`unix://${socket}`, grpc.credentials.createInsecure());
    const notify = (ok: boolean, error = '') =>
      rpc(client, 'NotifyRegistrationStatus', { plugin_registered: ok, error }, 10_000).catch(() => undefined);
    try {
      await new Promise<void>((resolve, reject) => client.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())));
      const info = await rpc<{ type: string; name: string; endpoint: string; supported_versions: string[] }>(client, 'GetInfo', {}, 1_000);
      const reason = this.validate(info);
      if (reason) {
        await notify(false, reason);
        this.failed.add(`${socket}:${inode}`);
        this.events.push(`refused ${info.name}: ${reason}`);
        return;
      }
      const csi = csiClients(info.endpoint);
      try {
        const nodeInfo = await rpc<{
          node_id: string;
          max_volumes_per_node: string;
          accessible_topology: { segments: Record<string, string> } | null;
        }>(csi.node, 'NodeGetInfo', {}, 10_000);
        if (!nodeInfo.node_id) throw new Error('NodeGetInfo returned an empty node_id');
        const topology = nodeInfo.accessible_topology?.segments ?? {};
        for (const [key, value] of Object.entries(topology)) {
          if (key in this.nodeLabels && this.nodeLabels[key] !== value)
            throw new Error(`topology label ${key}=${value} collides with the node's ${key}=${this.nodeLabels[key]}`);
        }
        this.registered.set(info.name, {
          name: info.name,
          endpoint: info.endpoint,
          nodeId: nodeInfo.node_id,
          topology,
          maxVolumes: Number(nodeInfo.max_volumes_per_node),
          socket,
          inode,
        });
        this.events.push(`registered ${info.name}`);
        await notify(true);
      } catch (err) {
        this.failed.add(`${socket}:${inode}`);
        this.events.push(`refused ${info.name}: ${(err as Error).message}`);
        await notify(false, (err as Error).message);
      } finally {
        csi.close();
      }
    } catch (err) {
      this.events.push(`could not register ${socket}: ${(err as Error).message}`);
    } finally {
      client.close();
    }
  }

  private validate(info: { type: string; name: string; supported_versions: string[] }): string | undefined {
    if (info.type !== 'CSIPlugin') return `plugin type ${info.type} is not CSIPlugin`;
    if (!info.name) return 'empty plugin name';
    if (!info.supported_versions.some((v) => /^v?1(\.|$)/.test(v)))
      return `no supported version with major 1 in ${info.supported_versions.join(',')}`;
    return undefined;
  }

  async waitRegistered(name: string, timeoutMs = 10_000, after = 0): Promise<RegisteredPlugin> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const p = this.registered.get(name);
      if (p && this.events.filter((e) => e === `registered ${name}`).length > after) return p;
      if (Date.now() > deadline) throw new Error(`${name} did not register: ${this.events.join('; ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  // ------------------------------------------------------------ volumes

  private clients(driver: string): CsiClients {
    const p = this.registered.get(driver);
    if (!p) throw new Error(`driver ${driver} is not registered`);
    return csiClients(p.endpoint); // the kubelet opens a connection per operation
  }

  /** A CSI call with the kubelet's timeout and its retries on uncertain codes. */
  private async call<T>(driver: string, method: string, req: object, service: 'node' = 'node'): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      let c: CsiClients | undefined;
      try {
        c = this.clients(driver);
        if (method !== 'NodeGetCapabilities') await rpc(c[service], 'NodeGetCapabilities', {}, KUBELET_TIMEOUT_MS);
        return await rpc<T>(c[service], method, req, KUBELET_TIMEOUT_MS);
      } catch (err) {
        const code = (err as grpc.ServiceError).code;
        const retryable = UNCERTAIN.has(code) || (err as Error).message.includes('is not registered');
        if (!retryable || attempt >= 100) throw err;
        this.events.push(`retrying ${method}: ${(err as Error).message.split('\n')[0]}`);
        await new Promise((r) => setTimeout(r, 100));
      } finally {
        c?.close();
      }
    }
  }

  private async nodeCapabilities(driver: string): Promise<string[]> {
    const res = await this.call<{ capabilities: Array<{ rpc: { type: string } }> }>(driver, 'NodeGetCapabilities', {});
    return res.capabilities.map((c) => c.rpc.type);
  }

  /** The kubelet's mapping of the PV's first access mode. */
  private accessMode(pv: PersistentVolume, caps: string[]): string {
    switch (pv.accessModes[0]) {
      case 'ReadWriteOnce':
        return caps.includes('SINGLE_NODE_MULTI_WRITER') ? 'SINGLE_NODE_MULTI_WRITER' : 'SINGLE_NODE_WRITER';
      case 'ReadOnlyMany':
        return 'MULTI_NODE_READER_ONLY';
      case 'ReadWriteMany':
        return 'MULTI_NODE_MULTI_WRITER';
      case 'ReadWriteOncePod':
        return 'SINGLE_NODE_SINGLE_WRITER';
      default:
        throw new Error(`unknown access mode ${pv.accessModes[0]}`);
    }
  }

  private capability(pv: PersistentVolume, mode: string) {
    return pv.volumeMode === 'Block'
      ? { block: {}, access_mode: { mode } }
      : { mount: { fs_type: pv.fsType, mount_flags: pv.mountOptions }, access_mode: { mode } };
  }

  stagingPath(pv: PersistentVolume): string {
    return pv.volumeMode === 'Block' ? this.paths.blockStaging(pv.name) : this.paths.staging(pv.volumeHandle);
  }

  targetPath(pod: Pod, pv: PersistentVolume): string {
    return pv.volumeMode === 'Block' ? this.paths.blockTarget(pv.name, pod.uid) : this.paths.target(pod.uid, pv.name);
  }

  /** Pod start: stage once per volume, publish per pod. Returns the target path. */
  async mountPod(pod: Pod, pv: PersistentVolume, publishContext: Record<string, string>, readOnly = false): Promise<string> {
    const caps = await this.nodeCapabilities(pv.driver);
    const cap = this.capability(pv, this.accessMode(pv, caps));
    const staging = this.stagingPath(pv);
    if (caps.includes('STAGE_UNSTAGE_VOLUME')) {
      await fsp.mkdir(staging, { recursive: true, mode: 0o750 });
      if (pv.volumeMode !== 'Block') {
        await fsp.writeFile(
          path.join(path.dirname(staging), 'vol_data.json'),
          JSON.stringify({ volumeHandle: pv.volumeHandle, driverName: pv.driver }),
        );
      }
      await this.call(pv.driver, 'NodeStageVolume', {
        volume_id: pv.volumeHandle,
        publish_context: publishContext,
        staging_target_path: staging,
        volume_capability: cap,
        volume_context: pv.volumeAttributes,
      });
    }
    const target = this.targetPath(pod, pv);
    await fsp.mkdir(path.dirname(target), { recursive: true, mode: 0o750 });
    if (pv.volumeMode !== 'Block') {
      await fsp.writeFile(
        path.join(path.dirname(target), 'vol_data.json'),
        JSON.stringify({
          specVolID: pv.name,
          volumeHandle: pv.volumeHandle,
          driverName: pv.driver,
          nodeName: this.nodeName,
          attachmentID: `csi-${pv.name}`,
          volumeLifecycleMode: 'Persistent',
        }),
      );
    }
    await this.call(pv.driver, 'NodePublishVolume', {
      volume_id: pv.volumeHandle,
      publish_context: publishContext,
      staging_target_path: staging,
      target_path: target,
      volume_capability: cap,
      readonly: readOnly,
      volume_context: {
        ...pv.volumeAttributes,
        'csi.storage.k8s.io/pod.name': pod.name,
        'csi.storage.k8s.io/pod.namespace': pod.namespace,
        'csi.storage.k8s.io/pod.uid': pod.uid,
        'csi.storage.k8s.io/serviceAccount.name': pod.serviceAccount,
        'csi.storage.k8s.io/ephemeral': 'false',
      },
    });
    return target;
  }

  /** Pod deletion: unpublish; unstage when no pod of this node uses the volume any more. */
  async unmountPod(pod: Pod, pv: PersistentVolume): Promise<void> {
    const target = this.targetPath(pod, pv);
    await this.call(pv.driver, 'NodeUnpublishVolume', { volume_id: pv.volumeHandle, target_path: target });
    await fsp.rm(path.join(path.dirname(target), 'vol_data.json'), { force: true });
    await fsp.rmdir(path.dirname(target)).catch(() => undefined);
    if (await this.stillUsed(pv)) return;
    const staging = this.stagingPath(pv);
    await this.call(pv.driver, 'NodeUnstageVolume', { volume_id: pv.volumeHandle, staging_target_path: staging });
    // The kubelet removes its own directories (never recursively: a leftover mount must fail loudly).
    await fsp.rmdir(staging);
    if (pv.volumeMode !== 'Block') {
      await fsp.rm(path.join(path.dirname(staging), 'vol_data.json'), { force: true });
      await fsp.rmdir(path.dirname(staging));
    }
  }

  /** Whether any pod directory still holds this volume (read from disk, like the kubelet's reconstruction). */
  private async stillUsed(pv: PersistentVolume): Promise<boolean> {
    if (pv.volumeMode === 'Block') {
      const dir = path.join(this.root, 'plugins/kubernetes.io/csi/volumeDevices/publish', pv.name);
      return (await fsp.readdir(dir).catch(() => [])).length > 0;
    }
    const pods = await fsp.readdir(path.join(this.root, 'pods')).catch(() => []);
    for (const uid of pods) {
      const file = path.join(this.root, 'pods', uid, 'volumes/kubernetes.io~csi', pv.name, 'vol_data.json');
      if (fs.existsSync(file)) return true;
    }
    return false;
  }

  async volumeStats(pod: Pod, pv: PersistentVolume) {
    return this.call<{
      usage: Array<{ unit: string; total: string; used: string; available: string }>;
      volume_condition: { abnormal: boolean; message: string } | null;
    }>(pv.driver, 'NodeGetVolumeStats', {
      volume_id: pv.volumeHandle,
      volume_path: this.targetPath(pod, pv),
      staging_target_path: this.stagingPath(pv),
    });
  }

  /** NodeExpandVolume after publish, as the kubelet's resize does. */
  async expand(pod: Pod, pv: PersistentVolume, bytes: number) {
    return this.call<{ capacity_bytes: string }>(pv.driver, 'NodeExpandVolume', {
      volume_id: pv.volumeHandle,
      volume_path: this.targetPath(pod, pv),
      staging_target_path: this.stagingPath(pv),
      capacity_range: { required_bytes: bytes },
      volume_capability: this.capability(pv, this.accessMode(pv, [])),
    });
  }
}
