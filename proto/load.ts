// Loads the wire contracts (csi.proto, pluginregistration.proto) for gRPC
// servers and clients. The message types for handlers are in volume/csi.ts.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ProtoGrpcType } from '../generated/csi.js';
import type { ProtoGrpcType as RegistrationGrpcType } from '../generated/pluginregistration.js';

/** The .proto files, beside this module's source (dist/proto/ → proto/). */
export const PROTO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../proto');

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

const loaded = new Map<string, unknown>();

function load<T>(file: string): T {
  if (!loaded.has(file)) {
    const def = protoLoader.loadSync(path.join(PROTO_DIR, file), LOADER_OPTIONS);
    loaded.set(file, grpc.loadPackageDefinition(def));
  }
  return loaded.get(file) as T;
}

export const loadCsi = () => load<ProtoGrpcType>('csi.proto');
export const loadRegistration = () => load<RegistrationGrpcType>('pluginregistration.proto');
