// How a local pool copies bytes: a volume's or a snapshot's, reflinked where
// the filesystem shares extents, sparse otherwise. A staged block volume
// has its filesystem frozen for the copy, so the copy is what a power cut at
// that instant would leave, with the journal clean; each freeze is marked in
// .freezing first (one mark per freeze, so a failed second freeze of a
// volume never removes the first one's), and a process killed before the
// thaw has it thawed at the next start (local-pool-recovery.ts).
//
// A freeze holds the application's writes until the thaw. A reflink takes
// an instant, whatever the size; a sparse copy (a pool without reflinks,
// such as ext4) takes as long as the bytes take to copy, about a minute for
// a GiB here. Writes are never stalled that long, and never silently: on
// such a pool a frozen copy of a staged volume is refused with
// FAILED_PRECONDITION, saying how to get one (a pool on xfs or btrfs, the
// volume unstaged, or freeze: "false" for a copy that is not frozen).
import fs from 'node:fs/promises';
import path from 'node:path';
import { type CopyMethod, copyImage, copyTree, reflinkSupported } from '../host/copy.js';
import { filesystemsOn, freezeImages } from '../host/freeze.js';
import { exists } from '../host/paths.js';
import { failedPrecondition } from '../volume/errors.js';
import type { VolumeKind } from '../volume/volume-id.js';
import type { ContentSource } from './pool.js';

export interface CopyPaths {
  /** A volume's bytes: its directory (share) or image (block). */
  volume(key: string, kind: VolumeKind): string;
  /** A snapshot's bytes. */
  snapshot(key: string, kind: VolumeKind): string;
  /** A volume's image, for freezing its staged filesystem. */
  image(key: string): string;
}

/** Between a volume's key and what makes its freeze mark unique (never in a key: see isSafeDirName). */
export const FREEZE_MARK = '@';

export class LocalCopier {
  /** How copies are made here (found by probe()). */
  method: CopyMethod = 'sparse-copy';
  private sequence = 0;

  constructor(
    private readonly paths: CopyPaths,
    private readonly freezingDir: string,
    /** fsfreeze of the filesystems staged from these images; returns the thaw (a seam for tests). */
    private readonly freezeFilesystems: (images: readonly string[]) => Promise<() => Promise<void>> = freezeImages,
  ) {}

  /** Finds whether the pool's filesystem reflinks, trying it in `scratchDir`. */
  async probe(scratchDir: string): Promise<void> {
    this.method = (await reflinkSupported(scratchDir)) ? 'reflink' : 'sparse-copy';
  }

  /** The bytes a content source names, checked to be there. */
  async sourcePath(content: ContentSource, kind: VolumeKind): Promise<string> {
    const p = 'snapshot' in content ? this.paths.snapshot(content.snapshot, kind) : this.paths.volume(content.volume, kind);
    if (!(await exists(p))) throw failedPrecondition(`the bytes of the source (${p}) are missing`);
    return p;
  }

  /** Copies a content source's bytes to `to`; a volume's block image staged here is frozen for it (unless `freeze` is false). */
  async copy(content: ContentSource, to: string, kind: VolumeKind, freeze = true): Promise<void> {
    const from = await this.sourcePath(content, kind);
    const thaw = 'volume' in content && kind === 'block' && freeze ? await this.freeze([content.volume]) : async () => undefined;
    try {
      if (kind === 'block') await copyImage(from, to, this.method);
      else await copyTree(from, to, this.method);
    } finally {
      await thaw();
    }
  }

  /** Freezes the staged filesystems of these block volumes; returns the thaw. */
  async freeze(keys: readonly string[]): Promise<() => Promise<void>> {
    const images = keys.map((k) => this.paths.image(k));
    if (this.method !== 'reflink' && (await filesystemsOn(new Set(images))).length > 0) {
      throw failedPrecondition(
        'this pool cannot copy a volume in an instant (its filesystem has no reflinks), and freezing a staged volume for the whole copy would hold its writes as long: snapshot it unstaged, set freeze: "false" in the VolumeSnapshotClass for a copy that is not frozen, or put the pool on xfs or btrfs',
      );
    }
    // Not synced: a freeze does not outlive the machine, and the page cache outlives the process.
    const markers = keys.map((k) => path.join(this.freezingDir, `${k}${FREEZE_MARK}${process.pid}-${++this.sequence}`));
    for (const m of markers) await fs.writeFile(m, '', { mode: 0o600 });
    const unmark = async () => {
      for (const m of markers) await fs.rm(m, { force: true });
    };
    try {
      const thaw = await this.freezeFilesystems(images);
      return async () => {
        await thaw();
        await unmark();
      };
    } catch (err) {
      await unmark();
      throw err;
    }
  }
}
