// The gRPC server on a unix socket: a stale socket (nothing answers on it)
// removed before binding, a live one never,
// socket mode 0600, graceful stop (in-flight calls finish, bounded), socket
// removed after. We own the listening socket and hand each connection to
// grpc-js through an AuthorityNormaliser, so clients are served whatever
// :authority they send.

import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { AuthorityNormaliser } from './authority-normaliser.js';
import type { InFlight } from './pipeline.js';

export interface Service {
  definition: grpc.ServiceDefinition;
  handlers: grpc.UntypedServiceImplementation;
}

export class UnixServer {
  private readonly server = new grpc.Server({
    // One HTTP/2 connection per kubelet call is the norm; keep them cheap.
    'grpc.max_concurrent_streams': 1000,
  });

  private listener: net.Server | undefined;

  constructor(
    readonly socketPath: string,
    private readonly inFlight: InFlight,
  ) {}

  add(service: Service): void {
    this.server.addService(service.definition, service.handlers);
  }

  async start(): Promise<void> {
    const dir = path.dirname(this.socketPath);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    await removeStaleSocket(this.socketPath);
    const injector = this.server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    this.listener = net.createServer((socket) => injector.injectConnection(new AuthorityNormaliser(socket)));
    const listener = this.listener;
    // Bound in a directory only this process may enter (mkdtemp: 0700), made 0600 there, then
    // moved into place: never reachable by others, even briefly, and the process's umask is left
    // alone (changing it across an await would give files other calls make the wrong mode).
    const privateDir = await fs.mkdtemp(path.join(dir, '.s'));
    const bound = path.join(privateDir, 's');
    try {
      await new Promise<void>((resolve, reject) => {
        listener.once('error', reject);
        listener.listen(bound, () => resolve());
      });
      await fs.chmod(bound, 0o600);
      await fs.rename(bound, this.socketPath);
    } finally {
      await fs.rm(privateDir, { recursive: true, force: true });
    }
  }

  /** Stops accepting, waits up to graceMs for calls in flight, removes the socket. */
  async stop(graceMs: number): Promise<{ forced: boolean; stuck: number }> {
    let forced = false;
    this.listener?.close();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        forced = true;
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        // tryShutdown's callback can come before handlers settle; wait for ours.
        void this.inFlight.idle().then(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    });
    await fs.rm(this.socketPath, { force: true });
    return { forced, stuck: this.inFlight.count };
  }
}

/**
 * Removes a socket left by a dead process. A socket something still answers
 * on belongs to a live process (a second driver started with the same flags,
 * say): taking it over would silently unregister that one from the kubelet,
 * so starting is refused. Anything that is not a socket is never removed.
 */
export async function removeStaleSocket(socketPath: string): Promise<void> {
  if (await refuseLiveSocket(socketPath)) await fs.rm(socketPath);
}

/**
 * Throws when `socketPath` is something other than a dead socket; returns
 * whether a dead one is there (to be removed). Called before the driver
 * touches anything, so a second driver never sweeps the first one's pool.
 */
export async function refuseLiveSocket(socketPath: string): Promise<boolean> {
  try {
    const st = await fs.lstat(socketPath);
    if (!st.isSocket()) throw new Error(`${socketPath} exists and is not a socket; refusing to remove it`);
    if (await answers(socketPath)) {
      throw new Error(`another process is serving ${socketPath} (a second driver with the same flags?); refusing to take it over`);
    }
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return false;
  }
}

/** Whether a process accepts connections on the unix socket (ECONNREFUSED: nobody does). */
function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => {
      probe.destroy();
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(false);
      else reject(err);
    });
  });
}
