// Starts the real driver (bin/berth.cjs, which runs dist/driver/main.js) as a child process on a
// temporary socket, pool and kubelet directory, and stops it by PID. Used by
// the tests and the benchmarks.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type CsiClients, csiClients, rpc } from '../../cli/client.js';
import type { Mode } from '../../driver/flags.js';
import { SLOWDOWN } from './kernel-vm.js';

const exec = promisify(execFile);

/** Unmounts every mount below `dir` (deepest first) and detaches loop devices of images below it. */
export async function undoUnder(dir: string): Promise<void> {
  const { stdout } = await exec('findmnt', ['-J', '-l', '-o', 'TARGET']);
  const targets = ((JSON.parse(stdout) as { filesystems: Array<{ target: string }> }).filesystems ?? [])
    .map((f) => f.target)
    .filter((t) => t.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const t of targets) await exec('umount', [t]).catch(() => undefined);
  const loops = JSON.parse((await exec('losetup', ['-J', '-l'])).stdout || '{}') as {
    loopdevices?: Array<{ name: string; 'back-file': string }>;
  };
  for (const l of loops.loopdevices ?? []) {
    if (l['back-file'].startsWith(`${dir}/`)) await exec('losetup', ['-d', l.name]).catch(() => undefined);
  }
}

/** The driver's entry point (it sizes the thread pool, then runs dist/driver/main.js). */
export const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/berth.cjs');

export interface DriverOptions {
  mode?: Mode;
  nodeId?: string;
  dir?: string;
  poolDir?: string;
  kubeletDir?: string;
  extraArgs?: string[];
  logLevel?: string;
  /** Added to the driver's environment (e.g. a PATH with a MountRecorder first). */
  env?: NodeJS.ProcessEnv;
  /** A command the driver runs under, e.g. nsenter into a simulated node's mount namespace (it must exec, not fork). */
  wrap?: string[];
  /** Options for node itself before the driver's script, e.g. --cpu-prof (written when the driver exits cleanly). */
  nodeOptions?: string[];
}

export class DriverProcess {
  child!: ChildProcess;
  clients!: CsiClients;
  stdout = '';
  stderr = '';
  private exited!: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  get pid(): number {
    return this.child.pid as number;
  }

  constructor(
    readonly dir: string,
    readonly socket: string,
    readonly poolDir: string,
    readonly kubeletDir: string,
    readonly opts: DriverOptions,
  ) {}

  static async start(opts: DriverOptions = {}): Promise<DriverProcess> {
    const dir = opts.dir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'berth-test-')));
    const d = new DriverProcess(
      dir,
      path.join(dir, 'csi.sock'),
      opts.poolDir ?? path.join(dir, 'pool'),
      opts.kubeletDir ?? path.join(dir, 'kubelet'),
      opts,
    );
    await fs.mkdir(d.kubeletDir, { recursive: true });
    try {
      await d.launch();
    } catch (err) {
      if (!opts.dir) await fs.rm(dir, { recursive: true, force: true }); // ours to remove
      throw err;
    }
    return d;
  }

  args(): string[] {
    return [
      '--endpoint',
      `unix://${this.socket}`,
      '--nodeid',
      this.opts.nodeId ?? 'node-a',
      '--mode',
      this.opts.mode ?? 'all',
      '--pool-dir',
      this.poolDir,
      '--kubelet-dir',
      this.kubeletDir,
      '--nfs-mount-dir',
      path.join(this.dir, 'nfs'),
      '--log-level',
      this.opts.logLevel ?? 'warn',
      ...(this.opts.extraArgs ?? []),
    ];
  }

  /** Spawns the driver and waits until Probe answers. */
  async launch(): Promise<void> {
    this.stdout = '';
    this.stderr = '';
    const [command, ...prefix] = [...(this.opts.wrap ?? []), process.execPath];
    this.child = spawn(command as string, [...prefix, ...(this.opts.nodeOptions ?? []), MAIN, ...this.args()], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...this.opts.env },
    });
    this.child.stdout!.on('data', (b: Buffer) => (this.stdout += b.toString()));
    this.child.stderr!.on('data', (b: Buffer) => (this.stderr += b.toString()));
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    const deadline = Date.now() + 15_000 * SLOWDOWN;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`driver exited early (${this.child.exitCode}): ${this.stderr}`);
      if (this.stdout.includes('listening on')) break;
      if (Date.now() > deadline) throw new Error(`driver did not start: ${this.stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    this.clients = csiClients(this.socket);
    await rpc(this.clients.identity, 'Probe', {});
  }

  /** Sends a signal and waits for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.clients?.close();
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }

  waitExit() {
    return this.exited;
  }

  async restart(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.stop(signal);
    await this.launch();
  }

  /**
   * Stops the driver and removes its directory, first undoing any mount or
   * loop device a failed test left under it (rm -rf must never descend
   * into a mounted volume).
   */
  async cleanup(): Promise<void> {
    await this.stop('SIGKILL');
    await undoUnder(this.dir);
    await fs.rm(this.dir, { recursive: true, force: true });
  }
}
