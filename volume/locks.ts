// The keys calls lock (the pipeline answers ABORTED to a second caller).
// One key per volume, shared by the controller and the node: where one
// process serves both (all-in-one, a node's local driver), a DeleteVolume
// never runs beside a NodeStageVolume of the same volume. A node call also
// locks the path it mounts at, so two volumes are never staged or published
// at one path at once.
import path from 'node:path';
import { parseVolumeId } from './volume-id.js';

/** The key of a volume, by its key in its pool. */
export const volumeLock = (dirName: string) => `volume/${dirName}`;

/** The key of the volume an id names (an id that is not one locks itself). */
export const volumeIdLock = (volumeId: string) => volumeLock(parseVolumeId(volumeId)?.dirName ?? volumeId);

/** The key of a path a node call mounts at. */
export const pathLock = (p: string) => `path/${path.resolve('/', p)}`;
