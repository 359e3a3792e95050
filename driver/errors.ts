// The one place where failures become gRPC status codes.
//
// Handlers throw CsiError with the code the CSI spec names. Anything else
// that escapes a handler is mapped here: a failed command keeps its readable
// message (command, arguments, output) but never a stack trace; errno errors
// map to the nearest code; the rest become INTERNAL.
import { status as Status } from '@grpc/grpc-js';
import { CommandError } from './toolkit/run.js';

export { Status };

export class CsiError extends Error {
  constructor(
    readonly code: Status,
    message: string,
  ) {
    super(message);
    this.name = 'CsiError';
  }
}

export const invalid = (msg: string) => new CsiError(Status.INVALID_ARGUMENT, msg);
export const notFound = (msg: string) => new CsiError(Status.NOT_FOUND, msg);
export const alreadyExists = (msg: string) => new CsiError(Status.ALREADY_EXISTS, msg);
export const failedPrecondition = (msg: string) => new CsiError(Status.FAILED_PRECONDITION, msg);
export const outOfRange = (msg: string) => new CsiError(Status.OUT_OF_RANGE, msg);
export const exhausted = (msg: string) => new CsiError(Status.RESOURCE_EXHAUSTED, msg);
export const aborted = (msg: string) => new CsiError(Status.ABORTED, msg);
export const unavailable = (msg: string) => new CsiError(Status.UNAVAILABLE, msg);
export const internal = (msg: string) => new CsiError(Status.INTERNAL, msg);

const errnoCodes: Record<string, Status> = {
  ENOSPC: Status.RESOURCE_EXHAUSTED,
  EDQUOT: Status.RESOURCE_EXHAUSTED,
  EROFS: Status.FAILED_PRECONDITION,
  EBUSY: Status.FAILED_PRECONDITION,
  EACCES: Status.PERMISSION_DENIED,
  EPERM: Status.PERMISSION_DENIED,
  ETIMEDOUT: Status.DEADLINE_EXCEEDED,
  ECONNREFUSED: Status.UNAVAILABLE,
  EHOSTUNREACH: Status.UNAVAILABLE,
};

export interface MappedError {
  code: Status;
  message: string;
}

/** Maps any thrown value to the status the caller sees. */
export function toStatus(err: unknown): MappedError {
  if (err instanceof CsiError) return { code: err.code, message: err.message };
  if (err instanceof CommandError) {
    return { code: err.timedOut ? Status.DEADLINE_EXCEEDED : Status.INTERNAL, message: err.message };
  }
  if (err instanceof Error) {
    const errno = (err as NodeJS.ErrnoException).code;
    const code = (errno ? errnoCodes[errno] : undefined) ?? Status.INTERNAL;
    return { code, message: err.message };
  }
  return { code: Status.INTERNAL, message: String(err) };
}
