// One small mounter over the command runner: mount, bind, read-only bind,
// unmount. Options that may hold secrets travel apart and are never shown.
import { CommandError, run } from './run.js';
import { mountAt } from './mount-table.js';

/** How long a `mount -t nfs` may take before it is reported as a timeout. */
export const NFS_MOUNT_TIMEOUT_MS = 120_000;

const MOUNT_OPTION = /^[A-Za-z0-9_.=:/@+-]+$/;

/**
 * The first option (entries may hold several, comma-separated) that is not a
 * plain mount option, or undefined when all are. Options travel as one argv
 * element, never through a shell; this keeps them from smuggling anything.
 */
export function unsafeMountOption(options: readonly string[]): string | undefined {
  for (const entry of options) for (const o of entry.split(',')) if (!MOUNT_OPTION.test(o.trim())) return o;
  return undefined;
}

export interface MountOptions {
  fstype?: string;
  options?: string[];
  /** Options that may carry credentials: passed to mount, never logged. */
  sensitiveOptions?: string[];
  timeoutMs?: number;
}

/** The target is busy: something still uses it. Never lazily detached. */
export class BusyError extends Error {
  constructor(readonly target: string, detail: string) {
    super(`${target} is busy: ${detail}`);
    this.name = 'BusyError';
  }
}

export async function mount(source: string, target: string, opts: MountOptions = {}): Promise<void> {
  const args: string[] = [];
  if (opts.fstype) args.push('-t', opts.fstype);
  const plain = opts.options ?? [];
  const secret = opts.sensitiveOptions ?? [];
  const all = [...plain, ...secret];
  let sensitiveIndex: number[] = [];
  if (all.length > 0) {
    args.push('-o', all.join(','));
    if (secret.length > 0) sensitiveIndex = [args.length - 1];
  }
  args.push('--', source, target);
  await run('mount', args, { timeoutMs: opts.timeoutMs, sensitiveArgs: sensitiveIndex });
}

/** A bind mount; read-only is a bind followed by a read-only remount, verified. */
export async function bindMount(source: string, target: string, readonly: boolean): Promise<void> {
  await run('mount', ['--bind', '--', source, target]);
  if (!readonly) return;
  try {
    await run('mount', ['-o', 'remount,bind,ro', '--', target]);
    const entry = await mountAt(target);
    if (!entry?.options.includes('ro')) throw new Error(`${target} did not become read-only after remount`);
  } catch (err) {
    await run('umount', ['--', target]).catch(() => undefined);
    throw err;
  }
}

export async function unmount(target: string): Promise<void> {
  try {
    await run('umount', ['--', target], { timeoutMs: 60_000 });
  } catch (err) {
    if (err instanceof CommandError && /busy/i.test(err.stderr)) throw new BusyError(target, err.stderr.trim());
    throw err;
  }
}
