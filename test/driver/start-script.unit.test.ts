// `npm start` builds only when a source changed since the last build
// (scripts/start.mjs; fast tier: a project tree in a temporary directory).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';

describe('npm start: build only when needed', () => {
  it('builds when there is no build, or a source is newer than the last one, and not otherwise', async () => {
    const { staleBecause } = (await import(path.resolve('scripts/start.mjs'))) as { staleBecause: (root: string) => string | undefined };
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-start-script-'));
    try {
      await fs.mkdir(path.join(root, 'driver'), { recursive: true });
      await fs.writeFile(path.join(root, 'driver', 'main.ts'), '');
      expect(staleBecause(root)).to.equal('no build yet');
      await fs.mkdir(path.join(root, 'dist'));
      await fs.writeFile(path.join(root, 'dist', '.built'), '');
      const later = new Date(Date.now() + 60_000);
      await fs.utimes(path.join(root, 'dist', '.built'), later, later);
      expect(staleBecause(root)).to.equal(undefined);
      const newer = new Date(Date.now() + 120_000);
      await fs.utimes(path.join(root, 'driver', 'main.ts'), newer, newer);
      expect(staleBecause(root)).to.equal('driver changed since the last build');
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  });
});
