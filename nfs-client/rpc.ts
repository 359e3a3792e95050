// ONC RPC v2 (RFC 5531) over TCP: record marking, many calls in flight on
// one connection matched by xid, AUTH_SYS credentials, a timeout per call,
// reconnection after the server goes away, and a clean close.
import { randomInt } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import { XdrError, XdrReader, XdrWriter } from './xdr.js';

const CALL = 0;
const REPLY = 1;
const MSG_ACCEPTED = 0;
const MSG_DENIED = 1;
const AUTH_NONE = 0;
const AUTH_SYS = 1;
const LAST_FRAGMENT = 0x80000000;
/** Largest record we accept: a READ of 1 MiB plus headers, with room. */
const MAX_RECORD = 4 * 1024 * 1024;

const ACCEPT_STATUS = ['SUCCESS', 'PROG_UNAVAIL', 'PROG_MISMATCH', 'PROC_UNAVAIL', 'GARBAGE_ARGS', 'SYSTEM_ERR'];

/** The server answered, but refused or could not run the call. */
export class RpcError extends Error {
  constructor(
    message: string,
    readonly reason: string,
  ) {
    super(message);
    this.name = 'RpcError';
  }
}

/** The call's fate is unknown: no connection, connection lost, or timed out. Retryable. */
export class RpcTransportError extends Error {
  constructor(
    message: string,
    readonly kind: 'connect' | 'closed' | 'timeout' | 'protocol',
  ) {
    super(message);
    this.name = 'RpcTransportError';
  }
}

export interface AuthSys {
  uid: number;
  gid: number;
  gids?: number[];
  machineName?: string;
}

export interface RpcClientOptions {
  host: string;
  port: number;
  /** AUTH_SYS identity; AUTH_NONE when absent. */
  auth?: AuthSys;
  timeoutMs?: number;
  connectTimeoutMs?: number;
  /**
   * The local port to connect from. Servers that export `secure` (the
   * Linux default) accept only reserved ports (below 1024), which need
   * CAP_NET_BIND_SERVICE. 'auto' (default): a reserved port when this
   * process may bind one, any port otherwise; 'reserved': only a reserved
   * port; 'any': the kernel's choice.
   */
  sourcePort?: SourcePort;
  /** Told of every call once it ends: what it was (e.g. `NFS3 LOOKUP`), how long it took, and whether a reply came. */
  onReply?: (what: string, seconds: number, replied: boolean) => void;
}

export type SourcePort = 'auto' | 'reserved' | 'any';

/** The reserved ports Linux's own RPC client uses (sunrpc min_resvport to max_resvport). */
const RESERVED_PORTS = { low: 665, high: 1023 };

interface Pending {
  resolve: (r: XdrReader) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  what: string;
}

export class RpcClient {
  private socket: net.Socket | undefined;
  private connecting: Promise<net.Socket> | undefined;
  private readonly pending = new Map<number, Pending>();
  private xid = randomInt(1, 0x7fffffff);
  private inbox: Buffer[] = [];
  private inboxLength = 0;
  private fragments: Buffer[] = [];
  private fragmentsLength = 0;
  private closed = false;
  private readonly credential: Buffer;
  /** Calls sent, by program/procedure, for accounting. */
  readonly counts = new Map<string, number>();

  constructor(readonly opts: RpcClientOptions) {
    this.credential = opts.auth ? authSys(opts.auth) : Buffer.alloc(0);
  }

  /** One call; resolves with a reader positioned at the procedure's result. */
  async call(
    prog: number,
    vers: number,
    proc: number,
    args: Buffer,
    what = `${prog}/${proc}`,
    timeoutMs = this.opts.timeoutMs ?? 30_000,
  ): Promise<XdrReader> {
    const { onReply } = this.opts;
    if (!onReply) return this.send(prog, vers, proc, args, what, timeoutMs);
    const started = process.hrtime.bigint();
    const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
    try {
      const reply = await this.send(prog, vers, proc, args, what, timeoutMs);
      onReply(what, seconds(), true);
      return reply;
    } catch (err) {
      // An RPC-level rejection is a reply; a refused connection or a timeout is not.
      onReply(what, seconds(), !(err instanceof RpcTransportError));
      throw err;
    }
  }

