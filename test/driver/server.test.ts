// The driver process: socket, authority forms, shutdown, flags, logging.

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { FlagError, parseFlags } from '../../driver/flags.js';
import { Code, csiClients, expectCode, mountCap, rpc } from '../helpers/csi-client.js';
import { DriverProcess, MAIN } from '../helpers/driver-process.js';
import { rawGrpcCall } from '../helpers/raw-h2.js';

const exec = promisify(execFile);

describe('driver process', () => {
  let d: DriverProcess;
  before(async () => {
    d = await DriverProcess.start({ mode: 'all', logLevel: 'debug', extraArgs: ['--self-register=false'] });
  });
  after(async () => d.cleanup());

  describe('gRPC on a unix socket', () => {
    it('creates its socket with mode 0600', async () => {
      const st = await fs.stat(d.socket);
      expect(st.isSocket()).to.equal(true);
      expect(st.mode & 0o777).to.equal(0o600);
    });

    for (const authority of ['localhost', 'SOCKET']) {
      it(`answers a client sending :authority ${authority === 'SOCKET' ? 'the socket path' : authority}, call after call on one connection`, async () => {
        const c = csiClients(d.socket, authority === 'SOCKET' ? d.socket : authority);
        try {
          // Later calls reuse the client's HPACK table: the headers must still decode, rewritten or passed through.
          for (let i = 0; i < 20; i++) {
            const info = await rpc<{ name: string }>(c.identity, 'GetPluginInfo');
            expect(info.name).to.equal('berth.csi.dev');
          }
          const many = await Promise.all(Array.from({ length: 20 }, () => rpc<{ name: string }>(c.identity, 'GetPluginInfo')));
          expect(many.map((m) => m.name)).to.deep.equal(Array(20).fill('berth.csi.dev'));
        } finally {
          c.close();
        }
      });
    }

    for (const [label, authority] of [
      ['no :authority at all', undefined],
      ['the socket path as :authority', 'SOCKET'],
      ['localhost', 'localhost'],
    ] as const) {
      it(`answers a raw HTTP/2 request with ${label}`, async () => {
        const res = await rawGrpcCall(d.socket, '/csi.v1.Identity/GetPluginInfo', authority === 'SOCKET' ? d.socket : authority);
        expect(res.rstCode, 'stream reset').to.equal(undefined);
        expect(res.message?.toString('latin1')).to.contain('berth.csi.dev');
      });
    }
  });

  describe('start-up', () => {
    it('runs with 16 libuv threads: the entry point sizes the pool before the first module loads', async () => {
      const threads = async (pid: number) => (await fs.readdir(`/proc/${pid}/task`)).length;
      const four = await DriverProcess.start({ env: { UV_THREADPOOL_SIZE: '4' } });
      try {
        // The same process and load either way: only the pool's size differs.
        expect((await threads(d.pid)) - (await threads(four.pid))).to.equal(12);
      } finally {
        await four.cleanup();
      }
    });

    it('removes a stale socket left by a dead process', async () => {
      const dir = path.join(d.dir, 'stale');
      await fs.mkdir(dir);
      const sock = path.join(dir, 'csi.sock');
      // A process that dies by SIGKILL leaves its socket file behind.
      const script = `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.kill(process.pid, 'SIGKILL'))`;
      await exec(process.execPath, ['-e', script]).catch(() => undefined);
      expect((await fs.lstat(sock)).isSocket()).to.equal(true);
      const d2 = await DriverProcess.start({ mode: 'all', dir, extraArgs: ['--self-register=false'] });
      try {
        expect((await rpc<{ name: string }>(d2.clients.identity, 'GetPluginInfo')).name).to.equal('berth.csi.dev');
      } finally {
        await d2.stop();
      }
    });

    it('refuses to start on a live CSI socket or registration socket: the running driver keeps both and keeps serving', async () => {
      const dir = path.join(d.dir, 'live');
      await fs.mkdir(dir);
      const first = await DriverProcess.start({ mode: 'all', dir });
      const regSocket = path.join(first.kubeletDir, 'plugins_registry', 'berth.csi.dev-reg.sock');
      try {
        expect((await fs.lstat(regSocket)).isSocket()).to.equal(true);
        await fs.writeFile(path.join(first.poolDir, '.tmp', 'in-flight-write'), 'x'); // what a second instance's sweep would delete
        // The same flags again (same endpoint, same kubelet directory):
        const same = await DriverProcess.start({ mode: 'all', dir }).catch((e: Error) => e);
        expect(same).to.be.instanceOf(Error);
        expect((same as Error).message).to.contain(`another process is serving ${first.socket}`);
        // Another endpoint, but the same kubelet registration:
        const other = await DriverProcess.start({ mode: 'all', kubeletDir: first.kubeletDir }).catch((e: Error) => e);
        expect((other as Error).message).to.contain(`another process is serving ${regSocket}`);
        expect((await fs.lstat(first.socket)).isSocket()).to.equal(true);
        expect((await fs.lstat(regSocket)).isSocket()).to.equal(true);
        expect(await fs.readFile(path.join(first.poolDir, '.tmp', 'in-flight-write'), 'utf8'), 'the pool was not swept').to.equal('x');
        expect((await rpc<{ name: string }>(first.clients.identity, 'GetPluginInfo')).name).to.equal('berth.csi.dev');
      } finally {
        await first.stop();
      }
    });

    it('refuses to remove a file at the socket path that is not a socket', async () => {
      const dir = path.join(d.dir, 'notsock');
      await fs.mkdir(dir);
      await fs.writeFile(path.join(dir, 'csi.sock'), 'precious');
      let failed = false;
      await DriverProcess.start({ mode: 'all', dir, extraArgs: ['--self-register=false'] }).catch(() => (failed = true));
      expect(failed).to.equal(true);
      expect(await fs.readFile(path.join(dir, 'csi.sock'), 'utf8')).to.equal('precious');
    });

    it('prints its version and help, and exits 2 on a bad flag', async () => {
      const pkg = JSON.parse(await fs.readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
      expect((await exec(process.execPath, [MAIN, '--version'])).stdout.trim()).to.equal(`berth ${pkg.version}`);
      expect((await exec(process.execPath, [MAIN, '--help'])).stdout).to.contain('--pool-dir');
      const bad = await exec(process.execPath, [MAIN, '--colour', 'blue']).catch((e: { code: number; stderr: string }) => e);
      expect(bad).to.include({ code: 2 });
      expect((bad as { stderr: string }).stderr).to.contain('unknown flag --colour');
    });
  });

  describe('flags', () => {
    it('parses the kubernetes-csi style flags, both --flag value and --flag=value', () => {
      const f = parseFlags(
        [
          '--endpoint=unix:///csi/csi.sock',
          '--nodeid',
          'n1',
          '--mode',
          'node',
          '--drivername',
          'x.example.com',
          '--pool-dir',
          '/p',
          '--kubelet-dir=/k',
        ],
        {},
      );
      expect(f).to.include({
        endpoint: 'unix:///csi/csi.sock',
        nodeId: 'n1',
        mode: 'node',
        driverName: 'x.example.com',
        poolDir: '/p',
        kubeletDir: '/k',
      });
    });

    it('takes the endpoint from CSI_ENDPOINT when no flag is given', () => {
      expect(parseFlags([], { CSI_ENDPOINT: 'unix:///e/csi.sock' }).endpoint).to.equal('unix:///e/csi.sock');
    });

    it('rejects bad values with a readable message', () => {
      expect(() => parseFlags(['--mode', 'both'], {})).to.throw(FlagError, /--mode/);
      expect(() => parseFlags(['--endpoint', 'tcp://1.2.3.4:1'], {})).to.throw(FlagError, /unix/);
      expect(() => parseFlags(['--drivername', '-bad-'], {})).to.throw(FlagError, /plugin name/);
      expect(() => parseFlags(['--pool-dir', 'relative'], {})).to.throw(FlagError, /absolute/);
    });
  });

  describe('logging', () => {
    it('never writes secrets or mount flags, while logging each request with its id', async () => {
      const secret = 'hunter2-do-not-log';
      await rpc(d.clients.controller, 'CreateVolume', {
        name: 'pvc-secretive',
        volume_capabilities: [mountCap('SINGLE_NODE_WRITER', '', [`password=${secret}-flag`])],
        secrets: { password: secret, token: `${secret}-token` },
      });
      await expectCode(
        rpc(d.clients.controller, 'CreateVolume', {
          name: 'pvc-secretive-2',
          parameters: { oops: '1' },
          volume_capabilities: [mountCap()],
          secrets: { key: secret },
        }),
        Code.INVALID_ARGUMENT,
      );
      await new Promise((r) => setTimeout(r, 100));
      expect(d.stderr).to.contain('pvc-secretive');
      expect(d.stderr).to.not.contain(secret);
      const lines = d.stderr
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { requestId?: string; method?: string });
      const create = lines.filter((l) => l.method === 'CreateVolume');
      expect(create.length).to.be.greaterThan(1);
      expect(create.every((l) => typeof l.requestId === 'string')).to.equal(true);
    });
  });

  describe('shutdown', () => {
    it('on SIGTERM lets a call in flight finish, refuses new ones, removes the socket and exits 0', async () => {
      const g = await DriverProcess.start({ mode: 'all', extraArgs: ['--self-register=false'] });
      const { volume } = await rpc<{ volume: { volume_id: string } }>(g.clients.controller, 'CreateVolume', {
        name: 'pvc-slow',
        volume_capabilities: [mountCap()],
      });
      // A FIFO in place of the record holds ControllerGetVolume in flight until we write it.
      const record = path.join(g.poolDir, 'volumes/pvc-slow.json');
      const content = await fs.readFile(record, 'utf8');
      await fs.rm(record);
      await exec('mkfifo', [record]);
      const inflight = rpc<{ volume: { volume_id: string } }>(g.clients.controller, 'ControllerGetVolume', { volume_id: volume.volume_id });
      await new Promise((r) => setTimeout(r, 200));
      g.child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 300));
      expect(g.child.exitCode, 'still running while the call is in flight').to.equal(null);
      const late = csiClients(g.socket);
      await expectCode(rpc(late.identity, 'Probe', {}, 2000), Code.UNAVAILABLE).finally(() => late.close());
      await fs.writeFile(record, content); // unblocks the reader
      const res = await inflight;
      expect(res.volume.volume_id).to.equal(volume.volume_id);
      const exit = await g.waitExit();
      expect(exit.code).to.equal(0);
      expect(await fs.stat(g.socket).catch(() => null)).to.equal(null);
      await g.cleanup();
    });

    it('bounds the wait: a call stuck in the kernel does not keep it from exiting', async () => {
      const g = await DriverProcess.start({ mode: 'all', extraArgs: ['--self-register=false', '--shutdown-grace', '500'] });
      const { volume } = await rpc<{ volume: { volume_id: string } }>(g.clients.controller, 'CreateVolume', {
        name: 'pvc-stuck',
        volume_capabilities: [mountCap()],
      });
      const record = path.join(g.poolDir, 'volumes/pvc-stuck.json');
      await fs.rm(record);
      await exec('mkfifo', [record]);
      const stuck = rpc(g.clients.controller, 'ControllerGetVolume', { volume_id: volume.volume_id }).catch((e: { code: number }) => e);
      await new Promise((r) => setTimeout(r, 200));
      const t0 = Date.now();
      g.child.kill('SIGTERM');
      const exit = await g.waitExit();
      // Exit 0 is reserved for a clean stop; a stuck call ends in SIGKILL (see main.ts).
      expect(exit.signal).to.equal('SIGKILL');
      expect(Date.now() - t0).to.be.lessThan(5000);
      expect(await fs.stat(g.socket).catch(() => null)).to.equal(null);
      expect(((await stuck) as { code: number }).code).to.be.oneOf([Code.UNAVAILABLE, Code.CANCELLED, Code.INTERNAL]);
      await fs.rm(record); // opening it to write would block: nobody reads it now
      await g.cleanup();
    });
  });
});
