// What this controller is, decided once by the process (driver/main.ts) and
// read everywhere else from here, never inferred from which pools happen to
// be set:
//
//   all-in-one      one process is the controller and the one node: its local
//                   pool and NFS pools, attach to itself;
//   nfs-controller  the central controller of a cluster: NFS pools only,
//                   attach to the nodes whose CSINode lists the driver;
//   local-driver    a node's own controller for its local pool: no attach
//                   (topology pins volumes to the node) and no controller
//                   expansion (the node grows its volumes).
import type { LocalPool } from './local-pool.js';
import type { NfsPools } from './nfs-pools.js';
import type { NodeDirectory } from './nodes.js';

export type ControllerRole =
  | { kind: 'all-in-one'; nodeId: string; local: LocalPool; nfs: NfsPools; nodes: NodeDirectory }
  | { kind: 'nfs-controller'; nodeId: string; nfs: NfsPools; nodes: NodeDirectory }
  | { kind: 'local-driver'; nodeId: string; local: LocalPool };

/** The roles with an attach step (ControllerPublishVolume) and controller expansion. */
export type AttachingRole = Extract<ControllerRole, { nodes: NodeDirectory }>;

export const attaches = (role: ControllerRole): role is AttachingRole => role.kind !== 'local-driver';
