// The host toolkit: no CSI types. The CSI node service and the FlexVolume
// shim reach the machine through a Host (host.ts); LinuxHost is the real one.
export * from './data-check.js';
export * from './durable.js';
export * from './filesystems.js';
export * from './format-once.js';
export * from './host.js';
export * from './linux-host.js';
export * from './loop-devices.js';
export * from './mount-table.js';
export * from './mounter.js';
export * from './paths.js';
export * from './run.js';
export * from './superblock.js';
