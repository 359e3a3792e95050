// Paging of ListVolumes and ListSnapshots over several pools. A token is
// opaque to callers; to us it is a position: the pool's key and the last
// key listed, tagged with what is listed so one listing's token is refused
// by the other.
import { aborted, invalid } from '../volume/errors.js';
import type { Pool } from './pool.js';

export interface PageToken {
  encode(poolKey: string, dirName: string): string;
  /** The position a token holds; ABORTED for a token this driver did not issue for this listing. */
  decode(token: string): { poolKey: string; dirName: string };
}

const pageToken = (tag: string): PageToken => ({
  encode: (poolKey, dirName) => Buffer.from(`${tag}:${poolKey}\n${dirName}`).toString('base64url'),
  decode(token) {
    const text = Buffer.from(token, 'base64url').toString();
    const nl = text.indexOf('\n');
    if (!text.startsWith(`${tag}:`) || nl < 0 || Buffer.from(text).toString('base64url') !== token) {
      throw aborted(`starting_token "${token.slice(0, 200)}" is not a token this driver issued`);
    }
    return { poolKey: text.slice(tag.length + 1, nl), dirName: text.slice(nl + 1) };
  },
});

export const volumeListToken = pageToken('v1');
export const snapshotListToken = pageToken('s1');

/**
 * One page of a listing over pools in key order: the keys after the
 * token's position, `entry` of each (undefined: left out, still a position),
 * and a token for the rest when max_entries stops it. Negative max_entries
 * is INVALID_ARGUMENT, a token not of this listing ABORTED.
 */
export async function listPage<E>(
  pools: Array<[string, Pool]>,
  req: { max_entries: number; starting_token: string },
  token: PageToken,
  keysOf: (pool: Pool) => Promise<string[]>,
  entry: (pool: Pool, key: string) => Promise<E | undefined>,
): Promise<{ entries: E[]; next_token: string }> {
  if (req.max_entries < 0) throw invalid('max_entries must not be negative');
  const after = req.starting_token ? token.decode(req.starting_token) : undefined;
  const max = req.max_entries || Number.MAX_SAFE_INTEGER;
  const entries: E[] = [];
  let last: { poolKey: string; dirName: string } | undefined;
  for (const [poolKey, pool] of pools) {
    if (after && poolKey < after.poolKey) continue;
    const keys = await keysOf(pool);
    const start = after && poolKey === after.poolKey ? firstAfter(keys, after.dirName) : 0;
    for (let i = start; i < keys.length; i++) {
      if (entries.length >= max && last) return { entries, next_token: token.encode(last.poolKey, last.dirName) };
      const key = keys[i] as string;
      const e = await entry(pool, key);
      last = { poolKey, dirName: key };
      if (e) entries.push(e);
    }
  }
  return { entries, next_token: '' };
}

/** Index of the first name after `key` in a sorted list. */
function firstAfter(names: string[], key: string): number {
  let lo = 0;
  let hi = names.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((names[mid] as string) <= key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
