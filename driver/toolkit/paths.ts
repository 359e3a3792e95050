// Path checks shared by the node service, the local pool and the flex shim.
import fs from 'node:fs/promises';

/** Whether something exists at `p` (following symlinks); never throws. */
export async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(
    () => true,
    () => false,
  );
}
