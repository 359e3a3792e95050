// Durable small-file writes and directory syncs for pool metadata.
//
// A record replaced in place goes temp file → fsync → rename → fsync of the
// directory: a reader sees the old record or the new one, never a torn one,
// and an acknowledged write survives power loss. A directory shared by many
// concurrent operations (the pool's volumes/) is synced by group commit: one
// fsync covers every change made before it started.
//
// Metadata calls here (open, write, rename, mkdir) are synchronous on
// purpose: on a local disk they take microseconds, while each hand-off to
// libuv's thread pool costs more than the call itself (measured: ~46 futex
// calls per CreateVolume when every step was async). Only fsync, the step
// that waits for the disk, goes to the thread pool.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, type SystemCalls } from './native.js';
import { CommandError, run } from './run.js';
import { SharedRead } from './shared-read.js';

const fsyncFd = promisify(fs.fsync);

/** fsync of an open descriptor, off the event loop. */
async function syncAndClose(fd: number): Promise<void> {
  try {
    await fsyncFd(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  await syncAndClose(fs.openSync(dir, 'r'));
}

/**
 * Creates `file` (which must not exist) and fills it, without syncing:
 * returns the open descriptor, to hand to makeThenSync's keep. Lets a caller make several
 * files and directories first and then wait for all their fsyncs at once.
 */
export function createUnsynced(file: string, fill: (fd: number) => void, mode = 0o600): number {
  const fd = fs.openSync(file, 'wx', mode);
  try {
    fill(fd);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  return fd;
}

export const writeContent = (data: string) => (fd: number) => fs.writeFileSync(fd, data);
/** Makes a file sparse of `bytes` (no blocks written). */
export const sparseOf = (bytes: number) => (fd: number) => fs.ftruncateSync(fd, bytes);

/** fsyncs and closes every descriptor, in parallel; all are closed even when one fails. */
async function syncAll(fds: number[]): Promise<void> {
  const results = await Promise.allSettled(fds.map(syncAndClose));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/**
 * Runs `make`, which creates entries and hands the descriptors to fsync to
 * `keep`; then fsyncs them all side by side: one wait instead of several in
 * a row. When `make` throws, what it opened is closed unsynced.
 */
export async function makeThenSync(make: (keep: (fd: number) => void) => void, beforeSync?: () => Promise<void>): Promise<void> {
  const fds: number[] = [];
  try {
    make((fd) => fds.push(fd));
    // Work the same fsyncs then cover (a thick image's reservation): one wait, not two in a row.
    await beforeSync?.();
  } catch (err) {
    for (const fd of fds) fs.closeSync(fd);
    throw err;
  }
  await syncAll(fds);
}

/**
 * The commit point of a new file written and fsynced under a temporary
 * name: link(2) to its own name, which never replaces, then the temporary
 * name removed (it is removed also when the link fails). False, changing
 * nothing, when the name exists. Syncing the directory is the caller's (it
 * is often shared: DirectorySync).
 */
export function linkIntoPlace(tmp: string, file: string): boolean {
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

/** A new file holding `data`, durably: written and fsynced under `tmp`, then linked into place (linkIntoPlace). */
export async function createFileDurable(tmp: string, file: string, data: string): Promise<boolean> {
  try {
    await makeThenSync((keep) => keep(createUnsynced(tmp, writeContent(data))));
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  return linkIntoPlace(tmp, file);
}

/**
 * Atomically replaces `file` with `data`, durably: temp file, fsync, rename,
 * directory sync. `tmp` (default: beside the file) must be on the same
 * filesystem; `syncDir` (default: an fsync of the file's directory) may be a
 * DirectorySync shared by concurrent writers.
 */
export async function writeFileDurable(
  file: string,
  data: string,
  opts: { tmp?: string; syncDir?: () => Promise<void> } = {},
): Promise<void> {
  const tmp = opts.tmp ?? `${file}.tmp-${randomBytes(4).toString('hex')}`;
  await syncAll([createUnsynced(tmp, writeContent(data))]);
  try {
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  await (opts.syncDir ?? (() => fsyncDir(path.dirname(file))))();
}

/**
 * Group commit for one directory: sync() resolves once an fsync that
 * started after the call has completed, so it covers the caller's changes;
 * callers arriving while an fsync runs share the next one (SharedRead).
 */
export class DirectorySync {
  private readonly shared: SharedRead<void>;

  constructor(
    readonly dir: string,
    fsync: (dir: string) => Promise<void> = fsyncDir,
  ) {
    this.shared = new SharedRead(() => fsync(dir));
  }

  sync(): Promise<void> {
    return this.shared.get();
  }
}

/**
 * Reserves `bytes` for `file` on its filesystem (fallocate: unwritten
 * extents, no data written), durably. Throws ENOSPC-coded errors when the
 * space is not there, so a thick volume never promises what the disk lacks.
 */
export async function reserveSpace(file: string, bytes: number, sys?: SystemCalls): Promise<void> {
  const fd = fs.openSync(file, 'r+');
  try {
    await reserveUnsynced(fd, file, bytes, sys);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  await syncAndClose(fd);
}

/** reserveSpace on `file`, open as `fd`, without the fsync (for makeThenSync's beforeSync). */
export async function reserveUnsynced(fd: number, file: string, bytes: number, sys?: SystemCalls): Promise<void> {
  const noRoom = () => Object.assign(new Error(`no room to reserve ${bytes} bytes for ${path.basename(file)}`), { code: 'ENOSPC' });
  const before = fs.fstatSync(fd);
  // Refused up front when it cannot fit: a failing fallocate first takes all the free space it can
  // (other volumes' writes would fail meanwhile), and keeps it.
  const free = fs.statfsSync(path.dirname(file));
  if (bytes - before.blocks * 512 > free.bavail * free.bsize) throw noRoom();
  try {
    if (sys) await sys.fallocate(fd, 0, 0, bytes);
    else await run('fallocate', ['-l', String(bytes), '--', file], { timeoutMs: 120_000 });
  } catch (err) {
    // A failed fallocate leaves the file extended over what it did allocate: give it all back.
    fs.ftruncateSync(fd, before.size);
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') throw noRoom();
    if (err instanceof CommandError && /No space left|ENOSPC|Disk quota/i.test(err.stderr)) throw noRoom();
    throw err;
  }
}

/** Gives back a range of a file's blocks (a hole that reads as zeros); its size stays. */
export async function punchHole(file: string, offset: number, length: number, sys?: SystemCalls): Promise<void> {
  if (!sys) {
    await run('fallocate', ['--punch-hole', '--offset', String(offset), '--length', String(length), '--', file]);
    return;
  }
  const fd = fs.openSync(file, 'r+');
  try {
    await sys.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
  } finally {
    fs.closeSync(fd);
  }
}
