// NFSv3 (RFC 1813) procedures, typed: NULL, GETATTR, SETATTR, LOOKUP,
// ACCESS, READ, WRITE, CREATE, MKDIR, REMOVE, RMDIR, RENAME, READDIRPLUS,
// FSSTAT, FSINFO, COMMIT. Any status other than NFS3_OK becomes an
// Nfs3Error carrying the code.
import { Nfs3Error } from './errors.js';
import type { RpcClient } from './rpc.js';
import { type XdrReader, XdrWriter } from './xdr.js';

export const NFS_PROG = 100003;
const NFS_VERS = 3;
const NFS3_FHSIZE = 64;
const MAX_NAME = 255;
/** Longest symbolic link text berth reads (PATH_MAX). */
const MAX_PATH = 4096;

export type FileHandle = Buffer;

export enum FileType {
  REG = 1,
  DIR = 2,
  BLK = 3,
  CHR = 4,
  LNK = 5,
  SOCK = 6,
  FIFO = 7,
}

export interface NfsTime {
  seconds: number;
  nseconds: number;
}

export interface Fattr3 {
  type: FileType;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  used: number;
  fsid: bigint;
  fileid: bigint;
  atime: NfsTime;
  mtime: NfsTime;
  ctime: NfsTime;
}

/** Attributes to set; absent fields are left unchanged. */
export interface Sattr3 {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: 'server' | NfsTime;
  mtime?: 'server' | NfsTime;
}

export enum StableHow {
  UNSTABLE = 0,
  DATA_SYNC = 1,
  FILE_SYNC = 2,
}

export const ACCESS = { READ: 0x1, LOOKUP: 0x2, MODIFY: 0x4, EXTEND: 0x8, DELETE: 0x10, EXECUTE: 0x20 } as const;

export interface DirEntryPlus {
  fileid: bigint;
  name: string;
  cookie: bigint;
  attributes?: Fattr3;
  handle?: FileHandle;
}

export interface FsStat {
  totalBytes: number;
  freeBytes: number;
  availableBytes: number;
  totalFiles: number;
  freeFiles: number;
  availableFiles: number;
}

export interface FsInfo {
  rtmax: number;
  rtpref: number;
  wtmax: number;
  wtpref: number;
  dtpref: number;
  maxFileSize: bigint;
}

function readTime(r: XdrReader): NfsTime {
  return { seconds: r.uint32(), nseconds: r.uint32() };
}

function readFattr(r: XdrReader): Fattr3 {
  const type = r.uint32() as FileType;
  const mode = r.uint32();
  const nlink = r.uint32();
  const uid = r.uint32();
  const gid = r.uint32();
  const size = r.uint64Number();
  const used = r.uint64Number();
  r.uint32(); // rdev.specdata1
  r.uint32(); // rdev.specdata2
  const fsid = r.uint64();
  const fileid = r.uint64();
  return { type, mode, nlink, uid, gid, size, used, fsid, fileid, atime: readTime(r), mtime: readTime(r), ctime: readTime(r) };
}

function readPostOpAttr(r: XdrReader): Fattr3 | undefined {
  return r.bool() ? readFattr(r) : undefined;
}

function skipWcc(r: XdrReader): Fattr3 | undefined {
  if (r.bool()) {
    r.uint64(); // size
    readTime(r); // mtime
    readTime(r); // ctime
  }
  return readPostOpAttr(r);
}

function readPostOpFh(r: XdrReader): FileHandle | undefined {
  return r.bool() ? r.opaque(NFS3_FHSIZE) : undefined;
}

function writeSattr(w: XdrWriter, a: Sattr3): XdrWriter {
  for (const v of [a.mode, a.uid, a.gid]) {
    w.bool(v !== undefined);
    if (v !== undefined) w.uint32(v);
  }
  w.bool(a.size !== undefined);
  if (a.size !== undefined) w.uint64(a.size);
  for (const t of [a.atime, a.mtime]) {
    if (t === undefined) w.uint32(0);
    else if (t === 'server') w.uint32(1);
    else w.uint32(2).uint32(t.seconds).uint32(t.nseconds);
  }
  return w;
}

function checkName(name: string): void {
  if (!name || name === '.' || name === '..' || name.includes('/') || name.includes('\0') || Buffer.byteLength(name) > MAX_NAME) {
    throw new Nfs3Error(22, 'name', JSON.stringify(name));
  }
}

const diropargs = (dir: FileHandle, name: string) => {
  checkName(name);
  return new XdrWriter().opaque(dir).string(name);
};

export class Nfs3 {
  constructor(readonly rpc: RpcClient) {}

  private async call(proc: number, name: string, args: XdrWriter | Buffer, what?: string): Promise<XdrReader> {
    const r = await this.rpc.call(NFS_PROG, NFS_VERS, proc, args instanceof XdrWriter ? args.toBuffer() : args, `NFS3 ${name}`);
    const status = r.uint32();
    if (status !== 0) throw new Nfs3Error(status, name, what);
    return r;
  }

  async null(): Promise<void> {
    await this.rpc.call(NFS_PROG, NFS_VERS, 0, Buffer.alloc(0), 'NFS3 NULL');
  }

  async getattr(fh: FileHandle): Promise<Fattr3> {
    return readFattr(await this.call(1, 'GETATTR', new XdrWriter().opaque(fh)));
  }

  async setattr(fh: FileHandle, attrs: Sattr3): Promise<Fattr3 | undefined> {
    const w = writeSattr(new XdrWriter().opaque(fh), attrs).bool(false); // no guard
    return skipWcc(await this.call(2, 'SETATTR', w));
  }

