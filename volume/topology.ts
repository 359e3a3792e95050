// The topology key of node-local volumes: a local volume is reachable on
// the node whose pool holds it, and nowhere else.
export const TOPOLOGY_KEY = 'topology.berth.csi.dev/node';
