// Makes every client's HTTP/2 request acceptable to Node's HTTP/2 server.
//
// Go gRPC clients on unix sockets send `:authority: localhost`, but older
// ones (and some other languages) send the socket path, or no :authority at
// all. Node's HTTP/2 layer (nghttp2) resets such streams with PROTOCOL_ERROR
// (nodejs/node#32326), so those clients could never talk to the driver.
//
// This stream sits between the unix socket and grpc-js: client-to-server
// bytes are parsed into frames; each request header block is decoded (HPACK,
// with the client's dynamic table), its :authority set to "localhost" when
// missing or not a valid authority, and re-encoded with literal fields only
// (so the server's decoder never depends on a table we did not feed it).
// Every other frame, and everything the server sends, passes unchanged.
//
// A gRPC channel sends one authority on all its calls. So when a
// connection's first request has a valid :authority, the connection is
// passed through untouched from there on (the server's HPACK table then
// follows the client's own); decoding and re-encoding every header block in
// JavaScript was an eighth of the driver's CPU on a stream of creates.

import type net from 'node:net';
import { Duplex } from 'node:stream';
import hpack from 'hpack.js';

const PREFACE_LENGTH = 24;
const HEADERS = 0x1;
const CONTINUATION = 0x9;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY = 0x20;
const MAX_FRAME = 16_384; // the server's default SETTINGS_MAX_FRAME_SIZE
const VALID_AUTHORITY = /^[A-Za-z0-9\-._~!$&'()*+,;=:@[\]%]+$/;

function frameHeader(length: number, type: number, flags: number, stream: number): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return head;
}

function hpackLength(n: number): Buffer {
  if (n < 127) return Buffer.from([n]);
  const out = [127];
  n -= 127;
  while (n >= 128) {
    out.push((n % 128) + 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}

/** Literal header field without indexing, new name, raw strings. */
function encodeBlock(headers: Array<{ name: string; value: string }>): Buffer {
  const parts: Buffer[] = [];
  for (const { name, value } of headers) {
    const n = Buffer.from(name);
    const v = Buffer.from(value);
    parts.push(Buffer.from([0]), hpackLength(n.length), n, hpackLength(v.length), v);
  }
  return Buffer.concat(parts);
}

export class AuthorityNormaliser extends Duplex {
  private pending: Buffer = Buffer.alloc(0);
  private prefaceLeft = PREFACE_LENGTH;
  private readonly decoder = hpack.decompressor.create({ table: { size: 4096 } });
  /** Header block being assembled across HEADERS + CONTINUATION frames, and those frames as they came. */
  private block: { stream: number; endStream: boolean; fragments: Buffer[]; frames: Buffer[] } | undefined;
  /** What the first request decided: undefined until it came. */
  private mode: 'pass' | 'rewrite' | undefined;

  constructor(private readonly socket: net.Socket) {
    super();
    socket.on('data', (chunk: Buffer) => {
      let out: Buffer;
      try {
        out = this.mode === 'pass' ? chunk : this.transform(chunk);
      } catch (err) {
        this.destroy(err as Error);
        return;
      }
      if (out.length > 0 && !this.push(out)) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
  }

  // Lets grpc-js log and account the connection like a socket.
  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress ?? 'unix';
  }

  override _read(): void {
    this.socket.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.socket.write(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.socket.end(cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.socket.destroy();
    cb(err);
  }

  private transform(chunk: Buffer): Buffer {
    const out: Buffer[] = [];
    let data = chunk;
    if (this.prefaceLeft > 0) {
      const take = Math.min(this.prefaceLeft, data.length);
      out.push(data.subarray(0, take));
      this.prefaceLeft -= take;
      data = data.subarray(take);
    }
    this.pending = this.pending.length ? Buffer.concat([this.pending, data]) : data;
    while (this.pending.length >= 9) {
      const length = this.pending.readUIntBE(0, 3);
      if (this.pending.length < 9 + length) break;
      const frame = this.pending.subarray(0, 9 + length);
      this.pending = this.pending.subarray(9 + length);
      const type = frame[3] as number;
      if (type !== HEADERS && type !== CONTINUATION) {
        out.push(frame);
        continue;
      }
      const flags = frame[4] as number;
      const stream = frame.readUInt32BE(5) & 0x7fffffff;
      let payload = frame.subarray(9);
      if (type === HEADERS) {
        if (flags & PADDED) {
          const pad = payload[0] as number;
          payload = payload.subarray(1, payload.length - pad);
        }
        if (flags & PRIORITY) payload = payload.subarray(5);
        this.block = { stream, endStream: Boolean(flags & END_STREAM), fragments: [], frames: [] };
      }
      if (!this.block || this.block.stream !== stream) throw new Error('HTTP/2 CONTINUATION without HEADERS');
      this.block.fragments.push(payload);
      this.block.frames.push(frame);
      if (flags & END_HEADERS) {
        const block = this.block;
        this.block = undefined;
        const rewritten = this.rewrite(block);
        if (rewritten) {
          this.mode = 'rewrite';
          out.push(rewritten);
          continue;
        }
        // The first request was fine as it came: so is the rest of this connection.
        this.mode = 'pass';
        out.push(...block.frames, this.pending);
        this.pending = Buffer.alloc(0);
        break;
      }
    }
    return Buffer.concat(out);
  }

  /** The block re-encoded, or undefined when it is the connection's first request and needs nothing. */
  private rewrite(block: { stream: number; endStream: boolean; fragments: Buffer[] }): Buffer | undefined {
    this.decoder.write(Buffer.concat(block.fragments));
    this.decoder.execute();
    const headers: Array<{ name: string; value: string }> = [];
    for (let h = this.decoder.read(); h; h = this.decoder.read()) headers.push({ name: h.name, value: h.value });
    const isRequest = headers.some((h) => h.name === ':method');
    const authority = headers.find((h) => h.name === ':authority');
    if (isRequest && this.mode === undefined && authority && VALID_AUTHORITY.test(authority.value)) return undefined;
    if (isRequest) {
      if (!authority)
        headers.splice(headers.findIndex((h) => !h.name.startsWith(':')) >>> 0, 0, { name: ':authority', value: 'localhost' });
      else if (!VALID_AUTHORITY.test(authority.value)) authority.value = 'localhost';
    }
    const encoded = encodeBlock(headers);
    const frames: Buffer[] = [];
    for (let off = 0, first = true; first || off < encoded.length; first = false) {
      const piece = encoded.subarray(off, off + MAX_FRAME);
      off += piece.length;
      const last = off >= encoded.length;
      const type = first ? HEADERS : CONTINUATION;
      const flags = (first && block.endStream ? END_STREAM : 0) | (last ? END_HEADERS : 0);
      frames.push(frameHeader(piece.length, type, flags, block.stream), piece);
    }
    return Buffer.concat(frames);
  }
}
