// A path-level NFSv3 client: connect to an export (PORTMAP → MOUNT → NFS),
// then work with paths relative to the export's root. One TCP connection to
// the NFS server, reused by every call and re-established after the server
// restarts. No CSI knowledge; no dependencies beyond Node.
import { NFS3ERR, Nfs3Error } from './errors.js';
import { MOUNT_PROG, Mount3 } from './mount3.js';
import { type DirEntryPlus, type Fattr3, type FileHandle, FileType, type FsStat, NFS_PROG, Nfs3, StableHow } from './nfs3.js';
import { getPort } from './portmap.js';
import { type AuthSys, RpcClient, type RpcClientOptions, type SourcePort } from './rpc.js';

export interface NfsClientOptions {
  host: string;
  exportPath: string;
  /** AUTH_SYS identity (default root: 0/0). */
  auth?: AuthSys;
  /** Skip PORTMAP for these when given. */
  nfsPort?: number;
  mountPort?: number;
  portmapPort?: number;
  timeoutMs?: number;
  /** Source port of the MOUNT and NFS connections (see RpcClientOptions.sourcePort). */
  sourcePort?: SourcePort;
  /** Told of every RPC once it ends (see RpcClientOptions.onReply). */
  onReply?: RpcClientOptions['onReply'];
}

export class NfsClient {
  private constructor(
    readonly opts: NfsClientOptions,
    readonly nfs: Nfs3,
    readonly root: FileHandle,
    private readonly chunk: { read: number; write: number },
  ) {}

  static async connect(opts: NfsClientOptions): Promise<NfsClient> {
    const auth = opts.auth ?? { uid: 0, gid: 0 };
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const mountPort = opts.mountPort ?? (await getPort(opts.host, MOUNT_PROG, 3, { port: opts.portmapPort, timeoutMs }));
    const { sourcePort, onReply } = opts;
    const mountRpc = new RpcClient({ host: opts.host, port: mountPort, auth, timeoutMs, sourcePort, onReply });
    let root: FileHandle;
    try {
      root = (await new Mount3(mountRpc).mnt(opts.exportPath)).fh;
    } finally {
      mountRpc.close();
    }
    const nfsPort = opts.nfsPort ?? (await getPort(opts.host, NFS_PROG, 3, { port: opts.portmapPort, timeoutMs }));
    const nfs = new Nfs3(new RpcClient({ host: opts.host, port: nfsPort, auth, timeoutMs, sourcePort, onReply }));
    const info = await nfs.fsinfo(root);
    const clamp = (n: number) => Math.max(4096, Math.min(n || 65536, 1 << 20));
    return new NfsClient(opts, nfs, root, { read: clamp(info.rtpref), write: clamp(info.wtpref) });
  }

  close(): void {
    this.nfs.rpc.close();
  }

  /** Path components relative to the export root; refuses anything that could climb out. */
  static components(p: string): string[] {
    const parts = p.split('/').filter((c) => c !== '' && c !== '.');
    for (const c of parts) {
      if (c === '..' || c.includes('\0')) throw new Nfs3Error(NFS3ERR.INVAL, 'path', JSON.stringify(p));
    }
    return parts;
  }

  /** The handle of a path (the export root for "" or "/"). */
  async resolve(p: string): Promise<FileHandle> {
    let fh = this.root;
    for (const c of NfsClient.components(p)) fh = (await this.nfs.lookup(fh, c)).fh;
    return fh;
  }

  private async parentOf(p: string): Promise<{ dir: FileHandle; name: string }> {
    const parts = NfsClient.components(p);
    const name = parts.pop();
    if (!name) throw new Nfs3Error(NFS3ERR.INVAL, 'path', 'the export root itself');
    return { dir: await this.resolve(parts.join('/')), name };
  }

  async stat(p: string): Promise<Fattr3> {
    return this.nfs.getattr(await this.resolve(p));
  }

  async exists(p: string): Promise<boolean> {
    try {
      await this.resolve(p);
      return true;
    } catch (err) {
      if (err instanceof Nfs3Error && err.status === NFS3ERR.NOENT) return false;
      throw err;
    }
  }

  /** MKDIR of the last component; NFS3ERR_EXIST when it exists. */
  async mkdir(p: string, mode = 0o755): Promise<FileHandle> {
    const { dir, name } = await this.parentOf(p);
    const res = await this.nfs.mkdir(dir, name, { mode });
    return res.fh ?? (await this.nfs.lookup(dir, name)).fh;
  }

