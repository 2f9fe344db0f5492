import { BlockforkError } from '../io/errors';
import type { Geometry } from '../io/geometry';
import type { BlockIo, IoRequest, IoResult } from '../io/request';

/**
 * The data area of a read-only journaled volume as replay would leave it,
 * without writing: reads come from the device, then the blocks that the log
 * holds newer images of are patched over from memory (replayInMemory). A
 * read-only open uses this instead of refusing a volume that needs replay.
 * Writes are refused: the volume is read-only.
 */
export class ReplayedView implements BlockIo {
  readonly geometry: Geometry;

  /** `blocks`: data-area block -> its image after the last committed delta in the log. */
  constructor(
    private readonly data: BlockIo,
    private readonly blockSize: number,
    private readonly blocks: ReadonlyMap<number, Uint8Array>,
  ) {
    this.geometry = data.geometry;
  }

  get path(): string {
    return this.data.path;
  }

  async submit(requests: readonly IoRequest[]): Promise<IoResult[]> {
    this.refuseWrites(requests);
    const results = await this.data.submit(requests);
    results.forEach((result, i) => {
      if (!result.error) this.patch(requests[i], result.bytes);
    });
    return results;
  }

  async run(requests: readonly IoRequest[]): Promise<void> {
    this.refuseWrites(requests);
    await this.data.run(requests);
    for (const request of requests) this.patch(request, Number.MAX_SAFE_INTEGER);
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private refuseWrites(requests: readonly IoRequest[]): void {
    if (requests.some((request) => request.op !== 'read')) {
      throw new BlockforkError('ERR_READ_ONLY', `'${this.path}' is open read-only`);
    }
  }

  /** Copies the replayed images over the blocks a read brought in (the first `bytes` of it). */
  private patch(request: IoRequest, bytes: number): void {
    if (this.blocks.size === 0) return;
    const B = this.blockSize;
    let at = request.offset;
    let left = bytes;
    for (const buffer of request.buffers) {
      const length = Math.min(buffer.byteLength, left);
      // Reads are block-aligned (the cache reads whole pages); a partial block at either end is patched in part.
      for (let block = Math.floor(at / B); block * B < at + length; block++) {
        const image = this.blocks.get(block);
        if (image === undefined) continue;
        const from = Math.max(at, block * B);
        const to = Math.min(at + length, (block + 1) * B);
        buffer.set(image.subarray(from - block * B, to - block * B), from - at);
      }
      at += buffer.byteLength;
      left -= length;
      if (left <= 0) break;
    }
  }
}
