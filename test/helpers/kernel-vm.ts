// Where a test runs: on the test machine itself, or inside the kernel tier's
// VM (scripts/kernel-vm/run.sh, which sets BERTH_KERNEL_VM=1 in the guest).
// JavaScript under qemu's emulation runs 5 to 20 times slower, so waits that
// guard against a hang, not a measured speed, scale by SLOWDOWN there.

export const IN_KERNEL_VM = process.env.BERTH_KERNEL_VM === '1';

/** How many times longer a guard wait is in the VM. */
export const SLOWDOWN = IN_KERNEL_VM ? 8 : 1;

/**
 * Called by every kernel-tier suite first: outside the VM it fails (this
 * machine's kernel lacks what the suite tests), it never skips.
 */
export function requireKernelVm(): void {
  if (!IN_KERNEL_VM)
    throw new Error(
      'kernel-tier tests (*.kernel.test.ts) run inside the kernel tier VM: bash scripts/kernel-vm/run.sh "node node_modules/mocha/bin/mocha.js dist/test/kernel/<file>.js"',
    );
}