  /** mkdir -p: every missing component, tolerating a concurrent creator. */
  async mkdirp(p: string, mode = 0o755): Promise<FileHandle> {
    let fh = this.root;
    for (const c of NfsClient.components(p)) {
      try {
        fh = (await this.nfs.lookup(fh, c)).fh;
      } catch (err) {
        if (!(err instanceof Nfs3Error && err.status === NFS3ERR.NOENT)) throw err;
        try {
          const made = await this.nfs.mkdir(fh, c, { mode });
          fh = made.fh ?? (await this.nfs.lookup(fh, c)).fh;
        } catch (e) {
          if (!(e instanceof Nfs3Error && e.status === NFS3ERR.EXIST)) throw e;
          fh = (await this.nfs.lookup(fh, c)).fh;
        }
      }
    }
    return fh;
  }

  /** Every entry of a directory (all READDIRPLUS pages), without . and .. */
  async list(p: string): Promise<DirEntryPlus[]> {
    const dir = await this.resolve(p);
    const out: DirEntryPlus[] = [];
    let cookie = 0n;
    let verifier: Buffer = Buffer.alloc(8);
    for (;;) {
      const page = await this.nfs.readdirplus(dir, cookie, verifier);
      for (const e of page.entries) if (e.name !== '.' && e.name !== '..') out.push(e);
      if (page.eof || page.entries.length === 0) return out;
      cookie = (page.entries.at(-1) as DirEntryPlus).cookie;
      verifier = page.verifier;
    }
  }

  /** rm -rf: removes a file or a directory tree; a missing path is fine. */
  async removeTree(p: string): Promise<void> {
    let parent: { dir: FileHandle; name: string };
    try {
      parent = await this.parentOf(p);
    } catch (err) {
      if (err instanceof Nfs3Error && err.status === NFS3ERR.NOENT) return;
      throw err;
    }
    await this.removeTreeAt(parent.dir, parent.name);
  }

  /** rm -rf of `name` in the directory `dir`, by handles (no path walks); missing is fine. */
  async removeTreeAt(dir: FileHandle, name: string): Promise<void> {
    let found: { fh: FileHandle; attributes?: Fattr3 };
    try {
      found = await this.nfs.lookup(dir, name);
    } catch (err) {
      if (err instanceof Nfs3Error && err.status === NFS3ERR.NOENT) return;
      throw err;
    }
    const type = (found.attributes ?? (await this.nfs.getattr(found.fh))).type;
    if (type !== FileType.DIR) return this.ignoreMissing(this.nfs.remove(dir, name));
    let cookie = 0n;
    let verifier: Buffer = Buffer.alloc(8);
    for (;;) {
      const page = await this.nfs.readdirplus(found.fh, cookie, verifier);
      for (const e of page.entries) {
        if (e.name === '.' || e.name === '..') continue;
        if (e.attributes?.type === FileType.DIR) await this.removeTreeAt(found.fh, e.name);
        else await this.ignoreMissing(this.nfs.remove(found.fh, e.name));
      }
      if (page.eof || page.entries.length === 0) break;
      cookie = (page.entries.at(-1) as DirEntryPlus).cookie;
      verifier = page.verifier;
    }
    await this.ignoreMissing(this.nfs.rmdir(dir, name));
  }

  /** Whether the server answers (NULL procedure). */
  async ping(): Promise<void> {
    await this.nfs.null();
  }

  /** The handle of `name` in `dir` (LOOKUP). */
  async lookupAt(dir: FileHandle, name: string): Promise<FileHandle> {
    return (await this.nfs.lookup(dir, name)).fh;
  }

  /** The attributes of `name` in `dir` (LOOKUP, and GETATTR when the server sent none). */
  async statAt(dir: FileHandle, name: string): Promise<Fattr3> {
    const { fh, attributes } = await this.nfs.lookup(dir, name);
    return attributes ?? this.nfs.getattr(fh);
  }

  /** MKDIR of `name` in `dir`; NFS3ERR_EXIST when it exists. */
  async mkdirAt(dir: FileHandle, name: string, mode = 0o755): Promise<FileHandle> {
    const res = await this.nfs.mkdir(dir, name, { mode });
    return res.fh ?? (await this.nfs.lookup(dir, name)).fh;
  }

  /** A symbolic link `name` in `dir` whose text is `target`, made in one call; NFS3ERR_EXIST when the name exists. */
  async symlinkAt(dir: FileHandle, name: string, target: string): Promise<void> {
    await this.nfs.symlink(dir, name, target);
  }

  /** REMOVE of the non-directory `name` in `dir`; NFS3ERR_NOENT when it is not there. */
  async removeAt(dir: FileHandle, name: string): Promise<void> {
    await this.nfs.remove(dir, name);
  }

  /** RENAME by directory handles. */
  async renameAt(fromDir: FileHandle, fromName: string, toDir: FileHandle, toName: string): Promise<void> {
    await this.nfs.rename(fromDir, fromName, toDir, toName);
  }

