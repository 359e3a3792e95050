// The layout is the architecture: imports point one way (the process wires
// the services; services use the volume model, the host toolkit and the NFS
// client; nothing below imports what is above it), and no module imports
// itself through a cycle. Reads the TypeScript sources (fast tier).

import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** What each top-level folder may import (besides itself and generated/ types). */
const ALLOWED: Record<string, string[]> = {
  'nfs-client': [],
  host: [],
  proto: [],
  volume: [],
  controller: ['volume', 'host', 'nfs-client'],
  node: ['volume', 'host'],
  flex: ['volume', 'host'],
  driver: ['controller', 'node', 'volume', 'host', 'nfs-client', 'proto'],
  cli: ['driver', 'volume', 'proto'],
};

async function sources(): Promise<string[]> {
  const files: string[] = [];
  for (const top of Object.keys(ALLOWED)) {
    for (const entry of await fs.readdir(path.join(ROOT, top), { recursive: true })) {
      if (entry.endsWith('.ts') && !entry.endsWith('.d.ts')) files.push(path.join(top, entry));
    }
  }
  return files.sort();
}

/** Relative imports of a file (static, dynamic and type-only), as repository paths. */
async function importsOf(file: string): Promise<string[]> {
  const text = await fs.readFile(path.join(ROOT, file), 'utf8');
  const found = [...text.matchAll(/(?:from|import)\s*\(?\s*['"](\.[^'"]+)['"]/g)].map((m) => m[1] as string);
  return found.map((spec) => path.normalize(path.join(path.dirname(file), spec)).replace(/\.js$/, '.ts'));
}

describe('architecture (imports)', () => {
  let graph: Map<string, string[]>;
  before(async () => {
    graph = new Map();
    for (const file of await sources()) graph.set(file, await importsOf(file));
  });

  it('finds the sources it checks', () => {
    expect(graph.size).to.be.greaterThan(40);
    expect([...graph.keys()]).to.include.members([
      'node/node-service.ts',
      'node/volume-location.ts',
      'node/stage.ts',
      'node/publish.ts',
      'node/volume-health.ts',
      'controller/controller-service.ts',
      'controller/pool-directory.ts',
      'controller/provisioning.ts',
      'controller/publish.ts',
      'controller/snapshots.ts',
      'controller/list-pages.ts',
      'controller/nfs-export-store.ts',
      'volume/volume-context.ts',
      'volume/nfs.ts',
      'host/host.ts',
      'host/format-once.ts',
    ]);
  });

  it('points every import one way: process → services → model, toolkit, NFS client', () => {
    const wrong: string[] = [];
    for (const [file, imports] of graph) {
      const from = file.split('/')[0] as string;
      for (const target of imports) {
        const to = target.split('/')[0] as string;
        if (to === from || to === 'generated') continue;
        if (!ALLOWED[from]!.includes(to)) wrong.push(`${file} → ${target}`);
      }
    }
    expect(wrong).to.deep.equal([]);
  });

  it('has no import cycle', () => {
    const cycles: string[] = [];
    const state = new Map<string, 'visiting' | 'done'>();
    const visit = (file: string, trail: string[]) => {
      if (state.get(file) === 'done') return;
      if (state.get(file) === 'visiting') {
        cycles.push([...trail.slice(trail.indexOf(file)), file].join(' → '));
        return;
      }
      state.set(file, 'visiting');
      for (const next of graph.get(file) ?? []) if (graph.has(next)) visit(next, [...trail, file]);
      state.set(file, 'done');
    };
    for (const file of graph.keys()) visit(file, []);
    expect(cycles).to.deep.equal([]);
  });

  it('builds the image from the shipped code only: no tests or benchmarks in it', async () => {
    const build = JSON.parse(await fs.readFile(path.join(ROOT, 'tsconfig.build.json'), 'utf8')) as { include: string[] };
    for (const member of ['test', 'bench']) expect(build.include).to.not.include(member);
    expect(build.include).to.include.members(Object.keys(ALLOWED));
    const dockerfile = await fs.readFile(path.join(ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).to.contain('tsconfig.build.json');
    expect(dockerfile).to.not.match(/^COPY (test|bench)\b/m);
  });

  describe('inside the layers', () => {
    let texts: Map<string, string>;
    before(async () => {
      texts = new Map();
      for (const file of graph.keys()) texts.set(file, await fs.readFile(path.join(ROOT, file), 'utf8'));
    });
    const offenders = (test: (file: string, text: string) => boolean) => [...texts].filter(([f, t]) => test(f, t)).map(([f]) => f);

    it('keeps each file of the controller and the node to one concern: none over 460 lines', () => {
      // local-pool.ts (the volumes' create, copy and delete protocol, read as one) is the largest.
      const lines = (t: string) => t.split('\n').length;
      expect(offenders((f, t) => /^(controller|node)\//.test(f) && lines(t) > 460)).to.deep.equal([]);
    });

    it('reaches NFS from the controller only through the export store', () => {
      expect(
        offenders((f, t) => f.startsWith('controller/') && f !== 'controller/nfs-export-store.ts' && t.includes('nfs-client/')),
      ).to.deep.equal([]);
    });

    it('never downcasts a pool: the Pool interface says what callers need', () => {
      const downcast = /(instanceof|as) (LocalPool|NfsPool)\b/;
      // The registry keeps only the NFS pools it made.
      expect(offenders((f, t) => f !== 'controller/nfs-pools.ts' && downcast.test(t))).to.deep.equal([]);
    });

    it('reads the volume and publish contexts only through their codec', () => {
      const fieldRead = /(volume_context|publish_context|volumeContext)\??\.[a-zA-Z]/;
      expect(offenders((f, t) => f !== 'volume/volume-context.ts' && fieldRead.test(t))).to.deep.equal([]);
    });

    it('formats a device only in host/ (format once, and remember)', () => {
      expect(offenders((f, t) => !f.startsWith('host/') && /\.mkfs\(/.test(t))).to.deep.equal([]);
    });
  });
});
