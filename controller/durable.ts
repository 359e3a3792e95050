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

const fsyncFd = promisify(fs.fsync);

/** fsync of an open descriptor, off the event loop. */
export async function syncAndClose(fd: number): Promise<void> {
  try {
    await fsyncFd(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  await syncAndClose(fs.openSync(dir, 'r'));
}

/** Creates `file` (which must not exist), fills it, fsyncs it. */
async function createDurable(file: string, mode: number, fill: (fd: number) => void): Promise<void> {
  const fd = fs.openSync(file, 'wx', mode);
  try {
    fill(fd);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  await syncAndClose(fd);
}

/** Creates `file` (which must not exist) holding `data`, durably. */
export const createFileDurable = (file: string, data: string, mode = 0o600) => createDurable(file, mode, (fd) => fs.writeFileSync(fd, data));

/** Creates a sparse file of `bytes` (no blocks written), durably. */
export const createSparseFile = (file: string, bytes: number, mode = 0o600) => createDurable(file, mode, (fd) => fs.ftruncateSync(fd, bytes));

/** Atomically replaces `file` with `data`, durably. */
export async function writeFileDurable(file: string, data: string): Promise<void> {
  const tmp = `${file}.tmp-${randomBytes(4).toString('hex')}`;
  await createFileDurable(tmp, data);
  try {
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  await fsyncDir(path.dirname(file));
}

/**
 * Group commit for one directory: sync() resolves once an fsync that
 * started after the call has completed, so it covers the caller's changes;
 * callers arriving while an fsync runs share the next one.
 */
export class DirectorySync {
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;

  constructor(readonly dir: string) {}

  sync(): Promise<void> {
    if (!this.running) {
      this.running = fsyncDir(this.dir).finally(() => (this.running = undefined));
      return this.running;
    }
    // An fsync is already running and may have started before our change:
    // wait for the next one, shared by everyone who arrives meanwhile.
    this.queued ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        return this.sync();
      });
    return this.queued;
  }
}
