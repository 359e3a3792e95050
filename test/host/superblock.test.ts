// Superblocks read without a process, checked against what mkfs, tune2fs,
// debugfs, dumpe2fs and xfs_db say of the same images (root tier: the
// tools; image files, no devices or mounts).
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { crc32c, readSuperblock } from '../../host/superblock.js';
import { exec } from '../helpers/host.js';

const MiB = 2 ** 20;

describe('superblocks read from a device’s first 4 KiB', function () {
  this.timeout(60_000);
  let work: string;
  before(async () => {
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-sb-'));
  });
  after(() => fs.rm(work, { recursive: true, force: true }));

  async function image(name: string, bytes: number): Promise<string> {
    const file = path.join(work, name);
    await fs.writeFile(file, '');
    await fs.truncate(file, bytes);
    return file;
  }
  async function ext4(name: string, args: string[] = []): Promise<string> {
    const file = await image(name, 96 * MiB);
    await exec('mkfs.ext4', ['-q', '-F', ...args, file]);
    return file;
  }
  /** What dumpe2fs -h says: block count times block size. */
  async function dumpe2fsBytes(file: string): Promise<number> {
    const { stdout } = await exec('dumpe2fs', ['-h', file]);
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(stdout)?.[1]);
    return field('Block count') * field('Block size');
  }
  async function flipByte(file: string, offset: number): Promise<void> {
    const f = await fs.open(file, 'r+');
    const b = Buffer.alloc(1);
    await f.read(b, 0, 1, offset);
    b[0] = (b[0] as number) ^ 0xff;
    await f.write(b, 0, 1, offset);
    await f.close();
  }

  it('computes CRC-32C as ext4 and xfs do', () => {
    expect(crc32c(Buffer.from('123456789'))).to.equal(0xe3069283); // the standard check value
  });

  for (const [i, [what, args]] of (
    [
      ['ext4 with metadata checksums (mkfs’s default)', []],
      ['ext4 with 1 KiB blocks', ['-b', '1024']],
      ['ext4 without metadata checksums or 64-bit block numbers', ['-O', '^metadata_csum,^64bit']],
    ] as const
  ).entries())
    it(`reads ${what}: its size as dumpe2fs gives it, clean`, async () => {
      const file = await ext4(`clean-${i}.img`, [...args]);
      expect(await readSuperblock(file)).to.deep.equal({ fsType: 'ext4', bytes: await dumpe2fsBytes(file), needsCheck: false });
    });

  it('says an ext4 needs a check when it is marked with errors, until e2fsck repairs it', async () => {
    const file = await ext4('errors.img');
    await exec('tune2fs', ['-E', 'force_fsck', file]);
    expect((await readSuperblock(file))?.needsCheck).to.equal(true);
    await exec('e2fsck', ['-p', file]).catch((e: { code?: number }) => {
      if (e.code !== 1) throw e; // 1: errors corrected
    });
    expect((await readSuperblock(file))?.needsCheck).to.equal(false);
  });

  it('says an ext4 needs a check when its journal needs recovery, it has orphans or recorded errors', async () => {
    for (const [name, request] of [
      ['recover.img', 'feature needs_recovery'],
      ['orphans.img', 'ssv last_orphan 12'],
      ['errcount.img', 'ssv error_count 2'],
    ] as const) {
      const file = await ext4(name);
      await exec('debugfs', ['-w', '-R', request, file]);
      expect((await readSuperblock(file))?.needsCheck, request).to.equal(true);
    }
  });

  it('says an ext4 needs a check when its mount count or check interval has run out', async () => {
    const counted = await ext4('count.img');
    await exec('tune2fs', ['-c', '3', '-C', '3', counted]);
    expect((await readSuperblock(counted))?.needsCheck).to.equal(true);
    const dated = await ext4('interval.img');
    await exec('tune2fs', ['-i', '1d', '-T', '20200101', dated]);
    expect((await readSuperblock(dated))?.needsCheck).to.equal(true);
  });

  it('refuses an ext4 superblock whose checksum does not match', async () => {
    const file = await ext4('corrupt.img');
    await flipByte(file, 1024 + 0x78); // a byte of the volume name
    expect(await readSuperblock(file)).to.equal(undefined);
  });

  it('reads xfs: its size as xfs_db gives it, and refuses one whose checksum does not match', async () => {
    const file = await image('fs.xfs', 512 * MiB);
    await exec('mkfs.xfs', ['-q', file]);
    const { stdout } = await exec('xfs_db', ['-r', '-c', 'sb 0', '-c', 'print blocksize dblocks', file]);
    const field = (name: string) => Number(new RegExp(`^${name} = (\\d+)`, 'm').exec(stdout)?.[1]);
    expect(await readSuperblock(file)).to.deep.equal({ fsType: 'xfs', bytes: field('blocksize') * field('dblocks'), needsCheck: false });
    await flipByte(file, 0x78);
    expect(await readSuperblock(file)).to.equal(undefined);
  });

  it('finds nothing on zeros, a short device or another filesystem', async () => {
    expect(await readSuperblock(await image('zeros.img', 4 * MiB))).to.equal(undefined);
    expect(await readSuperblock(await image('short.img', 1500))).to.equal(undefined);
    const btrfs = await image('fs.btrfs', 160 * MiB);
    await exec('mkfs.btrfs', ['-q', btrfs]);
    expect(await readSuperblock(btrfs)).to.equal(undefined);
  });
});
