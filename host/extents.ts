// Where a file's bytes are, from the filesystem's extent map (FIEMAP, read
// with filefrag(8) in byte units), for changed-block tracking:
//
// - allocated ranges: extents holding data (unwritten extents, which read
//   as zeros, are not data), as SEEK_DATA/SEEK_HOLE would find them;
// - changed ranges between two snapshots of one volume on a reflink pool:
//   the second was cloned from the same source as the first, so a range
//   whose extent sits at the same physical place in both is the same
//   bytes. Only the extent lists are compared: the cost grows with the
//   number of extents, not with the volume's size.
import { run } from './run.js';

export interface Extent {
  /** Byte offset in the file. */
  logical: number;
  /** Byte address on the filesystem's device. */
  physical: number;
  length: number;
  /** Allocated but never written: reads as zeros. */
  unwritten: boolean;
}

export interface Range {
  offset: number;
  length: number;
}

/** The file's extents, sorted by logical offset (filefrag syncs the file first). */
export async function fileExtents(file: string): Promise<Extent[]> {
  const { stdout } = await run('filefrag', ['-s', '-v', '-b1', '--', file], { timeoutMs: 600_000 });
  return parseFilefrag(stdout);
}

/**
 * Parses `filefrag -v -b1` lines such as
 * `   3: 52428800..54525951:    4292608..   6389759: 2097152:   35749888: last,shared`
 * (the expected column may be empty).
 */
export function parseFilefrag(text: string): Extent[] {
  const out: Extent[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*\d+:\s*(\d+)\.\.\s*(\d+):\s*(\d+)\.\.\s*(\d+):\s*(\d+):(.*)$/.exec(line);
    if (!m) continue;
    const flags = (m[6] as string).split(':').at(-1)?.trim().split(',') ?? [];
    out.push({
      logical: Number(m[1]),
      physical: Number(m[3]),
      length: Number(m[5]),
      unwritten: flags.includes('unwritten'),
    });
  }
  return out.sort((a, b) => a.logical - b.logical);
}

/** Data ranges (unwritten extents left out), adjacent ones merged. */
export function allocatedRanges(extents: readonly Extent[]): Range[] {
  return merge(extents.filter((e) => !e.unwritten).map((e) => ({ offset: e.logical, length: e.length })));
}

/**
 * Ranges whose bytes may differ between `base` and `target`: where either
 * holds data and the two do not map to the same physical bytes (a range
 * that became a hole in target changed too: it now reads as zeros).
 */
export function changedRanges(base: readonly Extent[], target: readonly Extent[]): Range[] {
  const data = (l: readonly Extent[]) => l.filter((e) => !e.unwritten);
  const b = data(base);
  const t = data(target);
  const cuts = new Set<number>();
  for (const e of [...b, ...t]) {
    cuts.add(e.logical);
    cuts.add(e.logical + e.length);
  }
  const points = [...cuts].sort((x, y) => x - y);
  const changed: Range[] = [];
  let bi = 0;
  let ti = 0;
  for (let i = 0; i + 1 < points.length; i++) {
    const start = points[i] as number;
    const end = points[i + 1] as number;
    while (bi < b.length && (b[bi] as Extent).logical + (b[bi] as Extent).length <= start) bi++;
    while (ti < t.length && (t[ti] as Extent).logical + (t[ti] as Extent).length <= start) ti++;
    const inB = bi < b.length && (b[bi] as Extent).logical <= start ? (b[bi] as Extent) : undefined;
    const inT = ti < t.length && (t[ti] as Extent).logical <= start ? (t[ti] as Extent) : undefined;
    if (!inB && !inT) continue;
    const same = inB && inT && inB.physical - inB.logical === inT.physical - inT.logical;
    if (!same) changed.push({ offset: start, length: end - start });
  }
  return merge(changed);
}

/** Sorted ranges with touching ones joined. */
export function merge(ranges: readonly Range[]): Range[] {
  const out: Range[] = [];
  for (const r of [...ranges].sort((a, b) => a.offset - b.offset)) {
    const last = out.at(-1);
    if (last && last.offset + last.length >= r.offset) last.length = Math.max(last.length, r.offset + r.length - last.offset);
    else out.push({ ...r });
  }
  return out;
}
