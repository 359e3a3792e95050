// A CSI controller that does nothing but answer: CreateVolume and
// DeleteVolume return at once. bench/provision drives it, in its own
// process, with the same client as berth, to show what the gRPC calls alone
// cost on this machine.
//
// With `--nfs <host> <export>` its CreateVolume makes the NFS calls that
// berth's create makes (a claim SYMLINK, the volume's MKDIR, the record's
// exclusive CREATE and FILE_SYNC WRITE) through the same nfs-client, and
// nothing else (no validation, no locks, no checks): bench/nfs runs it to
// show what any controller written this way can reach on this machine.
// DeleteVolume still answers at once (the bench's export is thrown away).
// Usage: node dist/bench/noop-csi.js <socket path> [--nfs <host> <export>]
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { type FileHandle, NfsClient } from '../nfs-client/index.js';
import { loadCsi } from '../proto/load.js';

const [socket, flag, host, exportPath] = process.argv.slice(2);
if (!socket || (flag !== undefined && (flag !== '--nfs' || !host || !exportPath)))
  throw new Error('usage: noop-csi.js <socket path> [--nfs <host> <export>]');

type Create = (name: string) => Promise<void>;

/** A create's NFS calls, in berth's order, on directories made once. */
async function nfsCreate(): Promise<Create> {
  const c = await NfsClient.connect({ host: host as string, exportPath: exportPath as string });
  const [claims, volumes, records]: FileHandle[] = await Promise.all(
    ['noop/claims', 'noop/volumes', 'noop/records'].map((d) => c.mkdirp(d, 0o700)),
  );
  const record = JSON.stringify({ version: 1, name: 'x'.repeat(40), parameters: { kind: 'share' }, attachments: {} });
  return async (name) => {
    await c.nfs.symlink(claims as FileHandle, createHash('sha256').update(name).digest('hex').slice(0, 40), name);
    await c.nfs.mkdir(volumes as FileHandle, name, { mode: 0o777 });
    await c.writeFileAt(records as FileHandle, `${name}.json`, record, { mode: 0o600, exclusive: true });
  };
}

const create: Create = flag ? await nfsCreate() : async () => undefined;
const server = new grpc.Server();
server.addService(loadCsi().csi.v1.Controller.service, {
  CreateVolume: (call: grpc.ServerUnaryCall<{ name: string }, unknown>, done: grpc.sendUnaryData<unknown>) =>
    create(call.request.name).then(
      () => done(null, { volume: { volume_id: call.request.name, capacity_bytes: '0' } }),
      (err: Error) => done({ code: grpc.status.INTERNAL, details: err.message }),
    ),
  DeleteVolume: (_call: grpc.ServerUnaryCall<unknown, unknown>, done: grpc.sendUnaryData<unknown>) => done(null, {}),
} as grpc.UntypedServiceImplementation);
server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  console.log('listening');
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
