// A minimal HTTP/2 client written frame by frame, so a test can send a gRPC
// request with exactly the pseudo-headers it chooses — including none for
// :authority, which Node's own HTTP/2 client always adds.
import net from 'node:net';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

function hpackInt(value: number, prefixBits: number, firstByte: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByte | value]);
  const out = [firstByte | max];
  value -= max;
  while (value >= 128) {
    out.push((value % 128) + 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return Buffer.from(out);
}

/** Literal header field without indexing, new name, no Huffman coding. */
function literal(name: string, value: string): Buffer {
  const n = Buffer.from(name);
  const v = Buffer.from(value);
  return Buffer.concat([Buffer.from([0x00]), hpackInt(n.length, 7, 0), n, hpackInt(v.length, 7, 0), v]);
}

export interface RawResult {
  /** The gRPC message bytes of the first DATA frame (after the 5-byte prefix). */
  message?: Buffer;
  rstCode?: number;
  goaway?: boolean;
}

/** Sends one unary gRPC call with the given :authority (undefined = omitted). */
export function rawGrpcCall(socket: string, grpcPath: string, authority: string | undefined, body = Buffer.alloc(0)): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const conn = net.connect(socket);
    let buf = Buffer.alloc(0);
    const result: RawResult = {};
    const done = () => {
      conn.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new Error('no answer within 5 s'));
    }, 5000);
    conn.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    conn.on('connect', () => {
      const headers = Buffer.concat([
        Buffer.from([0x83, 0x86]), // :method POST, :scheme http (static table)
        literal(':path', grpcPath),
        ...(authority === undefined ? [] : [literal(':authority', authority)]),
        literal('content-type', 'application/grpc'),
        literal('te', 'trailers'),
      ]);
      const msg = Buffer.alloc(5 + body.length);
      msg.writeUInt32BE(body.length, 1);
      body.copy(msg, 5);
      conn.write(Buffer.concat([PREFACE, frame(4, 0, 0, Buffer.alloc(0)), frame(1, 0x4, 1, headers), frame(0, 0x1, 1, msg)]));
    });
    conn.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const type = buf[3] as number;
        const flags = buf[4] as number;
        const stream = buf.readUInt32BE(5) & 0x7fffffff;
        const payload = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === 4 && !(flags & 0x1)) conn.write(frame(4, 0x1, 0, Buffer.alloc(0))); // ACK settings
        if (type === 0 && stream === 1 && payload.length >= 5 && !result.message) result.message = payload.subarray(5);
        if (type === 3 && stream === 1) {
          result.rstCode = payload.readUInt32BE(0);
          clearTimeout(timer);
          return done();
        }
        if (type === 7) {
          result.goaway = true;
          clearTimeout(timer);
          return done();
        }
        if (type === 1 && stream === 1 && flags & 0x1) {
          clearTimeout(timer);
          return done(); // trailers: the call is over
        }
      }
    });
  });
}
