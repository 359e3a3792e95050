// Runs bench/noop-csi.ts in its own process for the length of one round.
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Starts noop-csi with `args`, hands its socket path to `use`, and stops it (by PID) afterwards. */
export async function withNoopCsi<T>(args: string[], use: (socket: string) => Promise<T>): Promise<T> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-noop-'));
  const socket = path.join(dir, 'csi.sock');
  const child = spawn(process.execPath, [fileURLToPath(new URL('./noop-csi.js', import.meta.url)), socket, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout?.on('data', (b: Buffer) => b.toString().includes('listening') && resolve());
      child.once('exit', (code) => reject(new Error(`noop-csi exited (${code})`)));
    });
    return await use(socket);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode === null && child.signalCode === null ? child.once('exit', r) : r(undefined)));
    await fs.rm(dir, { recursive: true, force: true });
  }
}
