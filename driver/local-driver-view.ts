// The central csi-resizer's view of the local driver. external-resizer has
// no per-node mode, so one central resizer serves the local driver too. It
// asks the driver what it can do (kubernetes-csi/external-resizer
// pkg/resizer/csi_resizer.go NewResizerFromClient: a controller service
// without EXPAND_VOLUME whose node service has EXPAND_VOLUME gets the
// "trivial resizer", which marks the PVC for node expansion) and nothing
// else; the kubelet then calls NodeExpandVolume on the volume's node, where
// the local driver grows the image and the filesystem. Every other call
// answers UNIMPLEMENTED: this process holds no local pool.
import { LOCAL_DRIVER_CONTROLLER_CAPABILITIES } from '../controller/controller-service.js';
import { NODE_CAPABILITIES } from '../node/node-service.js';

export class LocalDriverControllerView {
  async ControllerGetCapabilities() {
    // Not MODIFY_VOLUME: the resizer would send ControllerModifyVolume here, where no pool is.
    const offered = LOCAL_DRIVER_CONTROLLER_CAPABILITIES.filter((c) => c !== 'MODIFY_VOLUME');
    return { capabilities: offered.map((type) => ({ rpc: { type } })) };
  }
}

export class LocalDriverNodeView {
  async NodeGetCapabilities() {
    return { capabilities: NODE_CAPABILITIES.map((type) => ({ rpc: { type } })) };
  }
}
