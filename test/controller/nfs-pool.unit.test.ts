// The NFS pool's decisions over an export in memory (fast tier): who owns a
// directory (claims), what a retried create may adopt, what a delete may
// remove, and how copies answer while they run. The root tier runs the
// same pool against nfs-ganesha (nfs-pool.test.ts, nfs-snapshots.test.ts).
import { expect } from 'chai';
import { NfsPool } from '../../controller/nfs-pool.js';
import type { SnapshotRecord, VolumeRecord } from '../../volume/record.js';
import { FakeExportStore } from '../helpers/fake-export-store.js';
import { outcome } from '../helpers/outcome.js';

const record = (key: string, kind: 'share' | 'block', subDir = key, extra: Partial<VolumeRecord> = {}): VolumeRecord => ({
  version: 1,
  name: key,
  volumeId: `nfs:fake:/export:${kind}:${key}`,
  kind,
  capacityBytes: 1 << 20,
  fsType: kind === 'block' ? 'ext4' : '',
  parameters: {},
  volumeContext: {},
  onDelete: 'delete',
  subDir,
  createdAt: new Date(0).toISOString(),
  attachments: {},
  ...extra,
});

describe('NFS pool decisions (fast tier: an export in memory)', () => {
  let store: FakeExportStore;
  let pool: NfsPool;
  beforeEach(() => {
    store = new FakeExportStore();
    pool = new NfsPool({ server: 'fake', share: '/export' }, store, 50);
  });

  describe('create', () => {
    it('claims the directory first, makes it, then writes the record last', async () => {
      expect(await pool.create('a', record('a', 'block'), 0o750)).to.equal(true);
      expect(store.calls).to.deep.equal(['claim a for a', 'mkdir a', 'create a/disk.img 1048576', 'add volumes/a']);
      expect(await pool.create('a', record('a', 'block'), 0o750), 'the same key again makes nothing').to.equal(false);
    });

    const rows: Array<[string, (s: FakeExportStore) => void, 'adopted' | 'ALREADY_EXISTS', string]> = [
      [
        'an empty directory this volume claimed (an interrupted create)',
        (s) => {
          s.claims.set('d', 'a');
          s.dirs.add('d');
        },
        'adopted',
        'a',
      ],
      [
        'its directory holding just its image, claimed by it',
        (s) => {
          s.claims.set('d', 'a');
          s.dirs.add('d');
          s.files.set('d/disk.img', 4096);
        },
        'adopted',
        'a',
      ],
      ['a directory nobody claimed (made by someone else)', (s) => s.dirs.add('d'), 'ALREADY_EXISTS', 'none'],
      [
        'a directory another volume claimed',
        (s) => {
          s.claims.set('d', 'b');
          s.dirs.add('d');
        },
        'ALREADY_EXISTS',
        'b',
      ],
      ['a claim by another volume, with no directory yet', (s) => s.claims.set('d', 'b'), 'ALREADY_EXISTS', 'b'],
      [
        'its claimed directory holding other files',
        (s) => {
          s.claims.set('d', 'a');
          s.dirs.add('d');
          s.files.set('d/data.db', 10);
        },
        'ALREADY_EXISTS',
        'a',
      ],
    ];
    for (const [what, given, expected, ownerAfter] of rows) {
      it(`${what}: ${expected === 'adopted' ? 'adopted' : 'ALREADY_EXISTS, the other data untouched'}`, async () => {
        given(store);
        const before = { dirs: [...store.dirs], files: [...store.files] };
        const code = await outcome(pool.create('a', record('a', 'block', 'd'), 0o750));
        expect(code).to.equal(expected === 'adopted' ? 'OK' : 'ALREADY_EXISTS');
        expect(store.claims.get('d') ?? 'none', 'the claim after').to.equal(ownerAfter);
        if (expected === 'adopted') {
          expect(store.files.get('d/disk.img')).to.equal(1 << 20);
          expect(store.records.volumes.has('a')).to.equal(true);
        } else {
          expect({ dirs: [...store.dirs], files: [...store.files] }).to.deep.equal(before);
          expect(store.records.volumes.has('a')).to.equal(false);
        }
      });
    }
  });

  describe('nesting', () => {
    it('refuses a volume inside another volume’s directory (a class whose subDir points into it), making nothing', async () => {
      expect(await pool.create('outer', record('outer', 'share', 'team'), 0o750)).to.equal(true);
      const before = { dirs: [...store.dirs], files: [...store.files], claims: [...store.claims] };
      expect(await outcome(pool.create('inner', record('inner', 'block', 'team/pvc-1'), 0o750))).to.equal('ALREADY_EXISTS');
      expect({ dirs: [...store.dirs], files: [...store.files], claims: [...store.claims] }).to.deep.equal(before);
      await pool.remove('outer', record('outer', 'share', 'team'), 'delete');
      expect(await pool.create('inner', record('inner', 'block', 'team/pvc-1'), 0o750), 'once the outer volume is gone').to.equal(true);
    });

    it('refuses a volume around another one (its directory exists and holds the other), leaving the inner one whole', async () => {
      expect(await pool.create('inner', record('inner', 'block', 'team/pvc-1'), 0o750)).to.equal(true);
      expect(await outcome(pool.create('outer', record('outer', 'share', 'team'), 0o750))).to.equal('ALREADY_EXISTS');
      expect(store.files.get('team/pvc-1/disk.img')).to.equal(1 << 20);
      expect(store.claims.has('team')).to.equal(false);
    });
  });

  describe('delete', () => {
    const rows: Array<[string, (s: FakeExportStore) => void, boolean]> = [
      ['its own claimed directory', (s) => s.claims.set('d', 'a'), true],
      ['a directory another volume claims (a class whose subDir points into it)', (s) => s.claims.set('d', 'b'), false],
      ['an unclaimed directory no other record names (made before claims)', () => undefined, true],
      ['an unclaimed directory another record names', (s) => s.records.volumes.set('b', JSON.stringify(record('b', 'share', 'd'))), false],
    ];
    for (const [what, given, removed] of rows) {
      it(`${what}: ${removed ? 'removed' : 'kept, only the record goes'}`, async () => {
        store.dirs.add('d');
        store.files.set('d/file', 1);
        store.records.volumes.set('a', JSON.stringify(record('a', 'share', 'd')));
        given(store);
        await pool.remove('a', record('a', 'share', 'd'), 'delete');
        expect(store.dirs.has('d')).to.equal(!removed);
        expect(store.records.volumes.has('a')).to.equal(false);
      });
    }

    it('archives by moving to the export root, and retains by leaving it and its claim', async () => {
      for (const key of ['a', 'r']) {
        store.dirs.add(key);
        store.claims.set(key, key);
      }
      await pool.remove('a', record('a', 'share', 'a'), 'archive');
      await pool.remove('r', record('r', 'share', 'r'), 'retain');
      expect([...store.dirs].some((d) => d.startsWith('archived-a-'))).to.equal(true);
      expect(store.dirs.has('r')).to.equal(true);
      expect(store.claims.get('r'), 'a retained directory stays claimed').to.equal('r');
      expect(store.claims.has('a')).to.equal(false);
    });
  });

  describe('copies', () => {
    const snapshot = (key: string, kind: 'share' | 'block'): SnapshotRecord => ({
      version: 1,
      name: key,
      snapshotId: `nfs:fake:/export:${kind}:${key}`,
      sourceVolumeId: 'src',
      kind,
      sizeBytes: 1 << 20,
      fsType: '',
      sourceParameters: {},
      createdAt: new Date(0).toISOString(),
      readyToUse: true,
      method: 'nfs-copy',
    });

    it('a snapshot answers not ready while its copy outlasts the wait, then ready; the source untouched', async () => {
      await pool.create('src', record('src', 'block'), 0o750);
      let open: () => void = () => undefined;
      store.gate = new Promise((resolve) => {
        open = resolve;
      });
      const made = await pool.createSnapshot('s', snapshot('s', 'block'), { key: 'src', record: record('src', 'block') });
      expect(made?.readyToUse).to.equal(false);
      expect((await pool.settleSnapshot('s', made as SnapshotRecord)).readyToUse, 'still copying after the wait').to.equal(false);
      open();
      const settled = await pool.settleSnapshot('s', made as SnapshotRecord);
      expect(settled.readyToUse).to.equal(true);
      expect(store.files.get('.berth/snapshot-data/s/disk.img')).to.equal(1 << 20);
      expect(await pool.createSnapshot('s', snapshot('s', 'block'), { key: 'src', record: record('src', 'block') }), 'taken once').to.equal(
        undefined,
      );
    });

    it('a restore answers ABORTED while its copy runs, and the retry finds the volume once it is done', async () => {
      await pool.create('src', record('src', 'share'), 0o750);
      store.files.set('src/file', 7);
      const snap = { ...snapshot('s', 'share'), subDir: 'src' };
      let open: () => void = () => undefined;
      store.gate = new Promise((resolve) => {
        open = resolve;
      });
      const restore = () => pool.create('r', record('r', 'share'), 0o750, { snapshot: 's', record: snap });
      expect(await outcome(restore())).to.equal('ABORTED');
      expect(store.records.volumes.has('r'), 'no record while copying').to.equal(false);
      expect(store.populating.has('r'), 'marked, so a restart copies again').to.equal(true);
      open();
      await new Promise((resolve) => setTimeout(resolve, 10));
      expect(await restore(), 'made: the record is there').to.equal(false);
      expect(store.files.get('r/file')).to.equal(7);
      expect(store.populating.has('r')).to.equal(false);
    });

    it('a restore into a directory berth did not make is refused, and the claim it made is undone', async () => {
      store.dirs.add('r');
      const snap = { ...snapshot('s', 'share'), subDir: 'src' };
      expect(await outcome(pool.create('r', record('r', 'share'), 0o750, { snapshot: 's', record: snap }))).to.equal('ALREADY_EXISTS');
      expect(store.claims.has('r')).to.equal(false);
    });

    it('a snapshot deleted while its copy runs stops the copy and leaves nothing', async () => {
      await pool.create('src', record('src', 'share'), 0o750);
      store.gate = new Promise(() => undefined); // never opens: the copy runs until stopped
      await pool.createSnapshot('s', snapshot('s', 'share'), { key: 'src', record: record('src', 'share') });
      store.gate = undefined;
      await pool.removeSnapshot('s');
      expect(store.records.snapshots.has('s')).to.equal(false);
      expect([...store.dirs].filter((d) => d.startsWith('.berth/snapshot-data/s'))).to.deep.equal([]);
    });
  });
});