  async lookup(dir: FileHandle, name: string): Promise<{ fh: FileHandle; attributes?: Fattr3 }> {
    const r = await this.call(3, 'LOOKUP', diropargs(dir, name), name);
    const fh = r.opaque(NFS3_FHSIZE);
    return { fh, attributes: readPostOpAttr(r) };
  }

  async access(fh: FileHandle, mask: number): Promise<number> {
    const r = await this.call(4, 'ACCESS', new XdrWriter().opaque(fh).uint32(mask));
    readPostOpAttr(r);
    return r.uint32();
  }

  /** READLINK: the text of a symbolic link. */
  async readlink(fh: FileHandle): Promise<string> {
    const r = await this.call(5, 'READLINK', new XdrWriter().opaque(fh));
    readPostOpAttr(r);
    return r.string(MAX_PATH);
  }

  async read(fh: FileHandle, offset: number, count: number): Promise<{ data: Buffer; eof: boolean }> {
    const r = await this.call(6, 'READ', new XdrWriter().opaque(fh).uint64(offset).uint32(count));
    readPostOpAttr(r);
    r.uint32(); // count
    const eof = r.bool();
    return { data: r.opaqueView(count), eof };
  }

  async write(
    fh: FileHandle,
    offset: number,
    data: Buffer,
    stable = StableHow.FILE_SYNC,
  ): Promise<{ count: number; committed: StableHow; verifier: Buffer }> {
    const r = await this.call(7, 'WRITE', new XdrWriter().opaque(fh).uint64(offset).uint32(data.length).uint32(stable).opaque(data));
    skipWcc(r);
    return { count: r.uint32(), committed: r.uint32() as StableHow, verifier: r.fixed(8) };
  }

  /** CREATE, GUARDED: fails with NFS3ERR_EXIST when the name exists. */
  async create(dir: FileHandle, name: string, attrs: Sattr3 = {}): Promise<{ fh?: FileHandle; attributes?: Fattr3 }> {
    const w = writeSattr(diropargs(dir, name).uint32(1), attrs);
    const r = await this.call(8, 'CREATE', w, name);
    return { fh: readPostOpFh(r), attributes: readPostOpAttr(r) };
  }

  async mkdir(dir: FileHandle, name: string, attrs: Sattr3 = {}): Promise<{ fh?: FileHandle; attributes?: Fattr3 }> {
    const r = await this.call(9, 'MKDIR', writeSattr(diropargs(dir, name), attrs), name);
    return { fh: readPostOpFh(r), attributes: readPostOpAttr(r) };
  }

  /**
   * SYMLINK: a symbolic link whose text is `target`, made in one call, so
   * its content exists from the instant its name does (NFS3ERR_EXIST when the
   * name is taken).
   */
  async symlink(dir: FileHandle, name: string, target: string, attrs: Sattr3 = {}): Promise<{ fh?: FileHandle }> {
    const r = await this.call(10, 'SYMLINK', writeSattr(diropargs(dir, name), attrs).string(target), name);
    return { fh: readPostOpFh(r) };
  }

  async remove(dir: FileHandle, name: string): Promise<void> {
    await this.call(12, 'REMOVE', diropargs(dir, name), name);
  }

  async rmdir(dir: FileHandle, name: string): Promise<void> {
    await this.call(13, 'RMDIR', diropargs(dir, name), name);
  }

  async rename(fromDir: FileHandle, fromName: string, toDir: FileHandle, toName: string): Promise<void> {
    checkName(toName);
    await this.call(14, 'RENAME', diropargs(fromDir, fromName).opaque(toDir).string(toName), `${fromName} -> ${toName}`);
  }

  /** One READDIRPLUS page. */
  async readdirplus(dir: FileHandle, cookie = 0n, cookieVerifier: Buffer = Buffer.alloc(8), dircount = 8192, maxcount = 65536) {
    const r = await this.call(
      17,
      'READDIRPLUS',
      new XdrWriter().opaque(dir).uint64(cookie).fixed(cookieVerifier).uint32(dircount).uint32(maxcount),
    );
    readPostOpAttr(r);
    const verifier = r.fixed(8);
    const entries: DirEntryPlus[] = [];
    while (r.bool()) {
      const fileid = r.uint64();
      const name = r.string(MAX_NAME);
      const next = r.uint64();
      entries.push({ fileid, name, cookie: next, attributes: readPostOpAttr(r), handle: readPostOpFh(r) });
    }
    return { entries, eof: r.bool(), verifier };
  }

  async fsstat(fh: FileHandle): Promise<FsStat> {
    const r = await this.call(18, 'FSSTAT', new XdrWriter().opaque(fh));
    readPostOpAttr(r);
    const s = {
      totalBytes: r.uint64Number(),
      freeBytes: r.uint64Number(),
      availableBytes: r.uint64Number(),
      totalFiles: r.uint64Number(),
      freeFiles: r.uint64Number(),
      availableFiles: r.uint64Number(),
    };
    r.uint32(); // invarsec
    return s;
  }

  async fsinfo(fh: FileHandle): Promise<FsInfo> {
    const r = await this.call(19, 'FSINFO', new XdrWriter().opaque(fh));
    readPostOpAttr(r);
    const rtmax = r.uint32();
    const rtpref = r.uint32();
    r.uint32(); // rtmult
    const wtmax = r.uint32();
    const wtpref = r.uint32();
    r.uint32(); // wtmult
    const dtpref = r.uint32();
    const maxFileSize = r.uint64();
    readTime(r);
    r.uint32(); // properties
    return { rtmax, rtpref, wtmax, wtpref, dtpref, maxFileSize };
  }

  async commit(fh: FileHandle, offset = 0, count = 0): Promise<Buffer> {
    const r = await this.call(21, 'COMMIT', new XdrWriter().opaque(fh).uint64(offset).uint32(count));
    skipWcc(r);
    return r.fixed(8);
  }
}
