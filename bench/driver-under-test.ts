// Starts the real driver for a benchmark and stops it by PID.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { csiClients, rpc, type CsiClients } from '../driver/client.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../driver/main.js');

export interface Driver {
  pid: number;
  dir: string;
  poolDir: string;
  kubeletDir: string;
  clients: CsiClients;
  stop(): Promise<void>;
}

export async function startDriver(extraArgs: string[] = []): Promise<Driver> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-bench-'));
  const socket = path.join(dir, 'csi.sock');
  const poolDir = path.join(dir, 'pool');
  const kubeletDir = path.join(dir, 'kubelet');
  await fs.mkdir(kubeletDir);
  const args = [MAIN, '--endpoint', `unix://${socket}`, '--nodeid', 'bench-node', '--pool-dir', poolDir, '--kubelet-dir', kubeletDir, '--log-level', 'warn', ...extraArgs];
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  for (let i = 0; !out.includes('listening on'); i++) {
    if (i > 500 || child.exitCode !== null) throw new Error('driver did not start');
    await new Promise((r) => setTimeout(r, 20));
  }
  const clients = csiClients(socket);
  await rpc(clients.identity, 'Probe');
  return {
    pid: child.pid!,
    dir,
    poolDir,
    kubeletDir,
    clients,
    async stop() {
      clients.close();
      child.kill('SIGTERM');
      await exited;
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
