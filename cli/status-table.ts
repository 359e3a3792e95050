// `berth-ctl status` as a person reads it: pools with their capacity and
// what they promised, the NFS servers, and the node's volumes, one table each.
import type { DriverReport } from '../driver/metrics.js';

/** 1536 → "1.5 KiB": three significant digits are what a glance needs. */
export function humanBytes(n: number | undefined): string {
  if (n === undefined) return '-';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[u]}`;
}

/** Columns padded to their widest cell. */
function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

export function formatStatus(r: DriverReport): string {
  const out = [`berth ${r.version}: ${r.driver}, mode ${r.mode}, node ${r.nodeId} (read ${r.at})`, ''];
  if (r.pools.length > 0) {
    const rows = r.pools.map((p) => {
      const u = p.usage;
      if (!u) return [p.pool, p.type, `unreadable: ${p.error ?? 'unknown error'}`];
      const { share, block } = u.kinds;
      const allocated =
        share.allocatedBytes === undefined || block.allocatedBytes === undefined ? undefined : share.allocatedBytes + block.allocatedBytes;
      return [
        p.pool,
        p.type,
        humanBytes(u.totalBytes),
        humanBytes(u.freeBytes),
        humanBytes(share.provisionedBytes + block.provisionedBytes),
        humanBytes(allocated),
        `${share.volumes}/${block.volumes}`,
        String(u.snapshots.count),
      ];
    });
    out.push(...table(['POOL', 'TYPE', 'SIZE', 'FREE', 'PROMISED', 'ALLOCATED', 'SHARE/BLOCK', 'SNAPSHOTS'], rows), '');
  } else out.push('no pools served here', '');
  if (r.nfsServers.length > 0) {
    const rows = r.nfsServers.map((s) => [
      s.server,
      s.reachable ? 'yes' : 'NO',
      `${(s.seconds * 1e3).toFixed(1)} ms`,
      s.reachable ? '' : (s.error ?? ''),
    ]);
    out.push(...table(['NFS SERVER', 'REACHABLE', 'PROBE', 'ERROR'], rows), '');
  }
  if (r.nodeError) out.push(`node ${r.nodeId}: not checked: ${r.nodeError}`, '');
  if (r.node) {
    const n = r.node;
    out.push(`node ${r.nodeId}: ${n.staged} staged, ${n.published} published, ${n.abnormal.length} abnormal`);
    if (n.abnormal.length > 0)
      out.push(
        ...table(
          ['ABNORMAL VOLUME', 'REASON', 'MESSAGE'],
          n.abnormal.map((a) => [a.volumeId, a.reason, a.message]),
        ),
      );
    out.push('');
  }
  return out.join('\n');
}
