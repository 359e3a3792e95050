// mount(8) and umount(8) over the command runner: mount, bind, read-only
// bind, unmount. Mount options may carry credentials (CSI mount_flags, NFS
// mountOptions), so the `-o` argument is never shown in an error or a log.
// Callers validate options; they travel as one argv element, never through
// a shell.
import { readMountTable, topMount } from './mount-table.js';
import { CommandError, run } from './run.js';

/** How long a `mount -t nfs` may take before it is reported as a timeout. */
export const NFS_MOUNT_TIMEOUT_MS = 120_000;

export interface MountOptions {
  fstype?: string;
  /** Passed to mount as one `-o` element; never shown. */
  options?: readonly string[];
  timeoutMs?: number;
}

/** The target is busy: something still uses it. Never lazily detached. */
export class BusyError extends Error {
  constructor(
    readonly target: string,
    detail: string,
  ) {
    super(`${target} is busy: ${detail}`);
    this.name = 'BusyError';
  }
}

/** The argv of `mount`, and the index of the element never to show (the options). */
export function mountArgs(source: string, target: string, opts: MountOptions = {}): { args: string[]; sensitive: number[] } {
  const args: string[] = [];
  if (opts.fstype) args.push('-t', opts.fstype);
  const sensitive: number[] = [];
  if (opts.options && opts.options.length > 0) {
    args.push('-o', opts.options.join(','));
    sensitive.push(args.length - 1);
  }
  args.push('--', source, target);
  return { args, sensitive };
}

export async function mount(source: string, target: string, opts: MountOptions = {}): Promise<void> {
  const { args, sensitive } = mountArgs(source, target, opts);
  await run('mount', args, { timeoutMs: opts.timeoutMs, sensitiveArgs: sensitive });
}

/** A bind mount; read-only is a bind followed by a read-only remount, verified. */
export async function bindMount(source: string, target: string, readonly: boolean): Promise<void> {
  await run('mount', ['--bind', '--', source, target]);
  if (!readonly) return;
  try {
    await run('mount', ['-o', 'remount,bind,ro', '--', target]);
    if (!topMount(await readMountTable(), target)?.options.includes('ro'))
      throw new Error(`${target} did not become read-only after remount`);
  } catch (err) {
    await run('umount', ['--', target]).catch(() => undefined);
    throw err;
  }
}

/**
 * How long umount(8) may take. Past it the command is killed; on a network
 * filesystem whose server is gone, the kernel has by then detached the mount
 * and is waiting on the server to end the session (an NFSv4.1 unmount waits
 * there for minutes): the kill ends that wait, and the mount is gone.
 */
export const UNMOUNT_TIMEOUT_MS = 15_000;

export async function unmount(target: string): Promise<void> {
  // -c: no canonicalisation, which stats the target first, and a stat of a
  // hard NFS mount whose server is down never returns. -i: no umount.nfs
  // helper, which would first ask an NFSv3 server's mountd (down too) to
  // forget the mount; the kernel needs nothing from it.
  try {
    await run('umount', ['-i', '-c', '--', target], { timeoutMs: UNMOUNT_TIMEOUT_MS });
  } catch (err) {
    if (err instanceof CommandError && /busy/i.test(err.stderr)) throw new BusyError(target, err.stderr.trim());
    // Timed out: done if the kernel detached it (see UNMOUNT_TIMEOUT_MS); the caller's retry sees the table.
    if (err instanceof CommandError && err.timedOut && !(await readMountTable()).some((m) => m.target === target)) return;
    throw err;
  }
}
