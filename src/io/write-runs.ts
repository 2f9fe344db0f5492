import { joinAdjacent } from './adjacent';
import { blocksPerRequest, MAX_BUFFERS_PER_REQUEST, type IoRequest } from './request';

/** A block to write: its device block number (relative to where the caller's area starts), and its image. */
export interface BlockImage {
  readonly home: number;
  readonly image: Uint8Array;
}

/**
 * Consecutive blocks to write from block `home`: `images` end to end, each a
 * view of one whole block or of several (blocks that follow one another in
 * memory may come joined, so that a run of thousands needs no view per block).
 */
export interface BlockRun {
  readonly home: number;
  readonly images: readonly Uint8Array[];
}

/** The blocks a run holds (its images' bytes, in blocks). */
export function runBlockCount(run: BlockRun, blockSize: number): number {
  let bytes = 0;
  for (const image of run.images) bytes += image.byteLength;
  return bytes / blockSize;
}

/**
 * Blocks sorted by home as vectored writes: consecutive homes make one
 * request (up to MAX_REQUEST_BYTES), images adjacent in memory one buffer,
 * and a request never takes more than MAX_BUFFERS_PER_REQUEST buffers.
 * `firstBlock` is the device block where home 0 lies.
 */
export function writeRuns(blocks: readonly BlockImage[], blockSize: number, firstBlock = 0): IoRequest[] {
  const out: IoRequest[] = [];
  const maxBlocks = blocksPerRequest(blockSize);
  let i = 0;
  while (i < blocks.length) {
    const first = blocks[i].home;
    let n = 1;
    while (i + n < blocks.length && blocks[i + n].home === first + n && n < maxBlocks) n++;
    const images: Uint8Array[] = new Array(n);
    for (let k = 0; k < n; k++) images[k] = blocks[i + k].image;
    pushRun(out, (firstBlock + first) * blockSize, images);
    i += n;
  }
  return out;
}

/** Runs already made (sorted by home, apart) as the same writes: each run cut at MAX_REQUEST_BYTES (a joined image across the cut, in two). */
export function runWrites(runs: readonly BlockRun[], blockSize: number, firstBlock = 0): IoRequest[] {
  const out: IoRequest[] = [];
  const maxBytes = blocksPerRequest(blockSize) * blockSize;
  for (const run of runs) {
    let offset = (firstBlock + run.home) * blockSize;
    let part: Uint8Array[] = [];
    let bytes = 0;
    for (const image of run.images) {
      for (let at = 0; at < image.byteLength; ) {
        const take = Math.min(image.byteLength - at, maxBytes - bytes);
        part.push(take === image.byteLength ? image : image.subarray(at, at + take));
        at += take;
        bytes += take;
        if (bytes === maxBytes) {
          pushRun(out, offset, part);
          offset += bytes;
          part = [];
          bytes = 0;
        }
      }
    }
    if (bytes > 0) pushRun(out, offset, part);
  }
  return out;
}

/** The writes of consecutive blocks' images from byte `offset`: one request unless it holds too many buffers. */
function pushRun(out: IoRequest[], offset: number, images: readonly Uint8Array[]): void {
  const buffers = joinAdjacent(images);
  for (let j = 0; j < buffers.length; j += MAX_BUFFERS_PER_REQUEST) {
    const part = buffers.slice(j, j + MAX_BUFFERS_PER_REQUEST);
    out.push({ op: 'write', offset, buffers: part });
    for (const b of part) offset += b.byteLength;
  }
}
