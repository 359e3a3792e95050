// A fresh filesystem for one benchmark run: a sparse image formatted like
// these machines' root filesystem (ext4 without a journal), loop-mounted.
// Must run inside a private mount namespace (the bench npm scripts use
// unshare); the loop device is detached when the filesystem is unmounted.
//
// Why: on ext4 without a journal, the inode allocator passes over every
// inode freed in the last 5 s (300 s while its inode-table block is dirty),
// looking each one up (find_inode_bit -> recently_deleted). On the shared
// root filesystem, a run's creates therefore pay for the inodes that earlier
// runs and other programs freed: perf put up to 31 % of the driver's main thread
// there, and back-to-back runs of the same bench fell from 1,412 to
// 1,155 creates/s. A fresh filesystem per run measures the driver, not the
// history of the disk; the benches also print a figure on the root
// filesystem, for comparison. Before that row's runs, dirty blocks are
// written back and the 5 s waited out, so the root filesystem is as quiet as
// it can be made without waiting 300 s.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const IMAGE_BYTES = 16 * 2 ** 30; // sparse: only what is written takes space

export class FreshFilesystem {
  private constructor(
    private readonly work: string,
    /** Where the filesystem is mounted. */
    readonly mountpoint: string,
  ) {}

  static readonly description = "a fresh ext4 without a journal per run (as this machine's /), loop-mounted";

  /**
   * `bytes`: the filesystem's size (default 16 GiB, sparse); `fsType`: ext4
   * (without a journal unless `journal`, as this machine's /), xfs with reflink, or btrfs.
   */
  static async make(
    mountpoint?: string,
    opts: { bytes?: number; fsType?: 'ext4' | 'xfs' | 'btrfs'; journal?: boolean } = {},
  ): Promise<FreshFilesystem> {
    const work = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-freshfs-'));
    const image = path.join(work, 'fs.img');
    const mnt = mountpoint ?? path.join(work, 'mnt');
    await fs.mkdir(mnt, { recursive: true });
    try {
      await fs.writeFile(image, '');
      await fs.truncate(image, opts.bytes ?? IMAGE_BYTES);
      if (opts.fsType === 'xfs') await exec('mkfs.xfs', ['-q', '-m', 'reflink=1', image]);
      else if (opts.fsType === 'btrfs') await exec('mkfs.btrfs', ['-q', image]);
      else await exec('mkfs.ext4', ['-q', '-F', ...(opts.journal ? [] : ['-O', '^has_journal']), image]);
      await exec('mount', ['-o', 'loop', image, mnt]);
    } catch (err) {
      await fs.rm(work, { recursive: true, force: true });
      throw err;
    }
    return new FreshFilesystem(work, mnt);
  }

  /** Unmounts (which detaches the loop device) and removes the image. */
  async remove(): Promise<void> {
    await exec('umount', [this.mountpoint]);
    await fs.rm(this.work, { recursive: true, force: true });
  }
}

const RECENTLY_DELETED_MS = 5_000;

/**
 * Before a run: writes dirty blocks back (sync), so the previous run's
 * writeback does not land in this one; for a run on the root filesystem,
 * also waits out the allocator's 5 s window.
 */
export async function quietenFilesystems(rootRun: boolean): Promise<void> {
  await exec('sync');
  if (rootRun) await new Promise((r) => setTimeout(r, RECENTLY_DELETED_MS + 1_000));
}
