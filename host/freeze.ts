// Crash-consistent copies of a staged block volume: the filesystem on the
// image's loop device is frozen (fsfreeze(8): dirty data written, new
// writes held) for the instant of the copy, then thawed, always. A process
// killed while a filesystem is frozen would leave the pod's writes hanging,
// so the pool marks what it freezes and thaws it at start-up.
import { readLoopTable } from './loop-devices.js';
import { mountsOfDevice, readMountTable } from './mount-table.js';
import { CommandError, run } from './run.js';

/** One mount point per filesystem mounted from a loop device of `image` (raw block binds aside): what a freeze would freeze. */
export async function filesystemsOn(images: ReadonlySet<string>): Promise<string[]> {
  const loops = (await readLoopTable()).filter((l) => l.backingFile !== undefined && images.has(l.backingFile) && !l.backingDeleted);
  const mounts = await readMountTable();
  const targets: string[] = [];
  for (const loop of loops) {
    const fsMount = mountsOfDevice(mounts, loop.device).find((m) => m.source === loop.device);
    if (fsMount) targets.push(fsMount.target);
  }
  return targets;
}

/**
 * Freezes the filesystems staged from these images and returns the thaw.
 * Nothing staged (or a raw block volume): nothing to freeze, and the copy
 * is as consistent as the image file itself.
 */
export async function freezeImages(images: readonly string[]): Promise<() => Promise<void>> {
  const frozen: string[] = [];
  const thaw = async () => {
    for (const target of frozen.splice(0)) await run('fsfreeze', ['--unfreeze', target]).catch(() => undefined);
  };
  try {
    for (const target of await filesystemsOn(new Set(images))) {
      await run('fsfreeze', ['--freeze', target], { timeoutMs: 120_000 });
      frozen.push(target);
    }
  } catch (err) {
    await thaw();
    throw err;
  }
  return thaw;
}

/** Thaws whatever is frozen on these images (start-up, after a crash mid-snapshot). */
export async function thawImages(images: readonly string[]): Promise<void> {
  for (const target of await filesystemsOn(new Set(images))) {
    await run('fsfreeze', ['--unfreeze', target]).catch((err: unknown) => {
      // EINVAL: it was not frozen, the usual answer.
      if (!(err instanceof CommandError)) throw err;
    });
  }
}
