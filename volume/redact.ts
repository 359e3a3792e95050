// The redaction every logged object passes through: `secrets` maps, any key
// containing "secret", "token" or "password", and mount flags (the spec says
// they may carry credentials) never reach a log. Kept apart from the winston
// logger so the FlexVolume shim can use it without loading winston.
const SENSITIVE_KEY = /secret|token|password|mount_flags|mountflags|mountoptions/i;

/** A deep copy of `value` with every sensitive field replaced. */
export function redact(value: unknown, depth = 0): unknown {
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (SENSITIVE_KEY.test(k) && k !== 'starting_token' && k !== 'next_token') {
      out[k] = v === undefined || v === null || (typeof v === 'object' && Object.keys(v).length === 0) ? v : '<redacted>';
    } else {
      out[k] = redact(v, depth + 1);
    }
  }
  return out;
}
