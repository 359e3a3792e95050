// The XDR codec (RFC 4506) every NFS message passes through (fast tier):
// each type round-trips with its padding, and a reader given too few bytes,
// a value over its limit or a malformed bool throws a typed XdrError.
import { expect } from 'chai';
import { XdrError, XdrReader, XdrWriter } from '../../nfs-client/index.js';

describe('XDR codec', () => {
  it('round-trips every type, each padded to four bytes', () => {
    const fh = Buffer.from([1, 2, 3, 4, 5]);
    const buf = new XdrWriter()
      .uint32(0xffffffff)
      .int32(-2)
      .uint64(2n ** 63n + 5n)
      .bool(true)
      .bool(false)
      .opaque(fh)
      .fixed(Buffer.from([9, 9, 9]))
      .string('pvc-1/ä')
      .toBuffer();
    // 4 + 4 + 8 + 4 + 4 + (4 + 5 + 3 pad) + (3 + 1 pad) + (4 + 8 bytes of UTF-8)
    expect(buf.length).to.equal(4 + 4 + 8 + 4 + 4 + 12 + 4 + 12);
    const r = new XdrReader(buf);
    expect(r.uint32()).to.equal(0xffffffff);
    expect(r.int32()).to.equal(-2);
    expect(r.uint64()).to.equal(2n ** 63n + 5n);
    expect(r.bool()).to.equal(true);
    expect(r.bool()).to.equal(false);
    expect(r.opaque()).to.deep.equal(fh);
    expect(r.fixed(3)).to.deep.equal(Buffer.from([9, 9, 9]));
    expect(r.string()).to.equal('pvc-1/ä');
    expect(r.remaining).to.equal(0);
  });

  it('writes the padding as zeros and negative int32 as two’s complement', () => {
    expect(new XdrWriter().opaque(Buffer.from('a')).toBuffer()).to.deep.equal(Buffer.from([0, 0, 0, 1, 0x61, 0, 0, 0]));
    expect(new XdrWriter().int32(-1).toBuffer()).to.deep.equal(Buffer.from([0xff, 0xff, 0xff, 0xff]));
  });

  it('copies opaque values, and opaqueView reads bulk data without a copy', () => {
    const buf = new XdrWriter().opaque(Buffer.from('handle')).opaque(Buffer.from('bulk')).toBuffer();
    const r = new XdrReader(buf);
    const copied = r.opaque();
    const view = r.opaqueView();
    buf.fill(0);
    expect(copied.toString()).to.equal('handle');
    expect(
      view.every((b) => b === 0),
      'a view of the record',
    ).to.equal(true);
  });

  const bad: Array<[string, (r: XdrReader) => unknown, Buffer]> = [
    ['a uint32 from three bytes', (r) => r.uint32(), Buffer.alloc(3)],
    ['a uint64 from seven bytes', (r) => r.uint64(), Buffer.alloc(7)],
    ['an opaque longer than what is left', (r) => r.opaque(), new XdrWriter().uint32(100).toBuffer()],
    ['an opaque without its padding', (r) => r.opaque(), Buffer.concat([new XdrWriter().uint32(1).toBuffer(), Buffer.from([7])])],
    ['an opaque over its limit', (r) => r.opaque(4), new XdrWriter().opaque(Buffer.alloc(8)).toBuffer()],
    ['a string over its limit', (r) => r.string(2), new XdrWriter().string('abc').toBuffer()],
    ['a bool that is neither 0 nor 1', (r) => r.bool(), new XdrWriter().uint32(2).toBuffer()],
    ['a uint64 that does not fit a number', (r) => r.uint64Number(), new XdrWriter().uint64(2n ** 60n).toBuffer()],
    ['a length of 2^32-1 (a wrapped negative)', (r) => r.opaque(), new XdrWriter().uint32(0xffffffff).toBuffer()],
  ];
  for (const [what, read, buf] of bad) {
    it(`refuses ${what} with an XdrError`, () => {
      expect(() => read(new XdrReader(buf))).to.throw(XdrError);
    });
  }
});
