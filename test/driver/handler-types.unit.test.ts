// The compiler checks each served service against the generated CSI
// definitions (volume/csi.ts RpcsOf, LockKeysOf, StrayRpcs; driver/pipeline.ts
// serve): a misspelled RPC or lock key fails the build, as mount-utils'
// `var _ Interface = &Mounter{}` does. Shown here by compiling a small
// service written right and the same service with each mistake (fast tier:
// one tsc run, no emit).
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

const service = (body: string, locks: string) => `
import { KeyedLocks } from '../driver/locks.js';
import { createLogger } from '../driver/log.js';
import { Pipeline } from '../driver/pipeline.js';
import { loadCsi } from '../proto/load.js';
import type { ControllerDefinition, LockKeysOf } from '../volume/csi.js';

class Service {
  static readonly lockKeys = { ${locks}: (req: { volume_id?: string }) => req.volume_id } satisfies LockKeysOf<ControllerDefinition>;
  ${body}
}
new Pipeline(createLogger(), new KeyedLocks()).serve(loadCsi().csi.v1.Controller.service, new Service(), Service.lockKeys);
`;

const FIXTURES: Record<string, string> = {
  'right.ts': service('async DeleteVolume(_req: { volume_id: string }) { return {}; }', 'DeleteVolume'),
  'misspelled-rpc.ts': service('async DeleteVolumes(_req: { volume_id: string }) { return {}; }', 'DeleteVolume'),
  'misspelled-lock.ts': service('async DeleteVolume(_req: { volume_id: string }) { return {}; }', 'DeleteVolumes'),
  'wrong-answer.ts': service('async GetCapacity() { return { available_capacity: "lots" as unknown as boolean }; }', 'DeleteVolume'),
};

describe('handlers checked by the compiler against the generated CSI definitions', function () {
  this.timeout(120_000);
  let errors: Map<string, string[]>;

  before(async () => {
    const dir = await fs.mkdtemp(path.join(ROOT, '.handler-types-'));
    try {
      for (const [name, text] of Object.entries(FIXTURES)) await fs.writeFile(path.join(dir, name), text);
      await fs.writeFile(
        path.join(dir, 'tsconfig.json'),
        JSON.stringify({
          extends: '../tsconfig.json',
          compilerOptions: { noEmit: true, rootDir: '..' },
          include: [],
          files: Object.keys(FIXTURES),
        }),
      );
      const tsc = path.join(ROOT, 'node_modules/.bin/tsc');
      const out = await promisify(execFile)(tsc, ['-p', dir], { cwd: ROOT }).then(
        (r) => r.stdout,
        (err: { stdout: string }) => err.stdout,
      );
      // One block per error: its first line names the file, the lines after it explain.
      const blocks = out.split(/\n(?=\S)/);
      errors = new Map(Object.keys(FIXTURES).map((f) => [f, blocks.filter((b) => b.includes(`${f}(`))]));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('accepts a service written right', () => expect(errors.get('right.ts')).to.deep.equal([]));
  it('refuses a misspelled RPC', () => expect(errors.get('misspelled-rpc.ts')?.join('\n')).to.match(/DeleteVolumes/));
  it('refuses a misspelled lock key', () => expect(errors.get('misspelled-lock.ts')?.join('\n')).to.match(/DeleteVolumes/));
  it('refuses an answer of the wrong shape', () =>
    expect(errors.get('wrong-answer.ts')?.join('\n')).to.match(/GetCapacity|available_capacity/));
});
