// XDR (RFC 4506): the encoding of ONC RPC, MOUNT and NFSv3 messages.
// The reader checks every bound, so a truncated or malformed reply becomes a
// typed XdrError instead of garbage or a crash.

export class XdrError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'XdrError';
  }
}

export class XdrWriter {
  private chunks: Buffer[] = [];
  private length = 0;

  private push(b: Buffer): this {
    this.chunks.push(b);
    this.length += b.length;
    return this;
  }

  uint32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    return this.push(b);
  }

  int32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    return this.push(b);
  }

  uint64(v: bigint | number): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(v));
    return this.push(b);
  }

  bool(v: boolean): this {
    return this.uint32(v ? 1 : 0);
  }

  /** Fixed-length opaque: bytes then padding to 4. */
  fixed(data: Buffer): this {
    this.push(data);
    const pad = (4 - (data.length % 4)) % 4;
    return pad ? this.push(Buffer.alloc(pad)) : this;
  }

  /** Variable-length opaque: length, bytes, padding. */
  opaque(data: Buffer): this {
    return this.uint32(data.length).fixed(data);
  }

  string(s: string): this {
    return this.opaque(Buffer.from(s, 'utf8'));
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}

export class XdrReader {
  private off = 0;

  constructor(private readonly buf: Buffer) {}

  get remaining(): number {
    return this.buf.length - this.off;
  }

  private need(n: number, what: string): void {
    if (n < 0 || this.off + n > this.buf.length) {
      throw new XdrError(`truncated XDR: ${what} needs ${n} bytes at offset ${this.off}, ${this.remaining} left`);
    }
  }

  uint32(): number {
    this.need(4, 'uint32');
    const v = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return v;
  }

  int32(): number {
    this.need(4, 'int32');
    const v = this.buf.readInt32BE(this.off);
    this.off += 4;
    return v;
  }

  uint64(): bigint {
    this.need(8, 'uint64');
    const v = this.buf.readBigUInt64BE(this.off);
    this.off += 8;
    return v;
  }

  /** A uint64 that must fit a JS number (sizes, offsets). */
  uint64Number(): number {
    const v = this.uint64();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new XdrError(`uint64 ${v} does not fit a number`);
    return Number(v);
  }

  bool(): boolean {
    const v = this.uint32();
    if (v > 1) throw new XdrError(`bool with value ${v}`);
    return v === 1;
  }

  fixed(n: number): Buffer {
    const padded = n + ((4 - (n % 4)) % 4);
    this.need(padded, `opaque[${n}]`);
    const v = this.buf.subarray(this.off, this.off + n);
    this.off += padded;
    return Buffer.from(v);
  }

  opaque(max = 0x7fffffff): Buffer {
    const n = this.uint32();
    if (n > max) throw new XdrError(`opaque of ${n} bytes exceeds its limit of ${max}`);
    return this.fixed(n);
  }

  /**
   * Variable-length opaque as a view of the record, not a copy: for bulk
   * data (READ) consumed at once. opaque() copies, so that a small value
   * kept for long (a file handle) does not hold its whole record in memory.
   */
  opaqueView(max = 0x7fffffff): Buffer {
    const n = this.uint32();
    if (n > max) throw new XdrError(`opaque of ${n} bytes exceeds its limit of ${max}`);
    const padded = n + ((4 - (n % 4)) % 4);
    this.need(padded, `opaque[${n}]`);
    const v = this.buf.subarray(this.off, this.off + n);
    this.off += padded;
    return v;
  }

  string(max = 0x7fffffff): string {
    return this.opaque(max).toString('utf8');
  }
}
