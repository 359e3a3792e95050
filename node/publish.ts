// NodePublishVolume and NodeUnpublishVolume: the staged mount (or raw
// device) bound into the pod's directory, read-only where the access mode,
// the pod or the controller says so; and the reverse, for binds this volume
// is proved to hold.
import fs from 'node:fs/promises';
import path from 'node:path';
import { attachImage, boundDevice, type Host, loopDevice, type MountEntry, mountAt, sameThing, topMount } from '../host/index.js';
import type { NodePublishVolumeRequest, NodeUnpublishVolumeRequest } from '../volume/csi.js';
import { READ_ONLY_MODES } from '../volume/csi.js';
import { alreadyExists, failedPrecondition, invalid, notFound } from '../volume/errors.js';
import { requireString } from '../volume/request-fields.js';
import { decodePublishContext } from '../volume/volume-context.js';
import { parseVolumeId } from '../volume/volume-id.js';
import type { NodeConfig } from './node-config.js';
import {
  detachIfUnused,
  type Empty,
  kubeletPath,
  RAW_DEVICE_FILE,
  removeTarget,
  requireCapability,
  requireOutsideVolumes,
  unmountOrRefuse,
} from './node-steps.js';
import type { VolumeLocator } from './volume-location.js';

export class Publisher {
  private readonly host: Host;

  constructor(
    private readonly cfg: NodeConfig,
    private readonly locator: VolumeLocator,
  ) {
    this.host = cfg.host;
  }

  async publish(req: NodePublishVolumeRequest): Promise<Empty> {
    const id = requireString('volume_id', req.volume_id);
    const target = await kubeletPath(this.cfg, 'target_path', req.target_path);
    const cap = req.volume_capability;
    if (!cap) throw invalid('volume_capability is required');
    if (!req.staging_target_path) throw failedPrecondition('staging_target_path is required: this driver stages volumes');
    const staging = await kubeletPath(this.cfg, 'staging_target_path', req.staging_target_path);
    const within = (a: string, b: string) => a === b || a.startsWith(`${b}/`);
    if (within(target, staging) || within(staging, target)) {
      throw invalid(`target_path ${target} and staging_target_path ${staging} must be apart (neither inside the other)`);
    }
    const v = await this.locator.locate(id, req.volume_context);
    requireCapability(v.kind, cap);
    const raw = cap.access_type === 'block';
    const source = raw ? path.join(staging, RAW_DEVICE_FILE) : staging;
    const mounts = await this.host.readMounts();
    requireOutsideVolumes(mounts, target, this.cfg.kubeletDir);
    const staged = topMount(mounts, source);
    if (!staged) throw failedPrecondition(`volume ${v.volumeId} is not staged at ${staging}`);
    const readonly = req.readonly || READ_ONLY_MODES.has(cap.access_mode?.mode ?? '') || decodePublishContext(req.publish_context).readonly;
    // Raw block: the image behind the staged device; a read-only publish gets a read-only device of its own.
    const stagedDevice = raw ? boundDevice(staged) : undefined;
    const stagedLoop = stagedDevice ? await loopDevice(this.host, stagedDevice) : undefined;
    if (raw && !stagedLoop) throw failedPrecondition(`${source} does not hold a loop device`);
    const shows = async (m: MountEntry) => {
      if (!raw) return sameThing(m, staged);
      const dev = boundDevice(m);
      return dev !== undefined && (await loopDevice(this.host, dev))?.backingFile === stagedLoop?.backingFile;
    };

    const existing = topMount(mounts, target);
    if (existing) {
      if (!(await shows(existing))) throw alreadyExists(`${target} already has another volume mounted (${existing.source})`);
      if (existing.options.includes('ro') !== readonly)
        throw alreadyExists(`${target} is already published ${readonly ? 'read-write' : 'read-only'}`);
      return {};
    }
    if (cap.access_mode?.mode === 'SINGLE_NODE_SINGLE_WRITER') {
      const others: MountEntry[] = [];
      for (const m of mounts) if (m.target !== source && (await shows(m))) others.push(m);
      if (others.length > 0) {
        throw failedPrecondition(
          `volume ${v.volumeId} is SINGLE_NODE_SINGLE_WRITER and already published at ${others.map((o) => o.target).join(', ')}`,
        );
      }
    }
    if (raw) {
      await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o750 });
      await (await fs.open(target, 'a', 0o600)).close();
    } else {
      await fs.mkdir(target, { recursive: true, mode: 0o750 });
    }
    const readOnlyDevice =
      raw && readonly && !stagedLoop?.readOnly
        ? await attachImage(this.host, stagedLoop?.backingFile as string, { readOnly: true })
        : undefined;
    try {
      await this.host.bindMount(readOnlyDevice ?? source, target, readonly);
    } catch (err) {
      await removeTarget(target).catch(() => undefined);
      if (readOnlyDevice) await detachIfUnused(this.host, readOnlyDevice);
      throw err;
    }
    return {};
  }

  async unpublish(req: NodeUnpublishVolumeRequest): Promise<Empty> {
    const id = requireString('volume_id', req.volume_id);
    const target = await kubeletPath(this.cfg, 'target_path', req.target_path);
    const ref = parseVolumeId(id);
    if (!ref) throw notFound(`volume ${id} is not a berth volume`);
    const published = await mountAt(this.host, target);
    if (published && !(await this.locator.holds(ref, published, target))) {
      throw failedPrecondition(`${target} holds another volume than ${id} (${published.source}); leaving it mounted`);
    }
    // Bind mounts can stack when a caller retried around a crash: undo them all.
    const devices = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const entry = await mountAt(this.host, target);
      if (!entry) break;
      const dev = boundDevice(entry);
      if (dev) devices.add(dev);
      await unmountOrRefuse(this.host, target);
    }
    await removeTarget(target);
    // A read-only device made for this publish (raw block) goes with it.
    for (const dev of devices) if ((await loopDevice(this.host, dev))?.readOnly) await detachIfUnused(this.host, dev);
    return {};
  }
}
