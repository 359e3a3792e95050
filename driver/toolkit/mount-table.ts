// The one mount-table reader: the kernel's table through `findmnt -J`.
// Node operations take their truth from here, never from memory, so they
// converge after a restart.
import path from 'node:path';
import { run } from './run.js';

export interface MountEntry {
  target: string;
  source: string;
  fstype: string;
  options: string[];
  /** Root of the mount inside its filesystem ("/" unless a bind of a subtree). */
  fsroot: string;
}

interface FindmntJson {
  filesystems?: Array<{ target: string; source: string; fstype: string; options: string; fsroot: string }>;
}

const COLUMNS = 'TARGET,SOURCE,FSTYPE,OPTIONS,FSROOT';

export async function listMounts(): Promise<MountEntry[]> {
  const { stdout } = await run('findmnt', ['-J', '-l', '-o', COLUMNS], { timeoutMs: 15_000 });
  const parsed = JSON.parse(stdout || '{}') as FindmntJson;
  return (parsed.filesystems ?? []).map((f) => ({
    target: f.target,
    source: f.source,
    fstype: f.fstype,
    options: f.options.split(','),
    fsroot: f.fsroot,
  }));
}

/** The topmost mount at exactly `target`, if any. */
export async function mountAt(target: string): Promise<MountEntry | undefined> {
  const want = path.resolve(target);
  const hits = (await listMounts()).filter((m) => m.target === want);
  return hits[hits.length - 1];
}

export async function isMountPoint(target: string): Promise<boolean> {
  return (await mountAt(target)) !== undefined;
}

/** Mounts of a block device, including bind mounts of its device node. */
export function mountsOfDevice(mounts: MountEntry[], device: string): MountEntry[] {
  const node = `/${path.basename(device)}`;
  return mounts.filter((m) => m.source === device || (m.fstype === 'devtmpfs' && m.fsroot === node));
}
