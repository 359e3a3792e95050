// The CSI message and handler types (generated from proto/csi.proto) under
// short names, and the access-mode sets every service checks against.
// Types only: loading the protos for a server or client is proto/load.ts.
import type { MethodDefinition } from '@grpc/proto-loader';

export type { ControllerClient, ControllerDefinition, ControllerHandlers } from '../generated/csi/v1/Controller.js';
export type { ControllerExpandVolumeRequest__Output as ControllerExpandVolumeRequest } from '../generated/csi/v1/ControllerExpandVolumeRequest.js';
export type { ControllerGetVolumeRequest__Output as ControllerGetVolumeRequest } from '../generated/csi/v1/ControllerGetVolumeRequest.js';
export type { ControllerGetVolumeResponse } from '../generated/csi/v1/ControllerGetVolumeResponse.js';
export type { ControllerModifyVolumeRequest__Output as ControllerModifyVolumeRequest } from '../generated/csi/v1/ControllerModifyVolumeRequest.js';
export type { ControllerPublishVolumeRequest__Output as ControllerPublishVolumeRequest } from '../generated/csi/v1/ControllerPublishVolumeRequest.js';
export type { ControllerUnpublishVolumeRequest__Output as ControllerUnpublishVolumeRequest } from '../generated/csi/v1/ControllerUnpublishVolumeRequest.js';
export type { CreateSnapshotRequest__Output as CreateSnapshotRequest } from '../generated/csi/v1/CreateSnapshotRequest.js';
export type { CreateVolumeRequest__Output as CreateVolumeRequest } from '../generated/csi/v1/CreateVolumeRequest.js';
export type { CreateVolumeResponse } from '../generated/csi/v1/CreateVolumeResponse.js';
export type { DeleteSnapshotRequest__Output as DeleteSnapshotRequest } from '../generated/csi/v1/DeleteSnapshotRequest.js';
export type { DeleteVolumeRequest__Output as DeleteVolumeRequest } from '../generated/csi/v1/DeleteVolumeRequest.js';
export type { GetCapacityRequest__Output as GetCapacityRequest } from '../generated/csi/v1/GetCapacityRequest.js';
export type { GetSnapshotRequest__Output as GetSnapshotRequest } from '../generated/csi/v1/GetSnapshotRequest.js';
export type { GroupControllerDefinition } from '../generated/csi/v1/GroupController.js';
export type { IdentityClient, IdentityDefinition, IdentityHandlers } from '../generated/csi/v1/Identity.js';
export type { ListSnapshotsRequest__Output as ListSnapshotsRequest } from '../generated/csi/v1/ListSnapshotsRequest.js';
export type { ListSnapshotsResponse } from '../generated/csi/v1/ListSnapshotsResponse.js';
export type { ListVolumesRequest__Output as ListVolumesRequest } from '../generated/csi/v1/ListVolumesRequest.js';
export type { ListVolumesResponse } from '../generated/csi/v1/ListVolumesResponse.js';
export type { NodeClient, NodeDefinition, NodeHandlers } from '../generated/csi/v1/Node.js';
export type { NodeExpandVolumeRequest__Output as NodeExpandVolumeRequest } from '../generated/csi/v1/NodeExpandVolumeRequest.js';
export type { NodeGetVolumeStatsRequest__Output as NodeGetVolumeStatsRequest } from '../generated/csi/v1/NodeGetVolumeStatsRequest.js';
export type { NodeGetVolumeStatsResponse } from '../generated/csi/v1/NodeGetVolumeStatsResponse.js';
export type { NodePublishVolumeRequest__Output as NodePublishVolumeRequest } from '../generated/csi/v1/NodePublishVolumeRequest.js';
export type { NodeStageVolumeRequest__Output as NodeStageVolumeRequest } from '../generated/csi/v1/NodeStageVolumeRequest.js';
export type { NodeUnpublishVolumeRequest__Output as NodeUnpublishVolumeRequest } from '../generated/csi/v1/NodeUnpublishVolumeRequest.js';
export type { NodeUnstageVolumeRequest__Output as NodeUnstageVolumeRequest } from '../generated/csi/v1/NodeUnstageVolumeRequest.js';
export type { Snapshot } from '../generated/csi/v1/Snapshot.js';
export type { SnapshotMetadataDefinition } from '../generated/csi/v1/SnapshotMetadata.js';
export type { Topology__Output as Topology } from '../generated/csi/v1/Topology.js';
export type { ValidateVolumeCapabilitiesRequest__Output as ValidateVolumeCapabilitiesRequest } from '../generated/csi/v1/ValidateVolumeCapabilitiesRequest.js';
export type { ValidateVolumeCapabilitiesResponse } from '../generated/csi/v1/ValidateVolumeCapabilitiesResponse.js';
export type { Volume } from '../generated/csi/v1/Volume.js';
export type { VolumeCapability__Output as VolumeCapability } from '../generated/csi/v1/VolumeCapability.js';
export type { VolumeCondition } from '../generated/csi/v1/VolumeCondition.js';
export type { RegistrationDefinition, RegistrationHandlers } from '../generated/pluginregistration/Registration.js';
export type { RegistrationStatus__Output as RegistrationStatus } from '../generated/pluginregistration/RegistrationStatus.js';

export const SINGLE_NODE_MODES: ReadonlySet<string> = new Set([
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_READER_ONLY',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
]);

export const READ_ONLY_MODES: ReadonlySet<string> = new Set(['SINGLE_NODE_READER_ONLY', 'MULTI_NODE_READER_ONLY']);

// ------------------------------------------------------------- handler types
// A service object serves the RPCs of a generated service definition as
// methods of the same name (driver/pipeline.ts). These types let the
// compiler check that: a handler's request and answer, a lock key's RPC
// name, and (with StrayRpcs at the wiring) no RPC-like method that the
// definition does not have, so a misspelled RPC fails the build.

/** The RPC names of a generated service definition (not its index signature). */
export type RpcName<D> = keyof { [K in keyof D as string extends K ? never : number extends K ? never : K]: K } & string;

type Unary<Req, Res> = (req: Req) => Promise<Res>;
type ServerStreaming<Req, Res> = (req: Req, send: (msg: Res) => Promise<void>) => Promise<void>;

/** What a service object may hold for a definition: per RPC, a handler taking the decoded request. */
export type RpcsOf<D> = {
  // biome-ignore lint/suspicious/noExplicitAny: matching the generated MethodDefinition's unused parameters
  [K in RpcName<D>]?: D[K] extends MethodDefinition<any, infer Res, infer Req, any> ? Unary<Req, Res> | ServerStreaming<Req, Res> : never;
};

/** Per RPC of a definition, the key a call must hold exclusively. */
export type LockKeysOf<D> = Partial<Record<RpcName<D>, (req: never) => string | readonly string[] | undefined>>;

/** A service object's capitalised methods (RPCs, by this project's convention) that the definition lacks. */
export type StrayRpcs<S, D> = Exclude<
  // biome-ignore lint/complexity/noBannedTypes: any method
  keyof { [K in keyof S as K extends string ? (K extends Capitalize<K> ? (S[K] extends Function ? K : never) : never) : never]: K },
  RpcName<D>
>;
