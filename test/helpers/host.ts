// Host state checks for node tests: the loop and mount tables must be back
// where they started; checksums prove bytes were not touched. Loop devices
// are host-wide and other processes may attach their own: only entries on
// berth's test paths (temporary directories named berth-*) are counted.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

export const exec = promisify(execFile);

/** Where every berth test keeps its files (fs.mkdtemp(<tmp>/berth-...)). */
const OURS = path.join(os.tmpdir(), 'berth-');
const ours = (p: string) => p.startsWith(OURS);

/** Loop devices attached to files of berth's tests, as "device backing-file". */
export async function loopTable(): Promise<string[]> {
  const { stdout } = await exec('losetup', ['-J', '-l']);
  const parsed = JSON.parse(stdout || '{}') as { loopdevices?: Array<{ name: string; 'back-file': string | null }> };
  return (parsed.loopdevices ?? [])
    .filter((l) => ours(l['back-file'] ?? ''))
    .map((l) => `${l.name} ${l['back-file']}`)
    .sort();
}

/** Every mount target of this mount namespace (findmnt: a reader independent of the driver's). */
export async function mountTargets(): Promise<string[]> {
  const { stdout } = await exec('findmnt', ['-J', '-l', '-o', 'TARGET']);
  return ((JSON.parse(stdout) as { filesystems: Array<{ target: string }> }).filesystems ?? []).map((f) => f.target).sort();
}

export interface MountRow {
  target: string;
  source: string;
  fstype: string;
  options: string;
}

/** The mount table with sources, types and options (findmnt reads mountinfo and stats no mount point, so a dead NFS server cannot stall it). */
export async function mountRows(): Promise<MountRow[]> {
  const { stdout } = await exec('findmnt', ['-J', '-l', '-o', 'TARGET,SOURCE,FSTYPE,OPTIONS']);
  return (JSON.parse(stdout) as { filesystems: MountRow[] }).filesystems;
}

/** The topmost mount at `target`, if any. */
export async function mountRowAt(target: string): Promise<MountRow | undefined> {
  return (await mountRows()).filter((m) => m.target === target).at(-1);
}

/** Mount targets on berth's test paths. */
export async function ourMountTargets(): Promise<string[]> {
  return (await mountTargets()).filter(ours);
}

export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** What differs between two sorted tables: "+entry" added, "-entry" gone. */
function difference(before: string[], now: string[]): string[] {
  const was = new Set(before);
  const is = new Set(now);
  return [...now.filter((e) => !was.has(e)).map((e) => `+${e}`), ...before.filter((e) => !is.has(e)).map((e) => `-${e}`)];
}

/**
 * The host's loop and mount tables at the start of a suite, to prove the
 * suite leaves them as it found them (loop devices are not namespaced).
 */
export class HostState {
  private constructor(
    private readonly loops: string[],
    private readonly mounts: string[],
  ) {}

  static async capture(): Promise<HostState> {
    return new HostState(await loopTable(), await ourMountTargets());
  }

  async loopsLeft(): Promise<string[]> {
    return difference(this.loops, await loopTable());
  }

  async leaks(): Promise<{ loops: string[]; mounts: string[] }> {
    return { loops: await this.loopsLeft(), mounts: difference(this.mounts, await ourMountTargets()) };
  }
}
