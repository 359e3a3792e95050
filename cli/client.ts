// A CSI client over a unix socket: used by the operator CLI, benchmarks and
// tests to talk to a running driver the way the kubelet and sidecars do.
import * as grpc from '@grpc/grpc-js';
import { loadCsi } from '../proto/load.js';

export interface CsiClients {
  identity: grpc.Client;
  controller: grpc.Client;
  node: grpc.Client;
  groupController: grpc.Client;
  snapshotMetadata: grpc.Client;
  close(): void;
}

export function csiClients(socket: string, authority?: string): CsiClients {
  const csi = loadCsi().csi.v1;
  const target = `unix://${socket}`;
  const creds = grpc.credentials.createInsecure();
  // One connection of its own: grpc-js otherwise shares a subchannel among every client of a target,
  // and one left in its reconnect backoff by a restarted server would fail a new client's first call.
  const channel = new grpc.Channel(target, creds, {
    'grpc.use_local_subchannel_pool': 1,
    ...(authority === undefined ? {} : { 'grpc.default_authority': authority }),
  });
  const options = { channelOverride: channel };
  const identity = new csi.Identity(target, creds, options);
  const controller = new csi.Controller(target, creds, options);
  const node = new csi.Node(target, creds, options);
  const groupController = new csi.GroupController(target, creds, options);
  const snapshotMetadata = new csi.SnapshotMetadata(target, creds, options);
  return {
    identity,
    controller,
    node,
    groupController,
    snapshotMetadata,
    close() {
      channel.close();
    },
  };
}

type UnaryMethod = (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => unknown;

/** Calls one unary method; resolves with the response or rejects with the ServiceError. */
export function rpc<Res = Record<string, unknown>>(
  client: grpc.Client,
  method: string,
  req: object = {},
  deadlineMs = 120_000,
): Promise<Res> {
  const fn = (client as unknown as Record<string, UnaryMethod | undefined>)[method];
  if (!fn) return Promise.reject(new Error(`no method ${method}`));
  return new Promise((resolve, reject) => {
    fn.call(client, req, { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res as Res)));
  });
}

type StreamMethod = (req: object, opts: grpc.CallOptions) => grpc.ClientReadableStream<unknown>;

/** Calls one server-streaming method; resolves with every message once the stream ends. */
export function rpcStream<Res = Record<string, unknown>>(
  client: grpc.Client,
  method: string,
  req: object = {},
  deadlineMs = 120_000,
): Promise<Res[]> {
  const fn = (client as unknown as Record<string, StreamMethod | undefined>)[method];
  if (!fn) return Promise.reject(new Error(`no method ${method}`));
  return new Promise((resolve, reject) => {
    const out: Res[] = [];
    const stream = fn.call(client, req, { deadline: Date.now() + deadlineMs });
    stream.on('data', (msg: Res) => out.push(msg));
    stream.on('error', reject);
    stream.on('end', () => resolve(out));
  });
}
