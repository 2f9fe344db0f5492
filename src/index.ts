/**
 * blockfork: a write-back block cache over O_DIRECT block I/O, with atomic
 * commit units (deltas) in which writers never wait for the disk.
 *
 * The public face is `open` and `Volume`; below it, for file-system builders
 * and tests, the lower layers: the cache (mappings, handles, pages), the
 * deltas (lock, blockdirty and fork, writeout), and raw I/O (Device, Slab).
 */
export { open, Volume } from './volume';
export type { OpenOptions, MountOptions, VolumeOptions, MappingOptions, VolumeStats } from './volume';
export type { JournalStats } from './journal/checkpoints';
export { Change } from './delta/change';

export { Cache } from './cache/cache';
export type { CacheOptions, CacheCounters } from './cache/cache';
export { Mapping, HOLE } from './cache/mapping';
export type { BlockMap } from './cache/mapping';
export { BlockHandle, bread } from './cache/handle';
export { PagePool } from './cache/pool';
export { Delta } from './delta/delta';
export type { DeltaState } from './delta/delta';
export { Deltas } from './delta/transition';
export type { DeltasOptions, DeltaCounters } from './delta/transition';
export { DeltaLock } from './delta/lock';
export { blockdirty, canModifyInPlace, dirtyInThisDelta } from './delta/fork';
export type { Writer } from './delta/fork';
export { deltaBefore, nextDelta } from './delta/number';
export type { JournalStage, DirtyBlock, DirtyRun, WritePlan } from './delta/writeout';

export { Device, DEFAULT_QUEUE_DEPTH } from './io/device';
export type { DeviceOptions, EngineKind } from './io/device';
export { Slab, copyPage } from './io/slab';
export { BlockforkError, systemError } from './io/errors';
export type { SystemError } from './io/errors';
export type { BlockIo, IoRequest, IoResult } from './io/request';
export type { Geometry } from './io/geometry';
