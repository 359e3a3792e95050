// The shim's log: JSON lines appended to a file (flag --log-file or env
// BERTH_FLEX_LOG), never to stdout or stderr, which belong to the reply.
// Written synchronously: the process exits right after replying.
import fs from 'node:fs';
import { redact } from '../volume/redact.js';

export class FileLog {
  constructor(private readonly file: string | undefined) {}

  write(level: 'info' | 'error', message: string, fields: Record<string, unknown> = {}): void {
    if (!this.file) return;
    const line = JSON.stringify({ timestamp: new Date().toISOString(), level, message, ...(redact(fields) as object) });
    try {
      fs.appendFileSync(this.file, `${line}\n`, { mode: 0o600 });
    } catch {
      // A log that cannot be written must not turn into output.
    }
  }
}
