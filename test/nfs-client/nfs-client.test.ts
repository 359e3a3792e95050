// The userspace NFSv3 client against a real nfs-ganesha on loopback, cross-
// checked with libnfs-utils, and against a fake TCP peer that misbehaves.

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import {
  ACCESS,
  FileType,
  getPort,
  Mount3,
  MountError,
  NFS3ERR,
  Nfs3,
  Nfs3Error,
  NfsClient,
  RpcClient,
  RpcTransportError,
  StableHow,
  XdrError,
  XdrWriter,
} from '../../nfs-client/index.js';
import { Ganesha } from '../helpers/ganesha.js';

const exec = promisify(execFile);

async function rejectsWith<T extends Error>(p: Promise<unknown>, type: new (...a: never[]) => T): Promise<T> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(type);
    return err as T;
  }
  return expect.fail(`expected ${type.name}`);
}

describe('nfs-client against nfs-ganesha on loopback', function () {
  this.timeout(120_000);
  let dir: string;
  let g: Ganesha;
  let c: NfsClient;

  before(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-nfs-'));
    g = new Ganesha(dir);
    await g.start();
    c = await NfsClient.connect({ host: '127.0.0.1', exportPath: g.exportPath });
  });
  after(async () => {
    c?.close();
    await g?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  describe('PORTMAP and MOUNT', () => {
    it('finds mountd and nfsd through PORTMAP GETPORT', async () => {
      expect(await getPort('127.0.0.1', 100005, 3)).to.equal(20048);
      expect(await getPort('127.0.0.1', 100003, 3)).to.equal(2049);
    });

    it('lists the export (EXPORT), mounts it (MNT), unmounts it (UMNT)', async () => {
      const rpc = new RpcClient({ host: '127.0.0.1', port: 20048, auth: { uid: 0, gid: 0 } });
      try {
        const m = new Mount3(rpc);
        expect((await m.exports()).map((e) => e.dir)).to.include(g.exportPath);
        const { fh, authFlavors } = await m.mnt(g.exportPath);
        expect(fh.length).to.be.within(1, 64);
        expect(authFlavors).to.include(1); // AUTH_SYS
        await m.umnt(g.exportPath);
        const err = await rejectsWith(m.mnt('/not/exported'), MountError);
        expect(err.message).to.match(/MNT3ERR_(NOENT|ACCES)/);
      } finally {
        rpc.close();
      }
    });
  });

  describe('NFSv3 procedures', () => {
    it('NULL, FSINFO, FSSTAT', async () => {
      await c.nfs.null();
      const info = await c.nfs.fsinfo(c.root);
      expect(info.rtmax).to.be.greaterThan(0);
      expect(info.wtmax).to.be.greaterThan(0);
      const st = await c.fsstat();
      const local = await fs.statfs(g.exportDir);
      expect(st.totalBytes).to.equal(local.blocks * local.bsize);
      expect(st.availableBytes).to.be.greaterThan(0);
    });

    it('SYMLINK (its text set in the one call), READLINK, and EXIST for a taken name', async () => {
      await c.nfs.symlink(c.root, 'link1', 'pvc-owner-key');
      expect(await fs.readlink(path.join(g.exportDir, 'link1'))).to.equal('pvc-owner-key');
      expect(await c.readlinkAt(c.root, 'link1')).to.equal('pvc-owner-key');
      const err = await c.nfs.symlink(c.root, 'link1', 'someone-else').catch((e: unknown) => e);
      expect(err).to.be.instanceOf(Nfs3Error).with.property('status', NFS3ERR.EXIST);
      expect(await fs.readlink(path.join(g.exportDir, 'link1'))).to.equal('pvc-owner-key');
      await c.remove('link1');
    });

    it('MKDIR, LOOKUP, GETATTR, ACCESS', async () => {
      const fh = await c.mkdir('d1', 0o750);
      const { fh: looked, attributes } = await c.nfs.lookup(c.root, 'd1');
      expect(looked.equals(fh)).to.equal(true);
      expect(attributes?.type).to.equal(FileType.DIR);
      const attr = await c.nfs.getattr(fh);
      expect(attr.mode & 0o7777).to.equal(0o750);
      const granted = await c.nfs.access(fh, ACCESS.READ | ACCESS.LOOKUP | ACCESS.MODIFY);
      expect(granted & ACCESS.LOOKUP).to.equal(ACCESS.LOOKUP);
      expect((await fs.stat(path.join(g.exportDir, 'd1'))).isDirectory()).to.equal(true);
    });

    it('CREATE (guarded), WRITE unstable + COMMIT, READ, SETATTR', async () => {
      const made = await c.nfs.create(c.root, 'f1', { mode: 0o640 });
      const fh = made.fh!;
      await rejectsWith(c.nfs.create(c.root, 'f1'), Nfs3Error).then((e) => expect(e.status).to.equal(NFS3ERR.EXIST));
      const w = await c.nfs.write(fh, 0, Buffer.from('unstable bytes'), StableHow.UNSTABLE);
      expect(w.count).to.equal(14);
      const verf = await c.nfs.commit(fh);
      expect(verf.length).to.equal(8);
      const { data, eof } = await c.nfs.read(fh, 0, 100);
      expect(data.toString()).to.equal('unstable bytes');
      expect(eof).to.equal(true);
      const after = await c.nfs.setattr(fh, { mode: 0o600, size: 8 });
      expect(after?.size).to.equal(8);
      expect(await fs.readFile(path.join(g.exportDir, 'f1'), 'utf8')).to.equal('unstable');
    });

    it('RENAME, REMOVE, RMDIR, with typed errors', async () => {
      await c.writeFile('d1/a', 'x');
      await c.rename('d1/a', 'd1/b');
      expect(await c.exists('d1/a')).to.equal(false);
      expect((await c.readFile('d1/b')).toString()).to.equal('x');
      const notEmpty = await rejectsWith(c.nfs.rmdir(c.root, 'd1'), Nfs3Error);
      expect(notEmpty.status).to.equal(NFS3ERR.NOTEMPTY);
      expect(notEmpty.codeName).to.equal('NFS3ERR_NOTEMPTY');
      await c.remove('d1/b');
      await c.nfs.rmdir(c.root, 'd1');
      const missing = await rejectsWith(c.nfs.lookup(c.root, 'd1'), Nfs3Error);
      expect(missing.status).to.equal(NFS3ERR.NOENT);
    });

    it('READDIRPLUS pages through a large directory', async () => {
      await c.mkdirp('many');
      const names = Array.from({ length: 300 }, (_, i) => `entry-with-a-longish-name-${i}`);
      await Promise.all(names.map((n) => c.writeFile(`many/${n}`, n)));
      const fh = await c.resolve('many');
      const first = await c.nfs.readdirplus(fh, 0n, Buffer.alloc(8), 1024, 4096);
      expect(first.eof).to.equal(false);
      const listed = await c.list('many');
      expect(listed.map((e) => e.name).sort()).to.deep.equal([...names].sort());
      expect(listed.every((e) => e.attributes?.type === FileType.REG && e.handle)).to.equal(true);
      await c.removeTree('many');
      expect(await c.exists('many')).to.equal(false);
    });
  });

  describe('path API', () => {
    it('mkdir -p, sparse files of exact size, stat, remove a tree', async () => {
      await c.mkdirp('p/q/r');
      await c.mkdirp('p/q/r'); // again: fine
      const attr = await c.createSparse('p/q/disk.img', 5 * 1024 ** 3 + 512);
      expect(attr.size).to.equal(5 * 1024 ** 3 + 512);
      const local = await fs.stat(path.join(g.exportDir, 'p/q/disk.img'));
      expect(local.size).to.equal(5 * 1024 ** 3 + 512);
      expect(local.blocks).to.equal(0);
      await rejectsWith(c.createSparse('p/q/disk.img', 1), Nfs3Error);
      await c.truncate('p/q/disk.img', 6 * 1024 ** 3);
      expect((await c.stat('p/q/disk.img')).size).to.equal(6 * 1024 ** 3);
      await c.removeTree('p');
      await c.removeTree('p'); // missing: fine
      expect(await fs.readdir(g.exportDir)).to.not.include('p');
    });

    it('never climbs out of the export', async () => {
      for (const bad of ['..', '../etc', 'a/../../b', 'x\0y']) {
        const e = await rejectsWith(c.resolve(bad), Nfs3Error);
        expect(e.status, bad).to.equal(NFS3ERR.INVAL);
      }
    });

    it('sends AUTH_SYS uid/gid, and the server enforces permissions for them', async () => {
      await c.mkdirp('owned', 0o777);
      const user = await NfsClient.connect({ host: '127.0.0.1', exportPath: g.exportPath, auth: { uid: 1234, gid: 5678 } });
      try {
        await user.writeFile('owned/mine', 'hi');
        const st = await fs.stat(path.join(g.exportDir, 'owned/mine'));
        expect([st.uid, st.gid]).to.deep.equal([1234, 5678]);
        await c.mkdirp('root-only', 0o755);
        const denied = await rejectsWith(user.writeFile('root-only/nope', 'x'), Nfs3Error);
        expect(denied.status).to.equal(NFS3ERR.ACCES);
      } finally {
        user.close();
      }
      await c.removeTree('owned');
      await c.removeTree('root-only');
    });
  });

  describe('cross-checks with libnfs-utils', () => {
    const url = (p: string) => `nfs://127.0.0.1${g.exportPath}/${p}`;

    it('what we write, nfs-cat reads', async () => {
      const text = 'written by berth nfs-client\n'.repeat(5000);
      await c.writeFile('ours.txt', text);
      const { stdout } = await exec('nfs-cat', [url('ours.txt')], { maxBuffer: 1 << 24 });
      expect(stdout).to.equal(text);
      await c.remove('ours.txt');
    });

    it('what nfs-cp writes, we read', async () => {
      const local = path.join(dir, 'theirs.bin');
      const bytes = Buffer.alloc(300_000, 7);
      bytes.write('libnfs');
      await fs.writeFile(local, bytes);
      await exec('nfs-cp', [local, url('theirs.bin')]);
      expect((await c.readFile('theirs.bin')).equals(bytes)).to.equal(true);
      await c.remove('theirs.bin');
    });
  });

  describe('faults', () => {
    it('survives a server restart in the middle of a run: errors while down, then reconnects', async () => {
      await c.writeFile('survivor', 'before');
      await g.stopGanesha();
      const down = await rejectsWith(c.readFile('survivor'), RpcTransportError);
      expect(['closed', 'connect']).to.include(down.kind);
      await g.startGanesha();
      expect((await c.readFile('survivor')).toString()).to.equal('before');
      await c.writeFile('survivor', 'after');
      expect(await fs.readFile(path.join(g.exportDir, 'survivor'), 'utf8')).to.equal('after');
      await c.remove('survivor');
    });
  });
});

describe('nfs-client against a misbehaving peer (fake TCP server)', function () {
  this.timeout(30_000);

  /** A server that answers each record with whatever `reply` returns (given the call's xid). */
  async function fakeServer(
    reply: (xid: number, socket: net.Socket, body: Buffer) => void,
  ): Promise<{ port: number; connections: () => number; close: () => Promise<void> }> {
    let connections = 0;
    const server = net.createServer((socket) => {
      connections++;
      let buf = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        while (buf.length >= 4) {
          const size = buf.readUInt32BE(0) & 0x7fffffff;
          if (buf.length < 4 + size) return;
          const body = buf.subarray(4, 4 + size);
          buf = buf.subarray(4 + size);
          reply(body.readUInt32BE(0), socket, body);
        }
      });
      socket.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return {
      port: (server.address() as net.AddressInfo).port,
      connections: () => connections,
      close: () => new Promise((r) => server.close(() => r())),
    };
  }

  const record = (body: Buffer, mark = body.length) => {
    const m = Buffer.alloc(4);
    m.writeUInt32BE((0x80000000 | mark) >>> 0);
    return Buffer.concat([m, body]);
  };
  const acceptedHeader = (xid: number) => new XdrWriter().uint32(xid).uint32(1).uint32(0).uint32(0).uint32(0).uint32(0);

  async function withPeer(reply: (xid: number, s: net.Socket) => void, run: (rpc: RpcClient) => Promise<void>) {
    const peer = await fakeServer(reply);
    const rpc = new RpcClient({ host: '127.0.0.1', port: peer.port, timeoutMs: 1000 });
    try {
      await run(rpc);
    } finally {
      rpc.close();
      await peer.close();
    }
  }

  it('keeps 200 calls in flight on one connection and matches replies sent in reverse order by xid', async () => {
    const N = 200;
    const held: Array<{ xid: number; n: number; socket: net.Socket }> = [];
    // Answer nothing until every call is in flight, then answer backwards,
    // echoing each call's argument (the last 4 bytes of its body) times 7.
    const peer = await fakeServer((xid, socket, body) => {
      held.push({ xid, n: body.readUInt32BE(body.length - 4), socket });
      if (held.length === N)
        for (const h of [...held].reverse())
          h.socket.write(
            record(
              acceptedHeader(h.xid)
                .uint32(h.n * 7)
                .toBuffer(),
            ),
          );
    });
    const rpc = new RpcClient({ host: '127.0.0.1', port: peer.port, timeoutMs: 5000 });
    try {
      const answers = await Promise.all(
        Array.from({ length: N }, (_, n) => rpc.call(100003, 3, 0, new XdrWriter().uint32(n).toBuffer()).then((r) => r.uint32())),
      );
      expect(answers).to.deep.equal(Array.from({ length: N }, (_, n) => n * 7));
      expect(peer.connections()).to.equal(1);
    } finally {
      rpc.close();
      await peer.close();
    }
  });

  it('calls made in one turn of the event loop leave in one write to the socket', async () => {
    const peer = await fakeServer((xid, socket) => socket.write(record(acceptedHeader(xid).toBuffer())));
    const rpc = new RpcClient({ host: '127.0.0.1', port: peer.port, timeoutMs: 5000 });
    // Count what reaches the socket's writes for this peer (net.Socket's _write and _writev).
    const proto = net.Socket.prototype as unknown as Record<'_write' | '_writev', (this: net.Socket, ...a: unknown[]) => unknown>;
    const original = { _write: proto._write, _writev: proto._writev };
    let writes = 0;
    for (const name of ['_write', '_writev'] as const)
      proto[name] = function (this: net.Socket, ...a: unknown[]) {
        if (this.remotePort === peer.port) writes++;
        return original[name].apply(this, a);
      };
    try {
      await rpc.call(100003, 3, 0, Buffer.alloc(0)); // connected
      writes = 0;
      await Promise.all(Array.from({ length: 20 }, () => rpc.call(100003, 3, 0, Buffer.alloc(0))));
      expect(writes).to.equal(1);
    } finally {
      Object.assign(proto, original);
      rpc.close();
      await peer.close();
    }
  });

  it('a truncated record, then a closed connection: a typed transport error, no hang', async () => {
    await withPeer(
      (xid, s) => {
        s.write(record(acceptedHeader(xid).toBuffer(), 200).subarray(0, 20));
        s.end();
      },
      async (rpc) => {
        const e = await rejectsWith(rpc.call(100003, 3, 1, Buffer.alloc(4)), RpcTransportError);
        expect(e.kind).to.equal('closed');
      },
    );
  });

  it('a reply with a bad reply_stat: a typed protocol error', async () => {
    await withPeer(
      (xid, s) => s.write(record(new XdrWriter().uint32(xid).uint32(1).uint32(7).toBuffer())),
      async (rpc) => {
        const e = await rejectsWith(rpc.call(100003, 3, 1, Buffer.alloc(4)), RpcTransportError);
        expect(e.kind).to.equal('protocol');
      },
    );
  });

  it('an NFS result cut short: a typed XdrError, not garbage', async () => {
    await withPeer(
      (xid, s) => s.write(record(Buffer.concat([acceptedHeader(xid).uint32(0).toBuffer(), Buffer.from([1, 2, 3, 4, 5, 6, 7, 8])]))),
      async (rpc) => {
        const e = await rejectsWith(new Nfs3(rpc).getattr(Buffer.alloc(8)), XdrError);
        expect(e.message).to.match(/truncated XDR/);
      },
    );
  });

  it('an absurd fragment length: the connection is dropped with a protocol error', async () => {
    await withPeer(
      (_xid, s) => {
        const m = Buffer.alloc(4);
        m.writeUInt32BE(0x7fffffff);
        s.write(m);
      },
      async (rpc) => {
        const e = await rejectsWith(rpc.call(100003, 3, 0, Buffer.alloc(0)), RpcTransportError);
        expect(e.kind).to.equal('protocol');
      },
    );
  });

  it('silence: the per-call timeout fires', async () => {
    await withPeer(
      () => undefined,
      async (rpc) => {
        const t0 = Date.now();
        const e = await rejectsWith(rpc.call(100003, 3, 0, Buffer.alloc(0), 'NULL', 300), RpcTransportError);
        expect(e.kind).to.equal('timeout');
        expect(Date.now() - t0).to.be.lessThan(2000);
      },
    );
  });

  it('nobody listening: a typed connect error', async () => {
    const rpc = new RpcClient({ host: '127.0.0.1', port: 1, timeoutMs: 1000 });
    const e = await rejectsWith(rpc.call(100003, 3, 0, Buffer.alloc(0)), RpcTransportError);
    expect(e.kind).to.equal('connect');
    rpc.close();
  });
});
