// A CSI controller that does nothing: CreateVolume and DeleteVolume answer
// at once. bench/provision drives it, in its own process, with the same
// client as berth, to show what the gRPC calls alone cost on this machine.
// Usage: node dist/bench/noop-csi.js <socket path>
import * as grpc from '@grpc/grpc-js';
import { loadCsi } from '../proto/load.js';

const socket = process.argv[2];
if (!socket) throw new Error('usage: noop-csi.js <socket path>');
const server = new grpc.Server();
server.addService(loadCsi().csi.v1.Controller.service, {
  CreateVolume: (call: grpc.ServerUnaryCall<{ name: string }, unknown>, done: grpc.sendUnaryData<unknown>) =>
    done(null, { volume: { volume_id: call.request.name, capacity_bytes: '0' } }),
  DeleteVolume: (_call: grpc.ServerUnaryCall<unknown, unknown>, done: grpc.sendUnaryData<unknown>) => done(null, {}),
} as grpc.UntypedServiceImplementation);
server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) => {
  if (err) throw err;
  console.log('listening');
});
process.on('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
