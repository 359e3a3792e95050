// Durable writes and group commit of directory syncs (fast tier: a temporary
// directory, no root).

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { DirectorySync, writeFileDurable } from '../../host/durable.js';

describe('group commit of directory syncs', () => {
  /** An fsync that takes as long as the test says, and counts. */
  function slowSync() {
    const started: number[] = [];
    const finish: Array<() => void> = [];
    const fsync = () =>
      new Promise<void>((resolve) => {
        started.push(Date.now());
        finish.push(resolve);
      });
    return { fsync, started, finishNext: () => finish.shift()?.() };
  }
  const settled = () => new Promise((r) => setImmediate(r));

  it('shares one fsync among every caller that arrives while one runs', async () => {
    const s = slowSync();
    const sync = new DirectorySync('/d', s.fsync);
    const first = sync.sync();
    const later = Array.from({ length: 10 }, () => sync.sync());
    await settled();
    expect(s.started).to.have.length(1);
    s.finishNext();
    await first;
    await settled();
    expect(s.started, 'one more fsync for all ten that arrived meanwhile').to.have.length(2);
    s.finishNext();
    await Promise.all(later);
    expect(s.started).to.have.length(2);
  });

  it('never lets a caller ride on an fsync that began before its call', async () => {
    const s = slowSync();
    const sync = new DirectorySync('/d', s.fsync);
    void sync.sync();
    let done = false;
    const mine = sync.sync().then(() => (done = true));
    await settled();
    s.finishNext(); // the fsync that was already running ends
    await settled();
    expect(done, 'resolved by an fsync that started before it').to.equal(false);
    s.finishNext();
    await mine;
  });

  it('passes a failed fsync to its callers, and the next one runs again', async () => {
    let calls = 0;
    const sync = new DirectorySync('/d', async () => {
      calls++;
      if (calls === 1) throw Object.assign(new Error('EIO'), { code: 'EIO' });
    });
    await sync.sync().then(
      () => expect.fail('resolved'),
      (err: Error) => expect(err.message).to.equal('EIO'),
    );
    await sync.sync();
    expect(calls).to.equal(2);
  });
});

describe('durable file replacement', () => {
  it('replaces a file atomically and leaves no temporary file', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-durable-'));
    try {
      const file = path.join(dir, 'record.json');
      await writeFileDurable(file, '{"v":1}');
      await writeFileDurable(file, '{"v":2}');
      expect(await fs.readFile(file, 'utf8')).to.equal('{"v":2}');
      expect(await fs.readdir(dir)).to.deep.equal(['record.json']);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
