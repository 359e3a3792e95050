// A local pool's scratch space: unique temporary names under .tmp (where
// records and copies are made before they are committed) and the trash
// under .trash (where deleted volumes and snapshots wait to be freed). Both
// are emptied at start-up: nothing in them is ever a volume.
import fs from 'node:fs/promises';
import path from 'node:path';

export class PoolScratch {
  readonly tmpDir: string;
  readonly trashDir: string;
  private sequence = 0;
  private trash: Promise<void> = Promise.resolve();

  constructor(root: string) {
    this.tmpDir = path.join(root, '.tmp');
    this.trashDir = path.join(root, '.trash');
  }

  /** Empties both (start-up). */
  async sweep(): Promise<void> {
    for (const dir of [this.tmpDir, this.trashDir]) {
      for (const entry of await fs.readdir(dir)) await fs.rm(path.join(dir, entry), { recursive: true, force: true });
    }
  }

  /** Unique among this pool's temporary names: pid (one writer per pool) and a counter. */
  private unique(): string {
    return `${process.pid}-${(++this.sequence).toString(36)}`;
  }

  /** A new name under .tmp for `what`. */
  tmp(what: string): string {
    return path.join(this.tmpDir, `${what}.${this.unique()}`);
  }

  /** A new name under .trash for `what`. */
  doomed(what: string): string {
    return path.join(this.trashDir, `${what}.${this.unique()}`);
  }

  /** Frees what was moved to the trash, one entry at a time, so deletes never storm the disk. */
  empty(entry: string): void {
    this.trash = this.trash.then(() => fs.rm(entry, { recursive: true, force: true }).catch(() => undefined));
  }
}
