// The node-side toolkit: no CSI types, shared by the CSI node service and
// the FlexVolume shim.
export * from './run.js';
export * from './mount-table.js';
export * from './mounter.js';
export * from './loop-devices.js';
export * from './filesystems.js';
export * from './format-and-mount.js';
export * from './paths.js';
