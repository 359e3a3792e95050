// Kubernetes-style sizes ("512Mi", "10Gi", "500M", "1024"): one parser for
// berth-ctl and the FlexVolume shim.
const UNITS: Record<string, number> = { '': 1, k: 1e3, m: 1e6, g: 1e9, t: 1e12, ki: 2 ** 10, mi: 2 ** 20, gi: 2 ** 30, ti: 2 ** 40 };

export function parseQuantity(text: string): number {
  const m = /^(\d+)([kmgt]i?)?$/i.exec(text.trim());
  if (!m) throw new Error(`size "${text}" is not like 512Mi or 10Gi`);
  return Number(m[1]) * (UNITS[(m[2] ?? '').toLowerCase()] as number);
}
