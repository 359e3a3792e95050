// The mount table, read from /proc/self/mountinfo (proc(5)): one read, no
// `findmnt` process per call. Node operations take their truth from here,
// never from memory, so they converge after a restart.
import fs from 'node:fs/promises';
import path from 'node:path';

export interface MountEntry {
  target: string;
  /** What was mounted: a device, `server:/export`, or the filesystem's name. */
  source: string;
  fstype: string;
  /** Per-mount options (ro/rw, nosuid...): a read-only bind shows `ro` here. */
  options: string[];
  /** Root of the mount inside its filesystem ("/" unless a bind of a subtree). */
  fsroot: string;
  /** The filesystem's device number, `major:minor` (every mount of one filesystem shows the same). */
  device?: string;
}

/** mountinfo escapes space, tab, newline and backslash as \ooo. */
const unescapeOctal = (s: string) => s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));

/**
 * Parses mountinfo: `id parent major:minor root target options [optional...] - fstype source superoptions`.
 * Lines that do not have that shape are skipped.
 */
export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-', 6);
    if (dash < 0 || fields.length < dash + 3) continue;
    entries.push({
      device: fields[2] as string,
      fsroot: unescapeOctal(fields[3] as string),
      target: unescapeOctal(fields[4] as string),
      options: (fields[5] as string).split(','),
      fstype: unescapeOctal(fields[dash + 1] as string),
      source: unescapeOctal(fields[dash + 2] as string),
    });
  }
  return entries;
}

export async function readMountTable(file = '/proc/self/mountinfo'): Promise<MountEntry[]> {
  return parseMountInfo(await fs.readFile(file, 'utf8'));
}

/** The topmost mount at exactly `target` (mounts can stack), if any. */
export function topMount(mounts: readonly MountEntry[], target: string): MountEntry | undefined {
  const want = path.resolve(target);
  for (let i = mounts.length - 1; i >= 0; i--) if ((mounts[i] as MountEntry).target === want) return mounts[i];
  return undefined;
}

/** Mounts of a block device, including bind mounts of its device node (a devtmpfs subtree). */
export function mountsOfDevice(mounts: readonly MountEntry[], device: string): MountEntry[] {
  const node = `/${path.basename(device)}`;
  return mounts.filter((m) => m.source === device || (m.fstype === 'devtmpfs' && m.fsroot === node));
}

/** The device node a raw-block bind mount shows (a bind of /dev/loopN is devtmpfs at /loopN). */
export function boundDevice(entry: MountEntry): string | undefined {
  if (entry.fstype === 'devtmpfs' && entry.fsroot !== '/') return `/dev${entry.fsroot}`;
  return undefined;
}

/** The loop device a mount shows: mounted as a filesystem, or its node bound (raw block). */
export function loopBehind(entry: MountEntry): string | undefined {
  const device = entry.source.startsWith('/dev/loop') ? entry.source : boundDevice(entry);
  return device?.startsWith('/dev/loop') ? device : undefined;
}

/** Two mounts show the same thing when source and root inside it agree. */
export const sameThing = (a: MountEntry, b: MountEntry) => a.source === b.source && a.fsroot === b.fsroot && a.fstype === b.fstype;

/** The mount a path lies in: the one whose target is the longest prefix of it (topmost when stacked). */
export function mountHolding(mounts: readonly MountEntry[], p: string): MountEntry | undefined {
  const want = path.resolve(p);
  let best: MountEntry | undefined;
  for (const m of mounts) {
    const under = m.target === '/' || want === m.target || want.startsWith(`${m.target}/`);
    if (under && (!best || m.target.length >= best.target.length)) best = m;
  }
  return best;
}

/**
 * The other mounts that show the directory `dir` (given without symbolic
 * links), or something inside it: bind mounts of it, wherever they are.
 * Found by the filesystem's device number and the root inside it, so no
 * mount is stat()ed (a hung NFS mount cannot block the answer).
 */
export function mountsShowing(mounts: readonly MountEntry[], dir: string): MountEntry[] {
  const holder = mountHolding(mounts, dir);
  if (!holder?.device) return [];
  const inside = path.posix.join(holder.fsroot, path.relative(holder.target, path.resolve(dir)));
  return mounts.filter((m) => m !== holder && m.device === holder.device && (m.fsroot === inside || m.fsroot.startsWith(`${inside}/`)));
}
