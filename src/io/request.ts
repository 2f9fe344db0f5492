import type { Geometry } from './geometry';
import type { SystemError } from './errors';

/** pwritev/preadv take at most IOV_MAX (1024 on Linux) buffers per call. */
export const MAX_BUFFERS_PER_REQUEST = 1024;

/** Bytes the write paths put in one request: enough to stream at full speed, small enough to keep the queue busy. */
export const MAX_REQUEST_BYTES = 1 << 20;

/** Blocks of `blockSize` bytes one request carries at most (at least one, however large a block). */
export function blocksPerRequest(blockSize: number): number {
  return Math.max(1, Math.floor(MAX_REQUEST_BYTES / blockSize));
}

/**
 * One vectored request of a batch: `buffers` are gathered (write) or
 * scattered (read) at `offset`. Every buffer address, the offset and every
 * buffer length must be multiples of the device's alignment.
 */
export interface IoRequest {
  readonly op: 'read' | 'write';
  readonly offset: number;
  readonly buffers: readonly Uint8Array[];
  /** Write with RWF_DSYNC: durable when it completes (commit records). */
  readonly dsync?: boolean;
}

/** The outcome of one request: bytes moved, or the system error that failed it. */
export interface IoResult {
  readonly bytes: number;
  readonly error?: SystemError;
}

/**
 * What the layers above need of a device. The real one is `Device`; tests
 * wrap it (or stand in for it) to inject faults, delays and reordering.
 */
export interface BlockIo {
  readonly path: string;
  readonly geometry: Geometry;
  /** Submits a batch; resolves when every request has completed, one result each. */
  submit(requests: readonly IoRequest[]): Promise<IoResult[]>;
  /** Like submit, but rejects with the first failed request's error (short transfers are errors). */
  run(requests: readonly IoRequest[]): Promise<void>;
  /**
   * fdatasync: every write submitted before it is on stable storage (it
   * starts once they have completed). It is also a barrier for writes:
   * writes submitted after it start only once it is done (both engines hold
   * them back). Ordered mode relies on it: delta N+1's writes are submitted
   * once N's completed, and must not reach the disk before N's flush. Reads
   * are not held back: they never wait for a flush or for queued writes.
   */
  flush(): Promise<void>;
  /**
   * Whether [offset, offset + length) holds no data now, so that a read of
   * it would give zeros without the device (a hole of a sparse file); false
   * where that is not known. Optional: the read path reads what it is not
   * told is a hole.
   */
  holeAt?(offset: number, length: number): boolean;
  close(): Promise<void>;
}
