// Reads shared among concurrent callers (fast tier).
import { expect } from 'chai';
import { SharedRead } from '../../host/shared-read.js';

describe('a read shared by concurrent callers', () => {
  /** A read that finishes when the test says, resolving to its own sequence number. */
  function controlledRead() {
    const finish: Array<(err?: Error) => void> = [];
    let started = 0;
    const read = () =>
      new Promise<number>((resolve, reject) => {
        const n = ++started;
        finish.push((err) => (err ? reject(err) : resolve(n)));
      });
    return { read, started: () => started, finishNext: (err?: Error) => finish.shift()?.(err) };
  }
  const settled = () => new Promise((r) => setImmediate(r));

  it('gives every caller that arrives during a read the one read after it', async () => {
    const r = controlledRead();
    const shared = new SharedRead(r.read);
    const first = shared.get();
    const later = Array.from({ length: 10 }, () => shared.get());
    await settled();
    expect(r.started()).to.equal(1);
    r.finishNext();
    expect(await first).to.equal(1);
    await settled();
    expect(r.started(), 'one more read for the ten').to.equal(2);
    r.finishNext();
    expect(await Promise.all(later)).to.deep.equal(Array(10).fill(2));
  });

  it('never answers a caller with a read that began before its call', async () => {
    const r = controlledRead();
    const shared = new SharedRead(r.read);
    void shared.get();
    const late = shared.get();
    r.finishNext();
    await settled();
    r.finishNext();
    expect(await late).to.equal(2);
  });

  it('passes a failed read to its callers only; the next read is made afresh', async () => {
    const r = controlledRead();
    const shared = new SharedRead(r.read);
    const failing = shared.get();
    const waiting = shared.get();
    r.finishNext(new Error('EIO'));
    const err = await failing.catch((e: Error) => e.message);
    expect(err).to.equal('EIO');
    await settled();
    r.finishNext();
    expect(await waiting).to.equal(2);
  });
});