  /** Sets the size of `name` in `dir` (grows sparse, or truncates). */
  async setSizeAt(dir: FileHandle, name: string, size: number): Promise<void> {
    await this.nfs.setattr(await this.lookupAt(dir, name), { size });
  }

  /** Reads a small file by its directory handle and name (one LOOKUP, then READs). */
  async readFileAt(dir: FileHandle, name: string): Promise<Buffer> {
    const { fh } = await this.nfs.lookup(dir, name);
    return this.readHandle(fh);
  }

  private async ignoreMissing(op: Promise<void>): Promise<void> {
    try {
      await op;
    } catch (err) {
      if (!(err instanceof Nfs3Error && err.status === NFS3ERR.NOENT)) throw err;
    }
  }

  async remove(p: string): Promise<void> {
    const { dir, name } = await this.parentOf(p);
    await this.nfs.remove(dir, name);
  }

  async rename(from: string, to: string): Promise<void> {
    const a = await this.parentOf(from);
    const b = await this.parentOf(to);
    await this.nfs.rename(a.dir, a.name, b.dir, b.name);
  }

  async readFile(p: string): Promise<Buffer> {
    return this.readHandle(await this.resolve(p));
  }

  private async readHandle(fh: FileHandle): Promise<Buffer> {
    const parts: Buffer[] = [];
    let offset = 0;
    for (;;) {
      const { data, eof } = await this.nfs.read(fh, offset, this.chunk.read);
      parts.push(data);
      offset += data.length;
      if (eof || data.length === 0) return Buffer.concat(parts);
    }
  }

  /**
   * Writes a file durably (FILE_SYNC). `exclusive`: create it, failing with
   * NFS3ERR_EXIST when it exists; otherwise create or truncate.
   */
  async writeFile(p: string, data: Buffer | string, opts: { mode?: number; exclusive?: boolean } = {}): Promise<void> {
    const { dir, name } = await this.parentOf(p);
    await this.writeFileAt(dir, name, data, opts);
  }

  /**
   * writeFile by the directory's handle and the file's name. Short writes
   * are continued until every byte is written (FILE_SYNC). With `exclusive`,
   * an existing file is NFS3ERR_EXIST; otherwise it is truncated first.
   */
  async writeFileAt(
    dir: FileHandle,
    name: string,
    data: Buffer | string,
    opts: { mode?: number; exclusive?: boolean } = {},
  ): Promise<void> {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data;
    let fh: FileHandle;
    try {
      fh = (await this.nfs.create(dir, name, { mode: opts.mode ?? 0o644, size: 0 })).fh ?? (await this.nfs.lookup(dir, name)).fh;
    } catch (err) {
      if (opts.exclusive || !(err instanceof Nfs3Error && err.status === NFS3ERR.EXIST)) throw err;
      fh = (await this.nfs.lookup(dir, name)).fh;
      await this.nfs.setattr(fh, { size: 0 });
    }
    for (let off = 0; off < bytes.length; ) {
      const { count } = await this.nfs.write(fh, off, bytes.subarray(off, off + this.chunk.write), StableHow.FILE_SYNC);
      if (count === 0) throw new Nfs3Error(NFS3ERR.IO, 'WRITE', name);
      off += count;
    }
  }

  /** The text of the symbolic link `name` in `dir` (LOOKUP, READLINK). */
  async readlinkAt(dir: FileHandle, name: string): Promise<string> {
    return this.nfs.readlink((await this.nfs.lookup(dir, name)).fh);
  }

  /** A new sparse file of exactly `size` bytes (NFS3ERR_EXIST when it exists). */
  async createSparse(p: string, size: number, mode = 0o600): Promise<Fattr3> {
    const { dir, name } = await this.parentOf(p);
    return this.createSparseAt(dir, name, size, mode);
  }

  /** createSparse by the directory's handle and the file's name. */
  async createSparseAt(dir: FileHandle, name: string, size: number, mode = 0o600): Promise<Fattr3> {
    const made = await this.nfs.create(dir, name, { mode, size });
    const fh = made.fh ?? (await this.nfs.lookup(dir, name)).fh;
    let attrs = made.attributes ?? (await this.nfs.getattr(fh));
    if (attrs.size !== size) attrs = (await this.nfs.setattr(fh, { size })) ?? (await this.nfs.getattr(fh));
    return attrs;
  }

  /** Grows (or shrinks) a file to `size` bytes. */
  async truncate(p: string, size: number): Promise<void> {
    await this.nfs.setattr(await this.resolve(p), { size });
  }

