// Freeze marks (fast tier: the fsfreeze itself played): every freeze is
// marked on its own, so a second freeze of a volume that fails never removes
// the first one's mark, and a restart after a kill thaws what any mark names.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { LocalCopier } from '../../controller/local-copies.js';
import { thawInterruptedFreezes } from '../../controller/local-pool-recovery.js';

describe('freeze marks', () => {
  let dir: string;
  const frozen: string[] = [];
  let copier: LocalCopier;
  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-freeze-'));
    const paths = {
      volume: (k: string) => path.join(dir, k),
      snapshot: (k: string) => path.join(dir, k),
      image: (k: string) => path.join(dir, `${k}.img`),
    };
    copier = new LocalCopier(paths, dir, async (images) => {
      if (images.some((i) => frozen.includes(i))) throw new Error('fsfreeze: Device or resource busy'); // frozen already
      frozen.push(...images);
      return async () => {
        for (const i of images) frozen.splice(frozen.indexOf(i), 1);
      };
    });
    copier.method = 'reflink'; // a pool that copies in an instant: freezes are allowed
  });
  after(async () => fs.rm(dir, { recursive: true, force: true }));

  it('keeps the first freeze’s mark when a second freeze of the same volume fails, and removes each with its thaw', async () => {
    const thaw = await copier.freeze(['pvc-a']);
    const marks = await fs.readdir(dir);
    expect(marks).to.have.length(1);
    let second: unknown;
    await copier.freeze(['pvc-a']).catch((err: unknown) => {
      second = err;
    });
    expect(second, 'the second freeze fails').to.be.instanceOf(Error);
    expect(await fs.readdir(dir), 'the first mark stays: a kill now is still thawed at start-up').to.deep.equal(marks);
    await thaw();
    expect(await fs.readdir(dir)).to.deep.equal([]);
  });

  it('reads a volume’s key from its marks at start-up, old-style marks included, and removes them all', async () => {
    await fs.writeFile(path.join(dir, 'pvc-b@123-1'), '');
    await fs.writeFile(path.join(dir, 'pvc-b@123-2'), '');
    await fs.writeFile(path.join(dir, 'pvc-c'), ''); // a mark from before marks were unique
    const thawed: string[] = [];
    // thawImages finds nothing staged here; the key → image mapping is what is checked.
    await thawInterruptedFreezes(dir, (key) => {
      thawed.push(key);
      return path.join(dir, `${key}.img`);
    });
    expect(thawed.sort()).to.deep.equal(['pvc-b', 'pvc-c']);
    expect(await fs.readdir(dir)).to.deep.equal([]);
  });
});
