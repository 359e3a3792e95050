// A real Prometheus (Debian's prometheus package) on loopback for tests:
// scrapes one target every second into a throw-away TSDB, answers PromQL on
// its HTTP API, and is stopped by PID.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

/** A TCP port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

interface QueryResult {
  status: string;
  error?: string;
  data: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

export class Prometheus {
  private child: ChildProcess | undefined;
  private log = '';

  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  /** Starts Prometheus scraping `target` (host:port) every second. */
  static async start(dir: string, target: string): Promise<Prometheus> {
    const p = new Prometheus(dir, await freePort());
    const config = [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      'scrape_configs:',
      '  - job_name: berth',
      `    static_configs: [{ targets: ['${target}'] }]`,
    ].join('\n');
    await fs.writeFile(path.join(dir, 'prometheus.yml'), `${config}\n`);
    p.child = spawn(
      'prometheus',
      [
        `--config.file=${path.join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${path.join(dir, 'tsdb')}`,
        `--web.listen-address=127.0.0.1:${p.port}`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    p.child.stderr?.on('data', (b: Buffer) => {
      p.log = (p.log + b.toString()).slice(-20_000);
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (p.child.exitCode !== null) throw new Error(`prometheus exited: ${p.log}`);
      const ready = await fetch(`http://127.0.0.1:${p.port}/-/ready`).then(
        (r) => r.ok,
        () => false,
      );
      if (ready) return p;
      if (Date.now() > deadline) throw new Error(`prometheus not ready in 30 s: ${p.log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** An instant PromQL query: each series' labels and value. */
  async query(expr: string): Promise<Array<{ metric: Record<string, string>; value: number }>> {
    const res = await fetch(`http://127.0.0.1:${this.port}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await res.json()) as QueryResult;
    if (body.status !== 'success') throw new Error(`${expr}: ${body.error ?? res.status}`);
    return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  }

  /** The value of a query that selects one series (undefined when none). */
  async value(expr: string): Promise<number | undefined> {
    const result = await this.query(expr);
    if (result.length > 1) throw new Error(`${expr} selects ${result.length} series, not one`);
    return result[0]?.value;
  }

  /**
   * Waits until `expr`'s value satisfies `ok` (a scrape after the change
   * has landed); fails with the last value seen after `timeoutMs`.
   */
  async waitFor(expr: string, ok: (v: number | undefined) => boolean, timeoutMs = 20_000): Promise<number | undefined> {
    const deadline = Date.now() + timeoutMs;
    let last: number | undefined;
    for (;;) {
      last = await this.value(expr);
      if (ok(last)) return last;
      if (Date.now() > deadline) throw new Error(`${expr}: still ${last} after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Whether the last scrape of the target succeeded (Prometheus' own `up`). */
  async up(): Promise<boolean> {
    return (await this.value('up{job="berth"}')) === 1;
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  }
}
