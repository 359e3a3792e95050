// Path checks shared by the node service, the local pool and the flex shim.
import fs from 'node:fs/promises';
import { constants } from 'node:os';

/** Whether something exists at `p` (following symlinks); never throws. */
export async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}

/**
 * ESTALE: a network mount whose export went away under it (recreated on the
 * server). libuv has no name for this errno (Node reports "Unknown system
 * error -116"), so its number is compared.
 */
export function isStaleError(err: unknown): boolean {
  const e = err as NodeJS.ErrnoException;
  return e.code === 'ESTALE' || e.errno === -constants.errno.ESTALE;
}

/** True when stat of `target` fails with ESTALE. */
export async function isStale(target: string): Promise<boolean> {
  return fs.stat(target).then(
    () => false,
    (err: unknown) => isStaleError(err),
  );
}
