// gRPC clients for tests, talking to a driver over its unix socket the way
// the kubelet and the sidecars do.
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { loadCsi } from '../../driver/csi.js';

export interface CsiClients {
  identity: grpc.Client;
  controller: grpc.Client;
  node: grpc.Client;
  close(): void;
}

export function csiClients(socket: string, authority?: string): CsiClients {
  const csi = loadCsi().csi.v1;
  const target = `unix://${socket}`;
  const creds = grpc.credentials.createInsecure();
  const options = authority === undefined ? {} : { 'grpc.default_authority': authority };
  const identity = new csi.Identity(target, creds, options);
  const controller = new csi.Controller(target, creds, options);
  const node = new csi.Node(target, creds, options);
  return {
    identity,
    controller,
    node,
    close() {
      identity.close();
      controller.close();
      node.close();
    },
  };
}

type UnaryMethod = (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => unknown;

/** Calls one unary method; resolves with the response or rejects with the ServiceError. */
export function rpc<Res = Record<string, unknown>>(client: grpc.Client, method: string, req: object = {}, deadlineMs = 60_000): Promise<Res> {
  const fn = (client as unknown as Record<string, UnaryMethod>)[method];
  if (!fn) throw new Error(`no method ${method}`);
  return new Promise((resolve, reject) => {
    fn.call(client, req, { deadline: Date.now() + deadlineMs }, (err, res) => (err ? reject(err) : resolve(res as Res)));
  });
}

/** Asserts that the call fails with `code`; returns the error for message checks. */
export async function expectCode(promise: Promise<unknown>, code: grpc.status): Promise<grpc.ServiceError> {
  try {
    await promise;
  } catch (err) {
    const e = err as grpc.ServiceError;
    expect(grpc.status[e.code], e.details).to.equal(grpc.status[code]);
    expect(e.details).to.not.match(/\n\s+at /); // never a stack trace
    return e;
  }
  expect.fail(`expected ${grpc.status[code]}, the call succeeded`);
}

export { grpc };
export const Code = grpc.status;

export const mountCap = (mode = 'SINGLE_NODE_WRITER', fs_type = '', mount_flags: string[] = []) => ({
  mount: { fs_type, mount_flags },
  access_mode: { mode },
});
export const blockCap = (mode = 'SINGLE_NODE_WRITER') => ({ block: {}, access_mode: { mode } });
