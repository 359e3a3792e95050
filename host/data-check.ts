// Whether a device or image holds any data, for the one decision that can
// destroy it: formatting. A blank signature probe is not enough (a zeroed
// or overwritten superblock looks blank while the data further in is
// intact), so berth also looks for the data itself.
import fs from 'node:fs/promises';
import { CommandError, run } from './run.js';

/**
 * Whether an image file has any written extent (FIEMAP, through filefrag
 * from e2fsprogs). Holes and unwritten (preallocated) extents hold no data.
 * Undefined when the file's filesystem cannot say (no FIEMAP: NFS, say).
 */
export async function imageHasData(image: string): Promise<boolean | undefined> {
  let stdout: string;
  try {
    ({ stdout } = await run('filefrag', ['-v', '--', image], { timeoutMs: 60_000 }));
  } catch (err) {
    if (err instanceof CommandError) return undefined;
    throw err;
  }
  // Extent rows: "   0:   0..  255:   34816..  35071:   256:   34560: last,unwritten,eof"
  // (the column before the flags, "expected", is there only for some rows).
  // Anything not understood makes the answer "cannot say", never "no data".
  const rows = stdout.split('\n').map((line) => /^\s*\d+:\s+\d+\.\.\s*\d+:\s+\d+\.\.\s*\d+:\s+\d+:(?:\s+\d+:)?\s*(\S*)\s*$/.exec(line));
  const flags = rows.filter((m): m is RegExpExecArray => m !== null).map((m) => (m[1] ?? '').split(','));
  const count = /^\S.*: (\d+) extents? found$/m.exec(stdout)?.[1];
  if (count === undefined || Number(count) !== flags.length) return undefined;
  return flags.some((f) => !f.includes('unwritten'));
}

/** Whether any of the first `bytes` of a device is not zero: the bounded scan, where extents cannot be asked. */
export async function deviceHasData(device: string, bytes: number): Promise<boolean> {
  const handle = await fs.open(device, 'r');
  try {
    const chunk = Buffer.alloc(1 << 20);
    for (let offset = 0; offset < bytes; ) {
      const { bytesRead } = await handle.read(chunk, 0, Math.min(chunk.length, bytes - offset), offset);
      if (bytesRead === 0) return false;
      for (let i = 0; i < bytesRead; i++) if (chunk[i] !== 0) return true;
      offset += bytesRead;
    }
    return false;
  } finally {
    await handle.close();
  }
}
