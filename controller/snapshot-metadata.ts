// The CSI SnapshotMetadata service (changed-block tracking) for block
// snapshots in a local pool, streamed:
//
// - GetMetadataAllocated: the snapshot image's data extents (VARIABLE_LENGTH).
// - GetMetadataDelta between two snapshots of one volume: on a reflink pool
//   both are clones of the volume, so unchanged ranges are the same
//   physical extents and only the two extent maps are compared
//   (VARIABLE_LENGTH; the cost follows the number of extents). Elsewhere
//   the bytes of every range either holds are compared, in fixed chunks
//   (FIXED_LENGTH).
//
// Snapshots on NFS pools answer FAILED_PRECONDITION, the spec's "changed
// block tracking is not enabled": NFSv3 shows no extents, and comparing
// whole images over the network is what a full backup costs anyway.
import fs from 'node:fs/promises';
import { allocatedRanges, changedRanges, fileExtents, merge, type Range } from '../host/extents.js';
import { failedPrecondition, invalid, notFound, outOfRange } from '../volume/errors.js';
import type { SnapshotRecord } from '../volume/record.js';
import { requireString } from '../volume/request-fields.js';
import type { PoolDirectory } from './pool-directory.js';

type MetadataType = 'FIXED_LENGTH' | 'VARIABLE_LENGTH';
interface MetadataResponse {
  block_metadata_type: MetadataType;
  volume_capacity_bytes: number;
  block_metadata: Array<{ byte_offset: number; size_bytes: number }>;
}
type Send = (msg: MetadataResponse) => Promise<void>;

const DEFAULT_MAX_RESULTS = 1024;
/** Bytes compared at a time, and the FIXED_LENGTH block size (at most; it divides the capacity). */
const COMPARE_CHUNK = 1 << 20;

export class SnapshotMetadataService {
  constructor(private readonly pools: PoolDirectory) {}

  /** A block snapshot in a local pool this driver serves, and its image. */
  private async image(field: string, id: string | undefined): Promise<{ rec: SnapshotRecord; image: string }> {
    const snapshotId = requireString(field, id);
    const found = await this.pools.findSnapshot(snapshotId);
    if (!found) throw notFound(`snapshot ${snapshotId} does not exist`);
    if (found.rec.kind !== 'block')
      throw invalid(`snapshot ${snapshotId} is of a share volume: block metadata exists for block volumes only`);
    const image = found.pool.snapshotImagePath(found.ref.dirName);
    if (!image)
      throw failedPrecondition(`changed block tracking is not enabled for NFS pools (snapshot ${snapshotId}): take a full backup`);
    return { rec: found.rec, image };
  }

  async GetMetadataAllocated(req: { snapshot_id?: string; starting_offset?: string | number; max_results?: number }, send: Send) {
    const { rec, image } = await this.image('snapshot_id', req.snapshot_id);
    const start = startingOffset(req.starting_offset, rec.sizeBytes);
    const ranges = allocatedRanges(await fileExtents(image));
    await stream(send, 'VARIABLE_LENGTH', rec.sizeBytes, ranges, start, req.max_results);
  }

  async GetMetadataDelta(
    req: { base_snapshot_id?: string; target_snapshot_id?: string; starting_offset?: string | number; max_results?: number },
    send: Send,
  ) {
    const base = await this.image('base_snapshot_id', req.base_snapshot_id);
    const target = await this.image('target_snapshot_id', req.target_snapshot_id);
    if (base.rec.sourceVolumeId !== target.rec.sourceVolumeId)
      throw invalid('base_snapshot_id and target_snapshot_id are snapshots of different volumes');
    const capacity = target.rec.sizeBytes;
    const start = startingOffset(req.starting_offset, capacity);
    const [baseExtents, targetExtents] = await Promise.all([fileExtents(base.image), fileExtents(target.image)]);
    if (base.rec.method === 'reflink' && target.rec.method === 'reflink') {
      await stream(send, 'VARIABLE_LENGTH', capacity, changedRanges(baseExtents, targetExtents), start, req.max_results);
      return;
    }
    const chunk = fixedChunk(capacity);
    const candidates = merge([...allocatedRanges(baseExtents), ...allocatedRanges(targetExtents)]);
    const differing = await compareBytes(base.image, target.image, candidates, chunk, start);
    await stream(send, 'FIXED_LENGTH', capacity, differing, start, req.max_results);
  }
}

function startingOffset(value: string | number | undefined, capacity: number): number {
  const start = Number(value ?? 0);
  if (!Number.isSafeInteger(start) || start < 0 || start > capacity)
    throw outOfRange(`starting_offset ${value} is negative or beyond the volume's ${capacity} bytes`);
  return start;
}

/** The largest power of two up to COMPARE_CHUNK that divides the capacity, so every fixed block is whole. */
function fixedChunk(capacity: number): number {
  let chunk = COMPARE_CHUNK;
  while (chunk > 512 && capacity % chunk !== 0) chunk /= 2;
  return chunk;
}

/** The fixed-size blocks within `ranges` whose bytes differ between two images. */
async function compareBytes(a: string, b: string, ranges: Range[], chunk: number, from: number): Promise<Range[]> {
  const [fa, fb] = await Promise.all([fs.open(a, 'r'), fs.open(b, 'r')]);
  const bufA = Buffer.alloc(chunk);
  const bufB = Buffer.alloc(chunk);
  const out: Range[] = [];
  try {
    let last = -1;
    for (const r of ranges) {
      const first = Math.max(Math.floor(r.offset / chunk) * chunk, Math.floor(from / chunk) * chunk);
      for (let off = first; off < r.offset + r.length; off += chunk) {
        if (off <= last) continue;
        last = off;
        const [ra, rb] = await Promise.all([fa.read(bufA, 0, chunk, off), fb.read(bufB, 0, chunk, off)]);
        if (ra.bytesRead !== rb.bytesRead || !bufA.subarray(0, ra.bytesRead).equals(bufB.subarray(0, rb.bytesRead)))
          out.push({ offset: off, length: chunk });
      }
    }
  } finally {
    await fa.close();
    await fb.close();
  }
  return out;
}

/** Sends ranges from `start` on (the first one may begin before it), at most max_results per message. */
async function stream(send: Send, type: MetadataType, capacity: number, ranges: Range[], start: number, maxResults = 0) {
  const per = maxResults > 0 ? maxResults : DEFAULT_MAX_RESULTS;
  const due = ranges.filter((r) => r.offset + r.length > start && r.offset < capacity);
  for (let i = 0; i < due.length; i += per) {
    await send({
      block_metadata_type: type,
      volume_capacity_bytes: capacity,
      block_metadata: due.slice(i, i + per).map((r) => ({ byte_offset: r.offset, size_bytes: Math.min(r.length, capacity - r.offset) })),
    });
  }
}
