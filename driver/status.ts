// What the caller sees when a handler fails. Handlers throw CsiError with
// the spec's code; anything else that escapes is mapped here: a failed
// command keeps its readable message (command, arguments, output) but never
// a stack trace; errno errors map to the nearest code; the rest is INTERNAL.
import { CommandError } from '../host/run.js';
import { bounded, Code, CsiError } from '../volume/errors.js';

const errnoCodes: Record<string, Code> = {
  ENOSPC: Code.RESOURCE_EXHAUSTED,
  EDQUOT: Code.RESOURCE_EXHAUSTED,
  EROFS: Code.FAILED_PRECONDITION,
  EBUSY: Code.FAILED_PRECONDITION,
  EACCES: Code.PERMISSION_DENIED,
  EPERM: Code.PERMISSION_DENIED,
  ETIMEDOUT: Code.DEADLINE_EXCEEDED,
  ECONNREFUSED: Code.UNAVAILABLE,
  EHOSTUNREACH: Code.UNAVAILABLE,
};

export interface MappedError {
  code: Code;
  message: string;
}

/** Maps any thrown value to the status the caller sees. */
export function toStatus(err: unknown): MappedError {
  if (err instanceof CsiError) return { code: err.code, message: err.message };
  if (err instanceof CommandError) {
    // A command that ran out of room (cp of a snapshot, mkfs) is the pool's space, as ENOSPC is.
    const full = /No space left on device|Disk quota exceeded/.test(err.stderr);
    const code = err.timedOut ? Code.DEADLINE_EXCEEDED : full ? Code.RESOURCE_EXHAUSTED : Code.INTERNAL;
    return { code, message: bounded(err.message) };
  }
  if (err instanceof Error) {
    const errno = (err as NodeJS.ErrnoException).code;
    const code = (errno ? errnoCodes[errno] : undefined) ?? Code.INTERNAL;
    return { code, message: bounded(err.message) };
  }
  return { code: Code.INTERNAL, message: bounded(String(err)) };
}
