// A volume's usage and condition on this node (NodeGetVolumeStats), and
// what the node holds (metrics, berth-ctl status). A condition is one of a
// closed set of reasons, so a metric labelled by it stays small.
import type { Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { boundDevice, exists, type Host, loopBehind, loopDevice, type MountEntry, sameThing, topMount } from '../host/index.js';
import type { NodeGetVolumeStatsResponse } from '../volume/csi.js';
import { notFound } from '../volume/errors.js';
import { isThinImage } from '../volume/record.js';
import { parseVolumeId, type VolumeRef } from '../volume/volume-id.js';
import type { NodeConfig } from './node-config.js';
import { RAW_DEVICE_FILE } from './node-steps.js';
import type { StageRecords } from './stage-records.js';
import type { VolumeLocator } from './volume-location.js';

/** Why a volume is not healthy: a closed set, so that a metric labelled by it stays small. */
export const ABNORMAL_REASONS = [
  'not_mounted',
  'not_a_device',
  'not_found',
  'filesystem_full',
  'filesystem_errors',
  'loop_detached',
  'image_missing',
  'image_moved',
  'data_missing',
  'pool_nearly_full',
] as const;
export type AbnormalReason = (typeof ABNORMAL_REASONS)[number];

export interface VolumeCondition {
  reason: AbnormalReason | 'healthy';
  message: string;
}

export interface NodeStatus {
  staged: number;
  published: number;
  abnormal: Array<{ volumeId: string; reason: AbnormalReason | 'healthy'; message: string }>;
}
export class VolumeHealth {
  private readonly host: Host;

  constructor(
    private readonly cfg: NodeConfig,
    private readonly locator: VolumeLocator,
    private readonly stages: StageRecords,
  ) {
    this.host = cfg.host;
  }

  /** Usage and condition of volume `id` at `volumePath` (a published or staging path, checked by the caller). */
  async volumeHealth(
    id: string,
    volumePath: string,
    mounts: MountEntry[],
  ): Promise<{ usage: NodeGetVolumeStatsResponse['usage']; condition: VolumeCondition }> {
    let st: Stats;
    try {
      st = await fs.stat(volumePath);
    } catch {
      throw notFound(`nothing at ${volumePath}`);
    }
    const ref = parseVolumeId(id);
    const rec = ref?.pool === 'local' ? await this.locator.localPool.read(ref.dirName) : undefined;
    if (!ref || (ref.pool === 'local' && rec?.volumeId !== id)) throw notFound(`volume ${id} does not exist`);
    const thin = rec !== undefined && isThinImage(rec);
    const entry = topMount(mounts, volumePath);
    // A path showing another volume is not this volume's (NOT_FOUND); this volume damaged (its image
    // moved or deleted under its device) is reported below as abnormal.
    if (entry && !(await this.locator.holds(ref, entry, volumePath)) && (await this.showsAnotherVolume(ref, entry))) {
      throw notFound(`${volumePath} holds another volume, not ${id}`);
    }
    // Nothing mounted there: the path's numbers would be its parent filesystem's, not the volume's.
    if (!entry) return { usage: [], condition: { reason: 'not_mounted', message: `${volumePath} is not mounted` } };
    if (!st.isDirectory()) {
      // Raw block: the published device file.
      const device = entry && boundDevice(entry);
      if (!device) return { usage: [], condition: { reason: 'not_a_device', message: `${volumePath} is not a published device` } };
      const loop = await loopDevice(this.host, device);
      const size = await this.host.deviceSize(device);
      const condition = await this.loopCondition(ref, loop);
      return {
        usage: [{ unit: 'BYTES', total: size }],
        condition: condition.reason !== 'healthy' ? condition : ((await this.poolCondition(thin)) ?? condition),
      };
    }
    const s = await fs.statfs(volumePath);
    const usage = [
      { unit: 'BYTES' as const, total: s.blocks * s.bsize, available: s.bavail * s.bsize, used: (s.blocks - s.bfree) * s.bsize },
      { unit: 'INODES' as const, total: s.files, available: s.ffree, used: s.files - s.ffree },
    ];
    let condition: VolumeCondition = { reason: 'healthy', message: 'volume is mounted and healthy' };
    if (!entry) condition = { reason: 'not_mounted', message: `${volumePath} is not mounted` };
    else if (s.bavail === 0) condition = { reason: 'filesystem_full', message: "the volume's filesystem is full" };
    else if (ref.kind === 'block')
      condition = await this.loopCondition(
        ref,
        entry.source.startsWith('/dev/loop') ? await loopDevice(this.host, entry.source) : undefined,
      );
    else if (ref.pool === 'local' && !(await exists(this.locator.localPool.dataDir(ref.dirName))))
      condition = { reason: 'data_missing', message: "the volume's directory is missing from the pool" };
    const device = entry && ref.kind === 'block' ? loopBehind(entry) : undefined;
    if (condition.reason === 'healthy' && entry && device === entry.source) {
      const errors = await this.host.filesystemErrors(entry.fstype, device);
      if (errors)
        condition = {
          reason: 'filesystem_errors',
          message: `the ${entry.fstype} filesystem has recorded ${errors} errors: check it (fsck) before trusting its data`,
        };
    }
    if (condition.reason === 'healthy') condition = (await this.poolCondition(thin)) ?? condition;
    return { usage, condition };
  }

  /**
   * What this node holds, for metrics and `berth-ctl status`: the volumes
   * staged here (from the stage records), how many publications they have
   * (bind mounts of a staged mount elsewhere below the kubelet directory),
   * and each staged volume whose condition is not healthy.
   */
  async status(): Promise<NodeStatus> {
    const mounts = await this.host.readMounts();
    const staged = await this.stages.list();
    let published = 0;
    const abnormal: NodeStatus['abnormal'] = [];
    for (const rec of staged) {
      if (!rec.stagingPath) continue; // written before berth kept the path: counted, not checked
      const at = rec.accessType === 'block' ? path.join(rec.stagingPath, RAW_DEVICE_FILE) : rec.stagingPath;
      const stagedMount = topMount(mounts, at);
      const below = `${path.resolve(this.cfg.kubeletDir)}/`;
      if (stagedMount) published += mounts.filter((m) => m.target !== at && m.target.startsWith(below) && sameThing(m, stagedMount)).length;
      const condition = await this.volumeHealth(rec.volumeId, at, mounts).then(
        (h) => h.condition,
        (err: Error): VolumeCondition => ({ reason: 'not_found', message: err.message }),
      );
      if (condition.reason !== 'healthy') abnormal.push({ volumeId: rec.volumeId, ...condition });
    }
    return { staged: staged.length, published, abnormal };
  }

  /**
   * For stats: whether a mount that does not hold `ref` shows some other
   * volume (NOT_FOUND), rather than this one damaged (abnormal): a share
   * always; a block device attached to an existing file, while this local
   * volume's own image is where it belongs.
   */
  private async showsAnotherVolume(ref: VolumeRef, entry: MountEntry): Promise<boolean> {
    if (ref.kind === 'share') return true;
    const device = loopBehind(entry);
    const loop = device ? await loopDevice(this.host, device) : undefined;
    if (!loop || loop.backingDeleted || !(await exists(loop.backingFile))) return false;
    return ref.pool === 'nfs' || (await exists(this.locator.localPool.imagePath(ref.dirName)));
  }

  /** A thin local image whose pool is nearly full is abnormal before a write inside it fails. */
  private async poolCondition(thin: boolean): Promise<VolumeCondition | undefined> {
    if (!thin || !(await this.locator.localPool.nearlyFull())) return undefined;
    return { reason: 'pool_nearly_full', message: 'the pool is nearly full: writes to this thin volume may fail (ENOSPC)' };
  }

  private async loopCondition(
    ref: VolumeRef,
    loop: { backingFile: string; backingDeleted: boolean } | undefined,
  ): Promise<VolumeCondition> {
    // An NFS volume's image may sit on a pre-mounted path: judge the backing file itself.
    const image = ref.pool === 'local' ? this.locator.localPool.imagePath(ref.dirName) : (loop?.backingFile ?? '');
    if (!loop?.backingFile) return { reason: 'loop_detached', message: 'the loop device is detached' };
    if (loop.backingDeleted || !(await exists(image))) return { reason: 'image_missing', message: `the volume image ${image} is missing` };
    if (loop.backingFile !== image)
      return { reason: 'image_moved', message: `the loop device is attached to ${loop.backingFile}, not ${image}` };
    return { reason: 'healthy', message: 'volume is attached and healthy' };
  }
}
