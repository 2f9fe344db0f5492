import { joinAdjacent } from '../io/adjacent';
import { blocksPerRequest, MAX_BUFFERS_PER_REQUEST, type IoRequest } from '../io/request';

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
   * in the log from `position`) to or from the ring: buffers adjacent in
   * memory joined, split where the ring wraps, and into requests of at most
   * MAX_REQUEST_BYTES and MAX_BUFFERS_PER_REQUEST buffers.
   */
  requests(op: 'read' | 'write', position: number, buffers: readonly Uint8Array[]): IoRequest[] {
    const B = this.blockSize;
    for (const buffer of buffers) {
      if (buffer.byteLength % B !== 0) throw new RangeError(`log buffers must be whole blocks of ${B} bytes, got ${buffer.byteLength}`);
    }
    const out: IoRequest[] = [];
    let start = position;
    let batch: Uint8Array[] = [];
    let batchBlocks = 0;
    let next = position;
    const maxBlocks = blocksPerRequest(B);
    const emit = (): void => {
      if (batch.length > 0) out.push({ op, offset: this.offsetOf(start), buffers: batch });
      batch = [];
      batchBlocks = 0;
      start = next;
    };
    for (const buffer of joinAdjacent(buffers)) {
      let rest = buffer;
      while (rest.byteLength > 0) {
        const untilWrap = this.logBlocks - (next % this.logBlocks);
        const blocks = Math.min(rest.byteLength / B, untilWrap, maxBlocks - batchBlocks);
        batch.push(rest.subarray(0, blocks * B));
        rest = rest.subarray(blocks * B);
        next += blocks;
        batchBlocks += blocks;
        if (next % this.logBlocks === 0 || batch.length === MAX_BUFFERS_PER_REQUEST || batchBlocks === maxBlocks) emit();
      }
    }
    emit();
    return out;
  }
}
