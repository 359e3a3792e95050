// Loop devices: attach an image (direct I/O), find what an image is attached
// to, refresh a device's size, detach. The kernel's loop table is the truth.
import path from 'node:path';
import { run } from './run.js';

interface LosetupJson {
  loopdevices?: Array<{ name: string; 'back-file': string | null }>;
}

export interface LoopDevice {
  device: string;
  backingFile: string;
  /** The backing file was deleted while attached. */
  backingDeleted: boolean;
}

function parse(stdout: string): LoopDevice[] {
  const parsed = JSON.parse(stdout || '{}') as LosetupJson;
  return (parsed.loopdevices ?? []).map((l) => {
    const back = (l['back-file'] ?? '').trim();
    const deleted = back.endsWith(' (deleted)');
    return { device: l.name, backingFile: deleted ? back.slice(0, -' (deleted)'.length) : back, backingDeleted: deleted };
  });
}

/** Devices attached to `image` (normally zero or one). */
export async function loopDevicesOf(image: string): Promise<LoopDevice[]> {
  const abs = path.resolve(image);
  const { stdout } = await run('losetup', ['-J', '-l', '-j', abs], { timeoutMs: 15_000 });
  return parse(stdout).filter((l) => l.backingFile === abs);
}

/** Every attached loop device. */
export async function listLoopDevices(): Promise<LoopDevice[]> {
  const { stdout } = await run('losetup', ['-J', '-l'], { timeoutMs: 15_000 });
  return parse(stdout);
}

/** What one loop device is attached to, or undefined when it is free. */
export async function loopDevice(device: string): Promise<LoopDevice | undefined> {
  try {
    const { stdout } = await run('losetup', ['-J', '-l', device], { timeoutMs: 15_000 });
    return parse(stdout)[0];
  } catch {
    return undefined;
  }
}

/** Attaches `image` with direct I/O, or returns the device it is already on. */
export async function attachImage(image: string): Promise<string> {
  const existing = await loopDevicesOf(image);
  if (existing[0]) return existing[0].device;
  const { stdout } = await run('losetup', ['-f', '--show', '--direct-io=on', path.resolve(image)], { timeoutMs: 30_000 });
  return stdout.trim();
}

export async function detachLoop(device: string): Promise<void> {
  await run('losetup', ['-d', device], { timeoutMs: 30_000 });
}

/** Makes the device see its image's current size (after the image grew). */
export async function refreshLoopSize(device: string): Promise<void> {
  await run('losetup', ['-c', device], { timeoutMs: 30_000 });
}

export async function deviceSize(device: string): Promise<number> {
  const { stdout } = await run('blockdev', ['--getsize64', device], { timeoutMs: 15_000 });
  return Number(stdout.trim());
}
