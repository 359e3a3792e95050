// The request pipeline every call passes through (fast tier): handlers
// called by RPC name, errors mapped to the spec's codes without stacks, the
// per-volume lock answering ABORTED to a second caller, UNIMPLEMENTED for
// what a service does not serve, secrets kept out of the log, and calls
// counted while in flight.
import { PassThrough } from 'node:stream';
import type * as grpc from '@grpc/grpc-js';
import { expect } from 'chai';
import { KeyedLocks } from '../../driver/locks.js';
import { createLogger } from '../../driver/log.js';
import { Pipeline } from '../../driver/pipeline.js';
import { loadCsi } from '../../proto/load.js';
import { Code, notFound } from '../../volume/errors.js';

type Answer = { err: grpc.ServiceError | null; res?: unknown };

describe('request pipeline', () => {
  const definition = loadCsi().csi.v1.Controller.service;
  let log: string[];
  let pipeline: Pipeline;
  let observed: Array<[string, number]>;

  beforeEach(() => {
    log = [];
    const stream = new PassThrough();
    stream.on('data', (line: Buffer) => log.push(line.toString()));
    pipeline = new Pipeline(createLogger('debug', stream), new KeyedLocks());
    observed = [];
    pipeline.observe = (path, code) => observed.push([path, code]);
  });

  /** Calls a served method as grpc-js would, and resolves with what the callback got. */
  const call = (handlers: grpc.UntypedServiceImplementation, method: string, request: unknown) =>
    new Promise<Answer>((resolve) => {
      const handler = handlers[method] as grpc.handleUnaryCall<unknown, unknown>;
      handler({ request } as grpc.ServerUnaryCall<unknown, unknown>, (err, res) => resolve({ err: err as grpc.ServiceError | null, res }));
    });

  it('calls the method of the RPC’s name and answers what it returns', async () => {
    const handlers = pipeline.serve(definition, { GetCapacity: async () => ({ available_capacity: 7 }) });
    expect(await call(handlers, 'GetCapacity', {})).to.deep.equal({ err: null, res: { available_capacity: 7 } });
    expect(observed).to.deep.equal([['/csi.v1.Controller/GetCapacity', Code.OK]]);
  });

  it('answers UNIMPLEMENTED for an RPC the service has no method for', async () => {
    const { err } = await call(pipeline.serve(definition, {}), 'CreateSnapshot', {});
    expect(err?.code).to.equal(Code.UNIMPLEMENTED);
  });

  it('maps a CsiError to its code and message, and anything else to INTERNAL, never sending a stack', async () => {
    const handlers = pipeline.serve(definition, {
      DeleteVolume: async () => {
        throw notFound('volume v does not exist');
      },
      ListVolumes: async () => {
        throw new TypeError('x is undefined');
      },
    });
    const missing = await call(handlers, 'DeleteVolume', { volume_id: 'v' });
    expect(missing.err).to.include({ code: Code.NOT_FOUND, details: 'volume v does not exist' });
    const broken = await call(handlers, 'ListVolumes', {});
    expect(broken.err?.code).to.equal(Code.INTERNAL);
    expect(broken.err?.details).to.equal('x is undefined');
    expect(broken.err?.details).not.to.include('at ');
    expect(
      log.some((l) => l.includes('"level":"error"') && l.includes('"stack"')),
      'the stack is logged, not sent',
    ).to.equal(true);
  });

  it('answers ABORTED to a second call on a locked key, and frees the key when the first ends', async () => {
    let finish: () => void = () => undefined;
    const first = new Promise<void>((resolve) => {
      finish = resolve;
    });
    const handlers = pipeline.serve(
      definition,
      { DeleteVolume: async (req: { volume_id: string }) => (req.volume_id === 'a' ? first : Promise.resolve()).then(() => ({})) },
      { DeleteVolume: (req: { volume_id: string }) => `controller/${req.volume_id}` },
    );
    const running = call(handlers, 'DeleteVolume', { volume_id: 'a' });
    const second = await call(handlers, 'DeleteVolume', { volume_id: 'a' });
    expect(second.err?.code).to.equal(Code.ABORTED);
    expect((await call(handlers, 'DeleteVolume', { volume_id: 'b' })).err, 'another key does not wait').to.equal(null);
    expect(pipeline.inFlight.count, 'the first call is in flight').to.equal(1);
    finish();
    expect((await running).err).to.equal(null);
    expect(pipeline.inFlight.count).to.equal(0);
    expect((await call(handlers, 'DeleteVolume', { volume_id: 'a' })).err).to.equal(null);
  });

  it('logs requests with their secrets redacted', async () => {
    const handlers = pipeline.serve(definition, { CreateVolume: async () => ({ volume: null }) });
    await call(handlers, 'CreateVolume', { name: 'pvc-1', secrets: { password: 'hunter2' } });
    const text = log.join('');
    expect(text).to.include('pvc-1');
    expect(text).not.to.include('hunter2');
  });
});
