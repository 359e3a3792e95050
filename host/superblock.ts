// A filesystem's superblock read from its device's first 4 KiB: what blkid,
// dumpe2fs and e2fsck -p would otherwise each start a process to find out
// on every stage. Only an intact superblock counts (its magic, a sane block
// size, and its checksum where the filesystem keeps one); anything else is
// undefined and the caller asks the tools, as before.
import fs from 'node:fs/promises';

export interface Superblock {
  fsType: 'ext4' | 'xfs';
  /** The filesystem's size: its block count times its block size. */
  bytes: number;
  /**
   * ext4: e2fsck -p would do something before a mount (an unclean or erroneous
   * state, a journal to replay, orphans, a check due by count or time).
   * Always false for xfs, which replays its log at mount.
   */
  needsCheck: boolean;
}

const READ_BYTES = 4096;

export async function readSuperblock(device: string, nowSeconds = Date.now() / 1000): Promise<Superblock | undefined> {
  const file = await fs.open(device, 'r');
  try {
    const buf = Buffer.alloc(READ_BYTES);
    const { bytesRead } = await file.read(buf, 0, READ_BYTES, 0);
    return parseSuperblock(buf.subarray(0, bytesRead), nowSeconds);
  } finally {
    await file.close();
  }
}

export function parseSuperblock(start: Buffer, nowSeconds: number): Superblock | undefined {
  return parseXfs(start) ?? parseExt4(start, nowSeconds);
}

// ext4 (fs/ext4/ext4.h, struct ext4_super_block): 1024 bytes at offset 1024, little-endian.
const EXT4_MAGIC = 0xef53;
const EXT4_VALID_FS = 0x1;
const EXT4_ERROR_FS = 0x2;
const INCOMPAT_RECOVER = 0x4;
const INCOMPAT_64BIT = 0x80;
const RO_COMPAT_METADATA_CSUM = 0x400;
const RO_COMPAT_ORPHAN_PRESENT = 0x10000;

function parseExt4(start: Buffer, now: number): Superblock | undefined {
  if (start.length < 2048) return undefined;
  const sb = start.subarray(1024, 2048);
  if (sb.readUInt16LE(0x38) !== EXT4_MAGIC) return undefined;
  const logBlockSize = sb.readUInt32LE(0x18);
  if (logBlockSize > 6) return undefined; // 1 KiB to 64 KiB
  const incompat = sb.readUInt32LE(0x60);
  const roCompat = sb.readUInt32LE(0x64);
  // The kernel's ext4_superblock_csum: crc32c seeded with ~0 over what precedes s_checksum, not inverted.
  if (roCompat & RO_COMPAT_METADATA_CSUM && ~crc32c(sb.subarray(0, 0x3fc)) >>> 0 !== sb.readUInt32LE(0x3fc)) return undefined;
  const blocksHigh = incompat & INCOMPAT_64BIT ? sb.readUInt32LE(0x150) : 0;
  const blocks = blocksHigh * 2 ** 32 + sb.readUInt32LE(0x04);
  const state = sb.readUInt16LE(0x3a);
  const mountCount = sb.readUInt16LE(0x34);
  const maxMountCount = sb.readInt16LE(0x36);
  const lastCheck = sb.readUInt32LE(0x40);
  const checkInterval = sb.readUInt32LE(0x44);
  // What e2fsck -p acts on rather than returning at once (e2fsck/unix.c, check_if_skip), and more.
  const needsCheck =
    !(state & EXT4_VALID_FS) ||
    (state & EXT4_ERROR_FS) !== 0 ||
    (incompat & INCOMPAT_RECOVER) !== 0 ||
    (roCompat & RO_COMPAT_ORPHAN_PRESENT) !== 0 ||
    sb.readUInt32LE(0xe8) !== 0 || // s_last_orphan
    sb.readUInt32LE(0x194) !== 0 || // s_error_count
    (maxMountCount > 0 && mountCount >= maxMountCount) ||
    (checkInterval > 0 && now >= lastCheck + checkInterval) ||
    lastCheck > now + 86_400; // a last check in the future: e2fsck distrusts the clock and checks
  return { fsType: 'ext4', bytes: blocks * (1024 << logBlockSize), needsCheck };
}

// xfs (fs/xfs/libxfs/xfs_format.h, struct xfs_dsb): at offset 0, big-endian.
const XFS_MAGIC = 0x58465342; // "XFSB"
const XFS_SB_CRC_OFFSET = 224;

function parseXfs(start: Buffer): Superblock | undefined {
  if (start.length < 512 || start.readUInt32BE(0) !== XFS_MAGIC) return undefined;
  const blockSize = start.readUInt32BE(4);
  const sectorSize = start.readUInt16BE(102);
  if (blockSize < 512 || blockSize > 65536 || sectorSize < 512 || sectorSize > start.length) return undefined;
  // Version 5 superblocks carry a crc32c over the sector, computed with the crc field zeroed.
  if ((start.readUInt16BE(100) & 0xf) === 5) {
    const sector = Buffer.from(start.subarray(0, sectorSize));
    const stored = sector.readUInt32LE(XFS_SB_CRC_OFFSET);
    sector.writeUInt32LE(0, XFS_SB_CRC_OFFSET);
    if (crc32c(sector) !== stored) return undefined;
  }
  const blocks = Number(start.readBigUInt64BE(8));
  return { fsType: 'xfs', bytes: blocks * blockSize, needsCheck: false };
}

/** CRC-32C (Castagnoli), as ext4 and xfs checksum their metadata. */
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) crc = (CRC32C_TABLE[(crc ^ byte) & 0xff] as number) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}
