// Whether a local volume is in use on this node, from the kernel's tables:
// a loop device on a block volume's image, a mount showing a share's
// directory (staged, or published into a pod). The local driver records no
// attachments (it has no attach step), so this is how its DeleteVolume and
// ControllerModifyVolume know; nothing is stat()ed, so a hung mount elsewhere
// cannot block the answer.
import fs from 'node:fs/promises';
import { readLoopTable } from '../host/loop-devices.js';
import { mountsShowing, readMountTable } from '../host/mount-table.js';
import { SharedRead } from '../host/shared-read.js';
import type { VolumeKind } from '../volume/volume-id.js';

export class InUseHere {
  /** Concurrent deletes share reads of the loop and mount tables (never one begun before their call). */
  private readonly loopTable = new SharedRead(() => readLoopTable());
  private readonly mountTable = new SharedRead(() => readMountTable());

  /** Why the volume whose bytes are at `data` is in use here, or undefined. */
  async of(data: string, kind: VolumeKind): Promise<string | undefined> {
    if (kind === 'share') {
      const dir = await fs.realpath(data).catch(() => undefined);
      const users = dir ? mountsShowing(await this.mountTable.get(), dir) : [];
      return users.length > 0 ? `its directory is mounted at ${users.map((m) => m.target).join(', ')}` : undefined;
    }
    const loops = (await this.loopTable.get()).filter((l) => l.backingFile === data && !l.backingDeleted).map((l) => l.device);
    return loops.length > 0 ? `${loops.join(', ')} attached to its image` : undefined;
  }
}
