// The driver all-in-one (controller and node in one process) with what a
// cluster puts around it played beside it: the kubelet (registration,
// stage, publish), the external-provisioner and the external-attacher.
import { type DriverOptions, DriverProcess } from './driver-process.js';
import { KubeletHarness } from './kubelet-harness.js';
import { ExternalAttacher, ExternalProvisioner } from './sidecars.js';

export const NFS_DRIVER = 'berth.csi.dev';

export class AllInOne {
  private constructor(
    readonly driver: DriverProcess,
    readonly kubelet: KubeletHarness,
    readonly provisioner: ExternalProvisioner,
    readonly attacher: ExternalAttacher,
  ) {}

  /** Starts the driver on node-a and waits for the kubelet to register it (`registerWithinMs`: longer in the kernel VM). */
  static async start(opts: DriverOptions = {}, registerWithinMs = 10_000): Promise<AllInOne> {
    const driver = await DriverProcess.start({ mode: 'all', ...opts });
    const kubelet = new KubeletHarness(driver.kubeletDir, 'node-a');
    await kubelet.start();
    await kubelet.waitRegistered(NFS_DRIVER, registerWithinMs);
    return new AllInOne(driver, kubelet, new ExternalProvisioner(() => driver.clients), new ExternalAttacher(() => driver.clients));
  }

  /** Stops the kubelet and kills the driver (the caller checks for leaks, then calls driver.cleanup()). */
  async stop(): Promise<void> {
    await this.kubelet.stop();
    await this.driver.stop('SIGKILL');
  }
}
