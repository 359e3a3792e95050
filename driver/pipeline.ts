// The request pipeline every gRPC call passes through, once: a request id,
// a log line with secrets stripped (debug), the per-volume lock, the handler,
// the error mapping, and a closing line: a failure with its code, a change
// that succeeded with what it changed (the audit trail, audit.ts), each
// with its duration. Handlers hold storage logic only.
import { randomBytes } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { LockKeysOf, RpcsOf, StrayRpcs } from '../volume/csi.js';
import { aborted, Code, unimplemented } from '../volume/errors.js';
import { auditFields } from './audit.js';
import type { KeyedLocks } from './locks.js';
import { type Logger, redact } from './log.js';
import { toStatus } from './status.js';

export type Handler<Req, Res> = (req: Req) => Promise<Res>;

/** A server-streaming handler: sends each message through `send` (which waits while the client is slow). */
export type StreamHandler<Req, Res> = (req: Req, send: (msg: Res) => Promise<void>) => Promise<void>;

export interface PipelineOptions<Req> {
  /** The keys this call must hold exclusively (e.g. the volume, and the path it mounts at), if any. */
  lockKey?: (req: Req) => string | readonly string[] | undefined;
  /** The gRPC path (/csi.v1.Node/NodeStageVolume), told to `observe`; the method name when absent. */
  path?: string;
}

/** Told of every call once it ends: its gRPC path, code and duration (metrics). */
export type CallObserver = (path: string, code: number, seconds: number) => void;

/** Counts calls in flight, so shutdown can wait for them. */
export class InFlight {
  count = 0;
  private waiters: Array<() => void> = [];
  enter(): void {
    this.count++;
  }
  leave(): void {
    this.count--;
    if (this.count === 0) for (const w of this.waiters.splice(0)) w();
  }
  idle(): Promise<void> {
    return this.count === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }
}

const prefix = randomBytes(3).toString('hex');
let sequence = 0;

export class Pipeline {
  /** Set when metrics are served. */
  observe: CallObserver | undefined;

  constructor(
    private readonly log: Logger,
    private readonly locks: KeyedLocks,
    readonly inFlight = new InFlight(),
  ) {}

  unary<Req, Res>(method: string, handler: Handler<Req, Res>, opts: PipelineOptions<Req> = {}): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => this.invoke(method, call.request, () => handler(call.request), opts, callback);
  }

  /**
   * A server-streaming call through the same steps as unary: request id,
   * logs, lock, error mapping. `send` honours back-pressure and fails once
   * the client has cancelled, so a handler stops instead of reading on.
   */
  stream<Req, Res>(
    method: string,
    handler: StreamHandler<Req, Res>,
    opts: PipelineOptions<Req> = {},
  ): grpc.handleServerStreamingCall<Req, Res> {
    return (call) => {
      const gone = () => aborted('the client cancelled the call');
      const send = (msg: Res) =>
        new Promise<void>((resolve, reject) => {
          if (call.cancelled) return reject(gone());
          if (call.write(msg)) return resolve();
          // Back-pressure: wait for the client to read, or for it to go (a drain that never comes).
          const drained = () => {
            call.off('cancelled', cancelled);
            resolve();
          };
          const cancelled = () => {
            call.off('drain', drained);
            reject(gone());
          };
          call.once('drain', drained);
          call.once('cancelled', cancelled);
        });
      this.invoke(
        method,
        call.request,
        () => handler(call.request, send),
        opts,
        (err) => {
          if (err) call.emit('error', err);
          else call.end();
        },
      );
    };
  }

  /** One call's steps, whatever its shape: `work` runs the handler. */
  private invoke<Req, Res>(
    method: string,
    request: Req,
    work: () => Promise<Res>,
    opts: PipelineOptions<Req>,
    callback: (err: grpc.ServiceError | null, res?: Res) => void,
  ): void {
    const requestId = `${prefix}-${(++sequence).toString(36)}`;
    // The child logger is made on first use: a successful read at info
    // level logs nothing, and should not pay for it.
    let child: Logger | undefined;
    const log = () => (child ??= this.log.child({ requestId, method }));
    const started = process.hrtime.bigint();
    this.inFlight.enter();
    const debug = this.log.isLevelEnabled('debug');
    if (debug) log().debug('request', { request: redact(request) });
    let held: readonly string[] = [];
    const finish = (err: unknown, res?: Res) => {
      for (const k of held) this.locks.release(k);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (err === null) {
        // The audit trail: a call that changed something says what, at info (audit.ts).
        const audit = auditFields(method, request, res);
        if (audit) log().info('done', { ...audit, ms });
        else if (debug) log().debug('ok', { ms });
        this.observe?.(opts.path ?? method, Code.OK, ms / 1e3);
        callback(null, res);
      } else {
        const { code, message } = toStatus(err);
        this.observe?.(opts.path ?? method, code, ms / 1e3);
        const level = code === Code.INTERNAL || code === Code.UNKNOWN ? 'error' : 'info';
        log().log(level, 'failed', {
          code: Code[code],
          message,
          ms,
          ...(level === 'error' && err instanceof Error ? { stack: err.stack } : {}),
        });
        // The caller gets the code and the readable message, never a stack.
        callback({ code: code as number as grpc.status, details: message, message } as grpc.ServiceError);
      }
      this.inFlight.leave();
    };
    try {
      const wanted = opts.lockKey?.(request);
      const keys = wanted === undefined ? [] : typeof wanted === 'string' ? [wanted] : [...new Set(wanted)];
      // All or none: a key another call holds releases the ones taken so far.
      for (const k of keys) {
        if (!this.locks.tryAcquire(k)) throw aborted(`an operation on ${k.slice(0, 300)} is already in progress`);
        held = [...held, k];
      }
      work().then(
        (res) => finish(null, res),
        (err: unknown) => finish(err),
      );
    } catch (err) {
      finish(err);
    }
  }
  /**
   * Handlers for every method of a gRPC service definition: the service
   * object's method of the same name (the method is the RPC), or
   * UNIMPLEMENTED where it has none. The compiler checks the service
   * against the generated definition: each handler's request and answer,
   * the lock keys' RPC names, and no capitalised method the definition
   * lacks (a misspelled RPC would otherwise answer UNIMPLEMENTED).
   */
  serve<D extends grpc.ServiceDefinition, S>(
    definition: D,
    // S is inferred from the argument alone (NoInfer); a constraint on it would let a service that
    // fails it fall back to the constraint and escape the stray-RPC check.
    service: S & RpcsOf<D> & NoInfer<Record<StrayRpcs<S, D>, never>>,
    lockKeys: LockKeysOf<D> = {},
  ): grpc.UntypedServiceImplementation {
    const handlers: grpc.UntypedServiceImplementation = {};
    for (const method of Object.keys(definition)) {
      const fn = (service as Record<string, unknown>)[method];
      const handler: Handler<unknown, unknown> =
        typeof fn === 'function'
          ? (req) => (fn as (r: unknown) => Promise<unknown>).call(service, req)
          : async () => {
              throw unimplemented(`${method} is not supported by berth`);
            };
      const def = definition[method] as grpc.MethodDefinition<unknown, unknown>;
      const opts = {
        lockKey: (lockKeys as Record<string, unknown>)[method] as ((req: unknown) => string | readonly string[] | undefined) | undefined,
        path: def.path,
      };
      handlers[method] = def.responseStream
        ? this.stream(method, (req, send) => (typeof fn === 'function' ? fn.call(service, req, send) : handler(req)), opts)
        : this.unary(method, handler, opts);
    }
    return handlers;
  }
}
