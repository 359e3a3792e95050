// The CSI error vocabulary: handlers throw CsiError with the code the CSI
// spec's Error Scheme names for the case. The codes are gRPC's, written out
// here so that the volume model (and the FlexVolume shim, which uses it)
// need not load a gRPC runtime. Where other failures become codes: see
// driver/status.ts (anything that escapes a handler) and the pools, which
// translate their own protocol's errors where the context is known.

/** gRPC status codes (grpc/doc/statuscodes.md); the values are the wire numbers. */
export enum Code {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

/** The longest message a caller or a log line gets: a request's values are echoed in messages, and may be huge. */
export const MAX_MESSAGE_BYTES = 1024;

/** A message cut to MAX_MESSAGE_BYTES, saying so. */
export function bounded(message: string): string {
  if (Buffer.byteLength(message) <= MAX_MESSAGE_BYTES) return message;
  const cut = Buffer.from(message)
    .subarray(0, MAX_MESSAGE_BYTES - 40)
    .toString('utf8')
    .replace(/\uFFFD$/, '');
  return `${cut}… (${Buffer.byteLength(message)} bytes, cut)`;
}

export class CsiError extends Error {
  constructor(
    readonly code: Code,
    message: string,
  ) {
    super(bounded(message));
    this.name = 'CsiError';
  }
}

export const invalid = (msg: string) => new CsiError(Code.INVALID_ARGUMENT, msg);
export const notFound = (msg: string) => new CsiError(Code.NOT_FOUND, msg);
export const alreadyExists = (msg: string) => new CsiError(Code.ALREADY_EXISTS, msg);
export const failedPrecondition = (msg: string) => new CsiError(Code.FAILED_PRECONDITION, msg);
export const outOfRange = (msg: string) => new CsiError(Code.OUT_OF_RANGE, msg);
export const exhausted = (msg: string) => new CsiError(Code.RESOURCE_EXHAUSTED, msg);
export const aborted = (msg: string) => new CsiError(Code.ABORTED, msg);
export const unavailable = (msg: string) => new CsiError(Code.UNAVAILABLE, msg);
export const internal = (msg: string) => new CsiError(Code.INTERNAL, msg);
export const unimplemented = (msg: string) => new CsiError(Code.UNIMPLEMENTED, msg);
export const permissionDenied = (msg: string) => new CsiError(Code.PERMISSION_DENIED, msg);
