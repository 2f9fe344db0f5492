export { Device, DEFAULT_QUEUE_DEPTH, type DeviceOptions, type EngineKind } from './io/device';
export { Slab, copyPage } from './io/slab';
export { BlockforkError, systemError, type SystemError } from './io/errors';
export type { Geometry } from './io/geometry';
export type { BlockIo, IoRequest, IoResult } from './io/request';
