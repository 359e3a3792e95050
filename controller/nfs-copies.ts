// Copies an NFS pool runs in the background (snapshots, restores, clones),
// at most one per job, and how long a call waits for one. Knows nothing of
// NFS: what a copy does is the caller's function.
import { aborted } from '../volume/errors.js';

export class CopyJobs {
  private readonly running = new Map<string, { done: Promise<void>; abort: AbortController }>();

  /** @param waitMs how long a call waits for a copy before it goes on in the background */
  constructor(private readonly waitMs: number) {}

  has(job: string): boolean {
    return this.running.has(job);
  }

  /** Runs a copy in the background, unless this job runs already. */
  start(job: string, copy: (signal: AbortSignal) => Promise<void>): void {
    if (this.running.has(job)) return;
    const abort = new AbortController();
    const done = copy(abort.signal).finally(() => this.running.delete(job));
    done.catch(() => undefined); // awaited by the callers; a failure is seen by the next one
    this.running.set(job, { done, abort });
  }

  /** Waits up to waitMs for a job; ABORTED with `stillRunning` when it runs on. A failed copy throws its error. */
  async wait(job: string, stillRunning: string): Promise<void> {
    const running = this.running.get(job);
    if (!running) return;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), this.waitMs);
    });
    try {
      if ((await Promise.race([running.done, late])) === 'late') throw aborted(stillRunning);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops a job and waits until it has stopped. */
  async stop(job: string): Promise<void> {
    const running = this.running.get(job);
    if (!running) return;
    running.abort.abort();
    await running.done.catch(() => undefined);
  }
}
