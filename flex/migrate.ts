// `berth-flex migrate`: the way off FlexVolume. Reads PersistentVolume
// manifests (documents, or a List) and writes, for each FlexVolume NFS PV —
// driver berth/nfs, or any driver with the {server, share} options other NFS
// FlexVolume drivers use — an equivalent CSI PV for berth that points at the
// same data: an NFS share volume marked static (it has no berth record on
// the export; the controller publishes it from its attributes). The PV keeps
// its name, capacity, access modes, reclaim policy, class and claimRef, so
// the existing PVC binds to it again. Nothing is copied or moved.
import { parseAllDocuments, stringify } from 'yaml';
import { layeredMountOptions, type NfsVolumeSource, nfsVolumeSource, mountOptions as parseMountOptions } from '../volume/nfs.js';
import { encodeVolumeContext } from '../volume/volume-context.js';
import { formatVolumeId, volumeDirName } from '../volume/volume-id.js';

/** The CSI driver that serves NFS volumes (the chart's driverName): migrated PVs name it. */
export const NFS_DRIVER_NAME = 'berth.csi.dev';

export interface MigrationOptions {
  driverName?: string;
  /** Set when every node already mounts the export at this path. */
  mountedAt?: string;
}

export interface MigrationResult {
  /** The CSI PVs, as YAML documents ready for kubectl apply. */
  yaml: string;
  migrated: string[];
  skipped: Array<{ name: string; reason: string }>;
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const DROP_METADATA = [
  'uid',
  'resourceVersion',
  'creationTimestamp',
  'managedFields',
  'finalizers',
  'generation',
  'selfLink',
  'deletionTimestamp',
];

function migrateOne(pv: Obj, opts: MigrationOptions): Obj | string {
  const spec = isObj(pv.spec) ? pv.spec : {};
  const flex = spec.flexVolume;
  if (!isObj(flex)) return 'not a FlexVolume PV';
  const driver = String(flex.driver ?? '');
  const options = isObj(flex.options) ? (flex.options as Record<string, unknown>) : {};
  const server = typeof options.server === 'string' ? options.server : '';
  const shareOpt = typeof options.share === 'string' ? options.share : '';
  if (driver !== 'berth/nfs' && !(server && shareOpt)) return `FlexVolume driver ${driver} without the {server, share} NFS options`;
  // The same checks as the CSI controller and node make (legacy PVs may name
  // the share without its leading "/"), so a migrated PV always stages.
  let nfs: NfsVolumeSource;
  try {
    nfs = nfsVolumeSource(
      {
        server,
        share: shareOpt && !shareOpt.startsWith('/') ? `/${shareOpt}` : shareOpt,
        subDir: typeof options.subDir === 'string' ? options.subDir : '',
        // The PV's own mountOptions win over the driver's option, as at a CSI stage.
        mountOptions: layeredMountOptions(
          parseMountOptions(typeof options.mountOptions === 'string' ? options.mountOptions : ''),
          parseMountOptions(Array.isArray(spec.mountOptions) ? spec.mountOptions.map(String) : [], 'PV mount option'),
        ).join(','),
      },
      { allowRoot: true },
    );
  } catch (err) {
    return (err as Error).message;
  }
  const { share, subDir, mountOptions } = nfs;

  const metadata = isObj(pv.metadata) ? { ...pv.metadata } : {};
  const name = String(metadata.name ?? '');
  if (!name) return 'the PV has no name';
  let volumeHandle: string;
  try {
    volumeHandle = formatVolumeId({ pool: 'nfs', server, share, kind: 'share', dirName: volumeDirName(name) });
  } catch {
    return 'server, share and name make a volume id longer than 128 bytes';
  }
  const volumeAttributes = encodeVolumeContext({
    pool: 'nfs',
    kind: 'share',
    static: true,
    server,
    share,
    subDir,
    mountOptions,
    ...(opts.mountedAt ? { mountedAt: opts.mountedAt } : {}),
  });

  for (const k of DROP_METADATA) delete metadata[k];
  const annotations = isObj(metadata.annotations) ? { ...(metadata.annotations as Record<string, string>) } : {};
  delete annotations['kubectl.kubernetes.io/last-applied-configuration'];
  annotations['berth.csi.dev/migrated-from-flexvolume'] = driver;
  metadata.annotations = annotations;

  const newSpec: Obj = { ...spec };
  delete newSpec.flexVolume;
  delete newSpec.mountOptions; // carried in volumeAttributes, which the node uses for NFS
  if (isObj(newSpec.claimRef)) {
    const claimRef = { ...newSpec.claimRef };
    delete claimRef.resourceVersion;
    newSpec.claimRef = claimRef;
  }
  newSpec.csi = {
    driver: opts.driverName ?? NFS_DRIVER_NAME,
    volumeHandle,
    volumeAttributes,
    ...(flex.readOnly === true ? { readOnly: true } : {}),
  };
  return { apiVersion: 'v1', kind: 'PersistentVolume', metadata, spec: newSpec };
}

export function migrateFlexPVs(text: string, opts: MigrationOptions = {}): MigrationResult {
  const objects: Obj[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) throw new Error(`not valid YAML: ${doc.errors[0]?.message}`);
    const o = doc.toJS() as unknown;
    if (!isObj(o)) continue;
    if (o.kind === 'List' && Array.isArray(o.items)) objects.push(...o.items.filter(isObj));
    else objects.push(o);
  }
  const out: Obj[] = [];
  const result: MigrationResult = { yaml: '', migrated: [], skipped: [] };
  for (const o of objects) {
    const name = isObj(o.metadata) ? String(o.metadata.name ?? '?') : '?';
    if (o.kind !== 'PersistentVolume') {
      result.skipped.push({ name, reason: `a ${String(o.kind)}, not a PersistentVolume` });
      continue;
    }
    const migrated = migrateOne(o, opts);
    if (typeof migrated === 'string') result.skipped.push({ name, reason: migrated });
    else {
      out.push(migrated);
      result.migrated.push(name);
    }
  }
  result.yaml = out.map((o) => stringify(o)).join('---\n');
  return result;
}
