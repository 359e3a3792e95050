// The berth_sys addon (native/berth_sys.c, built by `npm ci` with node-gyp):
// fallocate(2), loop devices by ioctl, mount(2) and umount2(2) on libuv's
// thread pool, without a process per call. The driver loads it at start and
// hands it to what needs it; without it (the FlexVolume shim, a single
// executable that carries no addon) the same operations run as commands.

/** The addon's calls; each rejects with an Error: message the errno's text, `code` its name, `syscall` the call. */
export interface SystemCalls {
  fallocate(fd: number, mode: number, offset: number, length: number): Promise<void>;
  /** A free loop device attached to `image` (512-byte sectors, direct I/O, read-only when asked); resolves to its path. */
  loopAttach(image: string, readOnly: boolean): Promise<string>;
  loopDetach(device: string): Promise<void>;
  /** LOOP_SET_CAPACITY: the device takes its image's current size. */
  loopSetCapacity(device: string): Promise<void>;
  /** mount(2): target first; `data` (filesystem options) is never shown in an error. */
  mount(target: string, source: string | null, fstype: string | null, data: string | null, flags: number): Promise<void>;
  umount(target: string, flags: number): Promise<void>;
}

export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;

/** mount(2) flags (linux/mount.h). */
export const MS = {
  RDONLY: 1,
  NOSUID: 2,
  NODEV: 4,
  NOEXEC: 8,
  SYNCHRONOUS: 16,
  REMOUNT: 32,
  DIRSYNC: 128,
  NOATIME: 1024,
  NODIRATIME: 2048,
  BIND: 4096,
  RELATIME: 1 << 21,
  STRICTATIME: 1 << 24,
  LAZYTIME: 1 << 25,
} as const;

/** Loads the addon from `file`; undefined, with the reason, when it cannot be loaded. */
export function loadSystemCalls(file: string): { sys?: SystemCalls; reason?: string } {
  const module = { exports: {} as Partial<SystemCalls> };
  try {
    process.dlopen(module, file);
  } catch (err) {
    return { reason: (err as Error).message };
  }
  const names: (keyof SystemCalls)[] = ['fallocate', 'loopAttach', 'loopDetach', 'loopSetCapacity', 'mount', 'umount'];
  const missing = names.filter((n) => typeof module.exports[n] !== 'function');
  if (missing.length > 0) return { reason: `${file} lacks ${missing.join(', ')}` };
  return { sys: module.exports as SystemCalls };
}