  private async send(prog: number, vers: number, proc: number, args: Buffer, what: string, timeoutMs: number): Promise<XdrReader> {
    if (this.closed) throw new RpcTransportError('the client is closed', 'closed');
    const socket = await this.connect();
    const xid = this.nextXid();
    const header = new XdrWriter().uint32(xid).uint32(CALL).uint32(2).uint32(prog).uint32(vers).uint32(proc);
    if (this.opts.auth) header.uint32(AUTH_SYS).opaque(this.credential);
    else header.uint32(AUTH_NONE).opaque(Buffer.alloc(0));
    header.uint32(AUTH_NONE).opaque(Buffer.alloc(0)); // verifier
    const body = Buffer.concat([header.toBuffer(), args]);
    const mark = Buffer.alloc(4);
    mark.writeUInt32BE((LAST_FRAGMENT | body.length) >>> 0);
    this.counts.set(what, (this.counts.get(what) ?? 0) + 1);
    return new Promise<XdrReader>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(xid);
        reject(new RpcTransportError(`${what} to ${this.opts.host}:${this.opts.port} timed out after ${timeoutMs} ms`, 'timeout'));
      }, timeoutMs);
      this.pending.set(xid, { resolve, reject, timer, what });
      this.write(socket, Buffer.concat([mark, body]));
    });
  }

  /**
   * Calls made in the same turn of the event loop (the next steps of many
   * concurrent operations, resumed by one batch of replies) leave in one
   * write(2): on loopback each write costs the sender the server's receive
   * path too, about 12 % of a controller's CPU on a stream of creates.
   */
  private write(socket: net.Socket, record: Buffer): void {
    if (socket.writableCorked === 0) {
      socket.cork();
      process.nextTick(() => socket.uncork());
    }
    socket.write(record);
  }

  close(): void {
    this.closed = true;
    this.failAll(new RpcTransportError('the client was closed', 'closed'));
    this.socket?.destroy();
    this.socket = undefined;
  }

  private nextXid(): number {
    this.xid = (this.xid % 0x7fffffff) + 1;
    return this.xid;
  }

  private connect(): Promise<net.Socket> {
    if (this.socket && !this.socket.destroyed) return Promise.resolve(this.socket);
    this.connecting ??= this.connectFromAPort().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  /** Connects from a reserved port as `sourcePort` asks, trying the range from a random start. */
  private async connectFromAPort(): Promise<net.Socket> {
    const mode = this.opts.sourcePort ?? 'auto';
    if (mode === 'any') return this.connectFrom(undefined);
    const span = RESERVED_PORTS.high - RESERVED_PORTS.low + 1;
    const start = randomInt(0, span);
    for (let i = 0; i < span; i++) {
      const port = RESERVED_PORTS.low + ((start + i) % span);
      try {
        return await this.connectFrom(port);
      } catch (err) {
        const code = (err as { cause?: NodeJS.ErrnoException }).cause?.code;
        if (code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL') continue;
        if (code === 'EACCES' || code === 'EPERM') {
          if (mode === 'auto') return this.connectFrom(undefined);
          throw new RpcTransportError(
            `cannot connect to ${this.opts.host}:${this.opts.port} from a reserved port: this process may not bind one (it needs CAP_NET_BIND_SERVICE)`,
            'connect',
          );
        }
        throw err;
      }
    }
    if (mode === 'auto') return this.connectFrom(undefined);
    throw new RpcTransportError(`cannot connect to ${this.opts.host}:${this.opts.port}: every reserved source port is in use`, 'connect');
  }

  private connectFrom(localPort: number | undefined): Promise<net.Socket> {
    return new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: this.opts.host, port: this.opts.port, ...(localPort ? { localPort } : {}) });
      s.setNoDelay(true);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new RpcTransportError(`connecting to ${this.opts.host}:${this.opts.port} timed out`, 'connect'));
      }, this.opts.connectTimeoutMs ?? 10_000);
      s.once('connect', () => {
        clearTimeout(timer);
        this.socket = s;
        this.inbox = [];
        this.inboxLength = 0;
        this.fragments = [];
        this.fragmentsLength = 0;
        s.on('data', (chunk: Buffer) => this.onData(chunk));
        s.on('close', () => {
          if (this.socket === s) this.socket = undefined;
          this.failAll(new RpcTransportError(`connection to ${this.opts.host}:${this.opts.port} closed`, 'closed'));
        });
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        if (this.socket !== s) {
          reject(
            Object.assign(new RpcTransportError(`cannot connect to ${this.opts.host}:${this.opts.port}: ${err.message}`, 'connect'), {
              cause: err,
            }),
          );
        }
      });
    });
  }

  private failAll(err: Error): void {
    for (const [xid, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(xid);
      p.reject(err);
    }
  }

  /** Record marking: reassemble fragments into records, then dispatch by xid. */
  private onData(chunk: Buffer): void {
    this.inbox.push(chunk);
    this.inboxLength += chunk.length;
    try {
      for (;;) {
        if (this.inboxLength < 4) return;
        if ((this.inbox[0] as Buffer).length < 4) this.inbox = [Buffer.concat(this.inbox, this.inboxLength)];
        const mark = (this.inbox[0] as Buffer).readUInt32BE(0);
        const size = mark & 0x7fffffff;
        if (this.fragmentsLength + size > MAX_RECORD) throw new XdrError(`record of more than ${MAX_RECORD} bytes`);
        // Chunks wait in the inbox until the fragment is whole, then are joined once (not at every chunk).
        if (this.inboxLength < 4 + size) return;
        const buf = this.inbox.length === 1 ? (this.inbox[0] as Buffer) : Buffer.concat(this.inbox, this.inboxLength);
        this.fragments.push(buf.subarray(4, 4 + size));
        this.fragmentsLength += size;
        const rest = buf.subarray(4 + size);
        this.inbox = rest.length ? [rest] : [];
        this.inboxLength = rest.length;
        if (mark & LAST_FRAGMENT) {
          const record = Buffer.concat(this.fragments, this.fragmentsLength);
          this.fragments = [];
          this.fragmentsLength = 0;
          this.dispatch(record);
        }
      }
    } catch (err) {
      // A peer that breaks the framing cannot be trusted for anything in flight.
      this.failAll(
        new RpcTransportError(`malformed reply stream from ${this.opts.host}:${this.opts.port}: ${(err as Error).message}`, 'protocol'),
      );
      this.socket?.destroy();
    }
  }

  private dispatch(record: Buffer): void {
    const r = new XdrReader(record);
    const xid = r.uint32();
    const p = this.pending.get(xid);
    if (!p) return; // a reply to a call that already timed out
    this.pending.delete(xid);
    clearTimeout(p.timer);
    try {
      if (r.uint32() !== REPLY) throw new XdrError('not a reply');
      const stat = r.uint32();
      if (stat === MSG_DENIED) {
        const why = r.uint32();
        throw new RpcError(
          `${p.what}: call denied (${why === 0 ? 'RPC_MISMATCH' : 'AUTH_ERROR'})`,
          why === 0 ? 'RPC_MISMATCH' : 'AUTH_ERROR',
        );
      }
      if (stat !== MSG_ACCEPTED) throw new XdrError(`reply_stat ${stat}`);
      r.uint32(); // verifier flavor
      r.opaque(400); // verifier body
      const accept = r.uint32();
      if (accept !== 0) {
        const name = ACCEPT_STATUS[accept] ?? `accept_stat ${accept}`;
        throw new RpcError(`${p.what}: ${name}`, name);
      }
      p.resolve(r);
    } catch (err) {
      p.reject(err instanceof XdrError ? new RpcTransportError(`${p.what}: malformed reply: ${err.message}`, 'protocol') : (err as Error));
    }
  }
}

function authSys(a: AuthSys): Buffer {
  const w = new XdrWriter()
    .uint32(Math.floor(Date.now() / 1000) & 0xffffffff)
    .string((a.machineName ?? os.hostname()).slice(0, 255))
    .uint32(a.uid)
    .uint32(a.gid);
  const gids = (a.gids ?? []).slice(0, 16);
  w.uint32(gids.length);
  for (const g of gids) w.uint32(g);
  return w.toBuffer();
}
