// Test-side helpers around the driver's own CSI client.
import * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';

export { type CsiClients, csiClients, rpc, rpcStream } from '../../cli/client.js';

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
