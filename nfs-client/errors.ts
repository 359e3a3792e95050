// Typed errors carrying the status code of the NFS or MOUNT protocol.

const NFS3_NAMES: Record<number, string> = {
  1: 'NFS3ERR_PERM',
  2: 'NFS3ERR_NOENT',
  5: 'NFS3ERR_IO',
  6: 'NFS3ERR_NXIO',
  13: 'NFS3ERR_ACCES',
  17: 'NFS3ERR_EXIST',
  18: 'NFS3ERR_XDEV',
  19: 'NFS3ERR_NODEV',
  20: 'NFS3ERR_NOTDIR',
  21: 'NFS3ERR_ISDIR',
  22: 'NFS3ERR_INVAL',
  27: 'NFS3ERR_FBIG',
  28: 'NFS3ERR_NOSPC',
  30: 'NFS3ERR_ROFS',
  31: 'NFS3ERR_MLINK',
  63: 'NFS3ERR_NAMETOOLONG',
  66: 'NFS3ERR_NOTEMPTY',
  69: 'NFS3ERR_DQUOT',
  70: 'NFS3ERR_STALE',
  71: 'NFS3ERR_REMOTE',
  10001: 'NFS3ERR_BADHANDLE',
  10002: 'NFS3ERR_NOT_SYNC',
  10003: 'NFS3ERR_BAD_COOKIE',
  10004: 'NFS3ERR_NOTSUPP',
  10005: 'NFS3ERR_TOOSMALL',
  10006: 'NFS3ERR_SERVERFAULT',
  10007: 'NFS3ERR_BADTYPE',
  10008: 'NFS3ERR_JUKEBOX',
};

export class Nfs3Error extends Error {
  readonly codeName: string;
  constructor(
    readonly status: number,
    readonly procedure: string,
    readonly path?: string,
  ) {
    const name = NFS3_NAMES[status] ?? `NFS3ERR_${status}`;
    super(`${procedure}${path ? ` ${path}` : ''}: ${name}`);
    this.name = 'Nfs3Error';
    this.codeName = name;
  }
}

export const NFS3ERR = {
  PERM: 1,
  NOENT: 2,
  IO: 5,
  ACCES: 13,
  EXIST: 17,
  NOTDIR: 20,
  ISDIR: 21,
  INVAL: 22,
  NOSPC: 28,
  NAMETOOLONG: 63,
  NOTEMPTY: 66,
  DQUOT: 69,
  STALE: 70,
  BADHANDLE: 10001,
  NOTSUPP: 10004,
  JUKEBOX: 10008,
} as const;

const MNT_NAMES: Record<number, string> = {
  1: 'MNT3ERR_PERM',
  2: 'MNT3ERR_NOENT',
  5: 'MNT3ERR_IO',
  13: 'MNT3ERR_ACCES',
  20: 'MNT3ERR_NOTDIR',
  22: 'MNT3ERR_INVAL',
  63: 'MNT3ERR_NAMETOOLONG',
  10004: 'MNT3ERR_NOTSUPP',
  10006: 'MNT3ERR_SERVERFAULT',
};

export class MountError extends Error {
  constructor(
    readonly status: number,
    readonly exportPath: string,
  ) {
    super(`MNT ${exportPath}: ${MNT_NAMES[status] ?? `MNT3ERR_${status}`}`);
    this.name = 'MountError';
  }
}