  /**
   * Copies the regular file `src` into a new file `name` in `dir`, of the
   * same size and mode: READs `parallel` at a time, and only the chunks that
   * hold a non-zero byte are written (the new file starts sparse, so zeros
   * stay holes on the server). UNSTABLE writes, then one COMMIT; a server
   * that restarted meanwhile (its write verifier changed) makes the copy
   * start again. Replaces a file of that name (a copy left half-done).
   */
  async copyFileAt(src: FileHandle, dir: FileHandle, name: string, opts: { parallel?: number; signal?: AbortSignal } = {}) {
    const attrs = await this.nfs.getattr(src);
    let fh: FileHandle;
    try {
      fh = (await this.nfs.create(dir, name, { mode: attrs.mode & 0o7777, size: 0 })).fh ?? (await this.nfs.lookup(dir, name)).fh;
    } catch (err) {
      if (!(err instanceof Nfs3Error && err.status === NFS3ERR.EXIST)) throw err;
      fh = (await this.nfs.lookup(dir, name)).fh;
      await this.nfs.setattr(fh, { size: 0 });
    }
    await this.nfs.setattr(fh, { size: attrs.size });
    const chunk = Math.min(this.chunk.read, this.chunk.write);
    for (let attempt = 0; ; attempt++) {
      const verifiers = new Set<string>();
      let next = 0;
      let written = 0;
      const worker = async () => {
        for (;;) {
          opts.signal?.throwIfAborted();
          const offset = next;
          if (offset >= attrs.size) return;
          next += chunk;
          const { data } = await this.nfs.read(src, offset, Math.min(chunk, attrs.size - offset));
          if (isZero(data)) continue;
          for (let off = 0; off < data.length; ) {
            const w = await this.nfs.write(fh, offset + off, data.subarray(off), StableHow.UNSTABLE);
            if (w.count === 0) throw new Nfs3Error(NFS3ERR.IO, 'WRITE', name);
            if (w.committed !== StableHow.FILE_SYNC) verifiers.add(w.verifier.toString('hex'));
            off += w.count;
            written += w.count;
          }
        }
      };
      await Promise.all(Array.from({ length: opts.parallel ?? 8 }, worker));
      if (verifiers.size === 0) return { size: attrs.size, written };
      const committed = (await this.nfs.commit(fh)).toString('hex');
      if (verifiers.size === 1 && verifiers.has(committed)) return { size: attrs.size, written };
      if (attempt >= 2) throw new Nfs3Error(NFS3ERR.IO, 'COMMIT', `${name}: the server kept restarting during the copy`);
    }
  }

  /**
   * Copies the directory tree `src` into a new directory `name` in `dir`
   * (which must not exist): directories, regular files (sparse, as
   * copyFileAt), symbolic links as links (never followed), modes kept, and
   * owners kept when the server lets this identity set them. Other file
   * types (devices, sockets, fifos) are skipped.
   */
  async copyTreeAt(src: FileHandle, dir: FileHandle, name: string, opts: { parallel?: number; signal?: AbortSignal } = {}) {
    const attrs = await this.nfs.getattr(src);
    const made = await this.nfs.mkdir(dir, name, { mode: attrs.mode & 0o7777 });
    const to = made.fh ?? (await this.nfs.lookup(dir, name)).fh;
    let cookie = 0n;
    let verifier: Buffer = Buffer.alloc(8);
    for (;;) {
      const page = await this.nfs.readdirplus(src, cookie, verifier);
      for (const e of page.entries) {
        if (e.name === '.' || e.name === '..') continue;
        opts.signal?.throwIfAborted();
        const fh = e.handle ?? (await this.nfs.lookup(src, e.name)).fh;
        const a = e.attributes ?? (await this.nfs.getattr(fh));
        if (a.type === FileType.DIR) await this.copyTreeAt(fh, to, e.name, opts);
        else if (a.type === FileType.REG) await this.copyFileAt(fh, to, e.name, opts);
        else if (a.type === FileType.LNK) await this.nfs.symlink(to, e.name, await this.nfs.readlink(fh));
        else continue;
        if (a.type !== FileType.LNK)
          await this.nfs
            .lookup(to, e.name)
            .then(({ fh: copy }) => this.nfs.setattr(copy, { uid: a.uid, gid: a.gid }).catch(() => undefined));
      }
      if (page.eof || page.entries.length === 0) break;
      cookie = (page.entries.at(-1) as DirEntryPlus).cookie;
      verifier = page.verifier;
    }
    await this.nfs.setattr(to, { uid: attrs.uid, gid: attrs.gid }).catch(() => undefined);
    return to;
  }

  async fsstat(): Promise<FsStat> {
    return this.nfs.fsstat(this.root);
  }
}

/** Whether a buffer holds only zero bytes: memcmp against zeros, a chunk at a time. */
function isZero(data: Buffer): boolean {
  for (let off = 0; off < data.length; off += ZEROS.length) {
    const part = data.subarray(off, off + ZEROS.length);
    if (!part.equals(ZEROS.subarray(0, part.length))) return false;
  }
  return true;
}

const ZEROS = Buffer.alloc(1 << 20);
