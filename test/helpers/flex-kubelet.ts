// Plays the kubelet toward a FlexVolume driver (kubernetes
// pkg/volume/flexvolume: driver-call.go, mounter.go, attacher.go): argv
// forms, JSON options merged the kubelet's way (its keys, then the PV's
// options, which win), stdout and stderr combined and parsed as one JSON
// object, the directories it creates and removes, and its fallbacks when a
// call answers "Not supported".
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { exec } from './host.js';

export interface FlexReply {
  status: string;
  message?: string;
  device?: string;
  attached?: boolean;
  capabilities?: Record<string, boolean>;
}

export interface FlexPV {
  name: string;
  driver: 'berth/nfs' | 'berth/block';
  fsType: string;
  readOnly: boolean;
  options: Record<string, string>;
  secret?: Record<string, string>;
}

export class FlexKubelet {
  readonly calls: string[][] = [];

  constructor(
    readonly root: string,
    readonly pluginDir: string,
    readonly env: NodeJS.ProcessEnv,
  ) {}

  executable(driver: FlexPV['driver']): string {
    const [vendor, name] = driver.split('/') as [string, string];
    return path.join(this.pluginDir, `${vendor}~${name}`, name);
  }

  /** Runs one call; the reply is what the kubelet would parse from the combined output. */
  async call(driver: FlexPV['driver'], args: string[]): Promise<{ reply: FlexReply; code: number; stderr: string }> {
    this.calls.push(args);
    const child = spawn(this.executable(driver), args, { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let combined = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (combined += b.toString()));
    child.stderr.on('data', (b: Buffer) => {
      combined += b.toString();
      stderr += b.toString();
    });
    const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));
    let reply: FlexReply;
    try {
      reply = JSON.parse(combined) as FlexReply; // one JSON object, nothing else
    } catch {
      throw new Error(`the kubelet could not parse the driver output: ${JSON.stringify(combined)}`);
    }
    return { reply, code, stderr };
  }

  /** The options JSON: the kubelet's keys first, the PV's own options merged last. */
  options(pv: FlexPV, pod?: { uid: string; name: string; namespace: string; fsGroup?: number }): string {
    const o: Record<string, string> = {
      'kubernetes.io/fsType': pv.fsType,
      'kubernetes.io/readwrite': pv.readOnly ? 'ro' : 'rw',
      'kubernetes.io/pvOrVolumeName': pv.name,
    };
    if (pod) {
      o['kubernetes.io/pod.name'] = pod.name;
      o['kubernetes.io/pod.namespace'] = pod.namespace;
      o['kubernetes.io/pod.uid'] = pod.uid;
      o['kubernetes.io/serviceAccount.name'] = 'default';
      if (pod.fsGroup !== undefined) o['kubernetes.io/mounterArgs.FsGroup'] = String(pod.fsGroup);
    }
    for (const [k, v] of Object.entries(pv.secret ?? {})) o[`kubernetes.io/secret/${k}`] = Buffer.from(v).toString('base64');
    return JSON.stringify({ ...o, ...pv.options });
  }

  podDir(uid: string, pv: FlexPV): string {
    return path.join(this.root, 'pods', uid, 'volumes', pv.driver.replace('/', '~'), pv.name);
  }

  deviceMountPath(pv: FlexPV): string {
    return path.join(this.root, 'plugins/kubernetes.io/flexvolume', pv.driver, 'mounts', pv.name);
  }

  private async expectOk(driver: FlexPV['driver'], args: string[]): Promise<FlexReply> {
    const { reply, code } = await this.call(driver, args);
    if (reply.status !== 'Success' || code !== 0) throw new Error(`${args[0]} failed (${code}): ${reply.message}`);
    return reply;
  }

  /** An attachable volume for a pod: attach, waitforattach, mountdevice, mount (or the bind fallback). */
  async mountAttachable(pv: FlexPV, pod: { uid: string; name: string; namespace: string }, node: string): Promise<string> {
    const attach = await this.expectOk(pv.driver, ['attach', this.options(pv), node]);
    const wait = await this.expectOk(pv.driver, ['waitforattach', attach.device ?? '', this.options(pv)]);
    const dmp = this.deviceMountPath(pv);
    await fs.mkdir(dmp, { recursive: true, mode: 0o750 });
    await this.expectOk(pv.driver, ['mountdevice', dmp, wait.device!, this.options(pv)]);
    const dir = this.podDir(pod.uid, pv);
    await fs.mkdir(dir, { recursive: true, mode: 0o750 });
    const { reply } = await this.call(pv.driver, ['mount', dir, this.options(pv, pod)]);
    if (reply.status === 'Not supported') await exec('mount', ['--bind', dmp, dir]);
    else if (reply.status !== 'Success') throw new Error(`mount failed: ${reply.message}`);
    return dir;
  }

  async unmountAttachable(pv: FlexPV, pod: { uid: string }, node: string): Promise<void> {
    const dir = this.podDir(pod.uid, pv);
    const { reply } = await this.call(pv.driver, ['unmount', dir]);
    if (reply.status === 'Not supported') await exec('umount', [dir]);
    else if (reply.status !== 'Success') throw new Error(`unmount failed: ${reply.message}`);
    await fs.rmdir(dir);
    const dmp = this.deviceMountPath(pv);
    await this.expectOk(pv.driver, ['unmountdevice', dmp]);
    await fs.rmdir(dmp);
    await this.expectOk(pv.driver, ['detach', pv.name, node]);
  }
}
