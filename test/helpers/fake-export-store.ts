// An NFS export in memory, behind the interface the NFS pool decides over
// (controller/nfs-export-store.ts), so the pool's claim, adoption and copy
// decisions are tested without a server. Paths are kept as a set of
// directories and a map of files; a copy can be held back by a gate to
// play a slow server.
import path from 'node:path';
import type { ExportStore, PathStat, RecordArea } from '../../controller/nfs-export-store.js';
import { failedPrecondition } from '../../volume/errors.js';

export class FakeExportStore implements ExportStore {
  readonly where = 'fake:/export';
  readonly dirs = new Set<string>(['']);
  readonly files = new Map<string, number>();
  readonly records: Record<RecordArea, Map<string, string>> = { volumes: new Map(), snapshots: new Map() };
  readonly claims = new Map<string, string>();
  readonly populating = new Set<string>();
  /** While set, copies wait for it. */
  gate: Promise<void> | undefined;
  /** Every mutating call, as a short line. */
  readonly calls: string[] = [];

  async ping(): Promise<void> {}
  close(): void {}

  async readRecord<T>(area: RecordArea, key: string): Promise<T | undefined> {
    const text = this.records[area].get(key);
    return text ? (JSON.parse(text) as T) : undefined;
  }

  async addRecord(area: RecordArea, key: string, value: unknown): Promise<boolean> {
    if (this.records[area].has(key)) return false;
    this.calls.push(`add ${area}/${key}`);
    this.records[area].set(key, JSON.stringify(value));
    return true;
  }

  async overwriteRecord(area: RecordArea, key: string, value: unknown): Promise<void> {
    this.calls.push(`write ${area}/${key}`);
    this.records[area].set(key, JSON.stringify(value));
  }

  async replaceRecord(area: RecordArea, key: string, value: unknown): Promise<void> {
    await this.overwriteRecord(area, key, value);
  }

  async removeRecord(area: RecordArea, key: string): Promise<void> {
    this.calls.push(`remove ${area}/${key}`);
    this.records[area].delete(key);
  }

  async listRecords(area: RecordArea): Promise<string[]> {
    return [...this.records[area].keys()].sort();
  }

  async addClaim(subDir: string, key: string): Promise<boolean> {
    if (this.claims.has(subDir)) return false;
    this.calls.push(`claim ${subDir} for ${key}`);
    this.claims.set(subDir, key);
    return true;
  }

  async claimOwner(subDir: string): Promise<string | undefined> {
    return this.claims.get(subDir);
  }

  async removeClaim(subDir: string): Promise<void> {
    this.calls.push(`unclaim ${subDir}`);
    this.claims.delete(subDir);
  }

  async markPopulating(key: string): Promise<void> {
    this.populating.add(key);
  }

  async isPopulating(key: string): Promise<boolean> {
    return this.populating.has(key);
  }

  async unmarkPopulating(key: string): Promise<void> {
    this.populating.delete(key);
  }

  async makeDir(p: string): Promise<boolean> {
    for (let d = path.posix.dirname(p); d !== '.'; d = path.posix.dirname(d)) this.dirs.add(d);
    if (this.dirs.has(p) || this.files.has(p)) return false;
    this.calls.push(`mkdir ${p}`);
    this.dirs.add(p);
    return true;
  }

  async exists(p: string): Promise<boolean> {
    return this.dirs.has(p) || this.files.has(p);
  }

  async entries(p: string): Promise<string[]> {
    const under = (x: string) => path.posix.dirname(x) === p;
    return [...[...this.dirs].filter((d) => d !== '' && under(d)), ...[...this.files.keys()].filter(under)].map((x) =>
      path.posix.basename(x),
    );
  }

  async stat(p: string): Promise<PathStat> {
    if (this.dirs.has(p)) return { type: 'directory', size: 4096, used: 4096 };
    const size = this.files.get(p);
    if (size === undefined) throw failedPrecondition(`${p} does not exist`);
    return { type: 'file', size, used: 0 };
  }

  async createImage(p: string, size: number): Promise<boolean> {
    if (this.files.has(p)) return false;
    this.calls.push(`create ${p} ${size}`);
    this.files.set(p, size);
    return true;
  }

  async setSize(p: string, size: number): Promise<void> {
    this.calls.push(`truncate ${p} ${size}`);
    this.files.set(p, size);
  }

  async removeTree(p: string): Promise<void> {
    const inside = (x: string) => x === p || x.startsWith(`${p}/`);
    if ([...this.dirs, ...this.files.keys()].some(inside)) this.calls.push(`rm -r ${p}`);
    for (const d of [...this.dirs]) if (inside(d)) this.dirs.delete(d);
    for (const f of [...this.files.keys()]) if (inside(f)) this.files.delete(f);
  }

  async moveToRoot(p: string, name: string): Promise<void> {
    this.calls.push(`mv ${p} ${name}`);
    for (const d of [...this.dirs]) {
      if (d !== p && !d.startsWith(`${p}/`)) continue;
      this.dirs.delete(d);
      this.dirs.add(name + d.slice(p.length));
    }
    for (const [f, size] of [...this.files]) {
      if (!f.startsWith(`${p}/`)) continue;
      this.files.delete(f);
      this.files.set(name + f.slice(p.length), size);
    }
  }

  async copyTree(from: string, to: string, signal: AbortSignal): Promise<void> {
    await this.held(signal);
    await this.makeDir(to);
    for (const d of [...this.dirs]) if (d.startsWith(`${from}/`)) this.dirs.add(to + d.slice(from.length));
    for (const [f, size] of [...this.files]) if (f.startsWith(`${from}/`)) this.files.set(to + f.slice(from.length), size);
  }

  async copyFile(from: string, to: string, signal: AbortSignal): Promise<void> {
    await this.held(signal);
    const size = this.files.get(from);
    if (size === undefined) throw failedPrecondition(`${from} does not exist`);
    this.files.set(to, size);
  }

  /** Waits for the gate, or until the copy is stopped. */
  private async held(signal: AbortSignal): Promise<void> {
    const stopped = new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));
    await Promise.race([this.gate, stopped]);
    signal.throwIfAborted();
  }

  async capacity(): Promise<{ totalBytes: number; availableBytes: number }> {
    return { totalBytes: 1 << 40, availableBytes: 1 << 39 };
  }
}
