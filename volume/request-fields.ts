// Field checks shared by the controller and node services (spec limits).
import { invalid, outOfRange } from './errors.js';

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds
const BANNED = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/;

export function requireString(field: string, value: string | undefined, maxBytes = 128): string {
  if (!value) throw invalid(`${field} is required`);
  if (Buffer.byteLength(value) > maxBytes) throw invalid(`${field} is longer than ${maxBytes} bytes`);
  return value;
}

export function requireName(value: string | undefined): string {
  const name = requireString('name', value);
  if (BANNED.test(name)) throw invalid('name contains control characters');
  // Invalid UTF-8 on the wire arrives decoded as U+FFFD: distinct byte
  // strings would become one name, so such names are refused.
  if (name.includes('\uFFFD')) throw invalid('name is not valid UTF-8');
  return name;
}

/** int64 fields arrive as decimal strings; sizes must fit a JS number. */
export function parseBytes(field: string, value: string | number | undefined): number {
  if (value === undefined || value === '' || value === 0 || value === '0') return 0;
  const big = BigInt(value);
  if (big < 0n) throw invalid(`${field} must not be negative`);
  if (big > BigInt(Number.MAX_SAFE_INTEGER)) throw outOfRange(`${field} (${value}) is larger than berth supports`);
  return Number(big);
}

export interface ByteRange {
  required: number;
  limit: number;
}

export function parseRange(range: { required_bytes?: string | number; limit_bytes?: string | number } | null | undefined): ByteRange {
  const required = parseBytes('capacity_range.required_bytes', range?.required_bytes);
  const limit = parseBytes('capacity_range.limit_bytes', range?.limit_bytes);
  if (limit > 0 && required > limit) throw invalid(`required_bytes (${required}) exceeds limit_bytes (${limit})`);
  return { required, limit };
}
