import type { IoRequest } from '../io/request';

/** pwritev/preadv take at most IOV_MAX (1024 on Linux) buffers per call. */
export const MAX_BUFFERS_PER_REQUEST = 1024;

/**
 * The log region as a ring of `logBlocks` blocks starting at block
 * `logStart`. Log positions grow forever; position p lives in block
 * logStart + p % logBlocks. Live records span at most one lap (the writer
 * never lets head − tail exceed logBlocks), so a run of positions crosses
 * the ring's end at most once.
 */
export class LogRing {
  constructor(
    readonly logStart: number,
    readonly logBlocks: number,
    readonly blockSize: number,
  ) {}

  /** Device byte offset of log position `position`. */
  offsetOf(position: number): number {
    return (this.logStart + (position % this.logBlocks)) * this.blockSize;
  }

  /**
   * Requests that move `buffers` (each a whole number of blocks, contiguous
   * in the log from `position`) to or from the ring: split where the ring
   * wraps, and into chunks of at most MAX_BUFFERS_PER_REQUEST buffers.
   */
  requests(op: 'read' | 'write', position: number, buffers: readonly Uint8Array[]): IoRequest[] {
    const out: IoRequest[] = [];
    let start = position;
    let batch: Uint8Array[] = [];
    let next = position;
    const emit = (): void => {
      if (batch.length > 0) out.push({ op, offset: this.offsetOf(start), buffers: batch });
      batch = [];
      start = next;
    };
    for (const buffer of buffers) {
      if (buffer.byteLength % this.blockSize !== 0) throw new RangeError(`log buffers must be whole blocks of ${this.blockSize} bytes, got ${buffer.byteLength}`);
      let rest = buffer;
      while (rest.byteLength > 0) {
        const untilWrap = this.logBlocks - (next % this.logBlocks);
        const blocks = Math.min(rest.byteLength / this.blockSize, untilWrap);
        batch.push(rest.subarray(0, blocks * this.blockSize));
        rest = rest.subarray(blocks * this.blockSize);
        next += blocks;
        if (next % this.logBlocks === 0 || batch.length === MAX_BUFFERS_PER_REQUEST) emit();
      }
    }
    emit();
    return out;
  }
}
