// A stand-in for an NFS mount, for the one behaviour these machines cannot
// show with a real one (there is no kernel NFS client here): a mount whose
// file handle went stale. It is a FUSE filesystem served from this process
// over /dev/fuse, mounted with the NFS device string as its source, so the
// mount table shows what an NFS mount would. Its root answers stat with
// attributes of an empty directory, or with ESTALE once made stale.
//
// The FUSE wire format used here: requests start with fuse_in_header (len,
// opcode, unique, nodeid, ...: 40 bytes), replies with fuse_out_header (len,
// error, unique: 16 bytes). Only INIT and GETATTR get answers with content;
// everything else is refused with ENOSYS (so a STATX falls back to GETATTR),
// or with ESTALE once stale.
import { spawn } from 'node:child_process';
import fs from 'node:fs';

export const FUSE_GETATTR = 3;
const FUSE_INIT = 26;
const FUSE_STATX = 52;
const ENOSYS = 38;
const ESTALE = 116;
const S_IFDIR = 0o040000;

export class FuseStandIn {
  private stale = false;
  private readonly buf = Buffer.alloc(1 << 20); // the kernel wants room for a whole request
  /** Opcodes of the requests seen (FUSE_GETATTR: a stat of the root). */
  readonly seen: number[] = [];

  private constructor(
    private readonly fd: number,
    readonly target: string,
  ) {}

  /** Mounts the stand-in at `target` with `source` as its device string. */
  static async mount(source: string, target: string): Promise<FuseStandIn> {
    const fd = fs.openSync('/dev/fuse', 'r+');
    const s = new FuseStandIn(fd, target);
    // The kernel takes the connection from fd 3 of the mount process. -i:
    // no /sbin/mount.fuse helper (installed with fuse3, it would run the
    // source as a command).
    const child = spawn('mount', ['-i', '-t', 'fuse', '-o', 'fd=3,rootmode=40000,user_id=0,group_id=0', source, target], {
      stdio: ['ignore', 'ignore', 'pipe', fd],
    });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    if (code !== 0) {
      fs.closeSync(fd);
      throw new Error(`mounting the FUSE stand-in failed: ${stderr}`);
    }
    s.serve(); // only now: before the mount, a read fails (and would close the descriptor)
    return s;
  }

  /** From now on, stat of the root fails with ESTALE, as on an NFS mount whose export was recreated. */
  makeStale(): void {
    this.stale = true;
  }

  private reply(unique: bigint, error: number, body: Buffer = Buffer.alloc(0)): void {
    const head = Buffer.alloc(16);
    head.writeUInt32LE(16 + body.length, 0);
    head.writeInt32LE(-error, 4);
    head.writeBigUInt64LE(unique, 8);
    try {
      fs.writeSync(this.fd, Buffer.concat([head, body]));
    } catch {
      // the request was interrupted, or the filesystem is being unmounted
    }
  }

  private serve(): void {
    fs.read(this.fd, this.buf, 0, this.buf.length, null, (err) => {
      if (err) {
        fs.close(this.fd, () => undefined); // ENODEV: unmounted
        return;
      }
      const opcode = this.buf.readUInt32LE(4);
      const unique = this.buf.readBigUInt64LE(8);
      this.seen.push(opcode);
      if (opcode === FUSE_INIT) {
        const minor = this.buf.readUInt32LE(44);
        const out = Buffer.alloc(64); // fuse_init_out
        out.writeUInt32LE(7, 0); // major
        out.writeUInt32LE(Math.min(minor, 31), 4);
        out.writeUInt32LE(65536, 8); // max_readahead
        out.writeUInt16LE(1, 16); // max_background
        out.writeUInt16LE(1, 18); // congestion_threshold
        out.writeUInt32LE(65536, 20); // max_write
        out.writeUInt32LE(1, 24); // time_gran
        this.reply(unique, 0, out);
      } else if (opcode === FUSE_GETATTR && !this.stale) {
        const out = Buffer.alloc(104); // fuse_attr_out: attr_valid 0, then fuse_attr
        out.writeBigUInt64LE(1n, 16); // ino
        out.writeUInt32LE(S_IFDIR | 0o755, 76); // mode
        out.writeUInt32LE(2, 80); // nlink
        out.writeUInt32LE(4096, 96); // blksize
        this.reply(unique, 0, out);
      } else {
        this.reply(unique, opcode === FUSE_STATX || !this.stale ? ENOSYS : ESTALE);
      }
      this.serve();
    });
  }
}
