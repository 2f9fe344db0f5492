import { joinAdjacent } from './adjacent';
import { MAX_BUFFERS_PER_REQUEST, MAX_REQUEST_BYTES, type IoRequest } from './request';

/** A block to write: its device block number (relative to where the caller's area starts), and its image. */
export interface BlockImage {
  readonly home: number;
  readonly image: Uint8Array;
}

/**
 * Blocks sorted by home as vectored writes: consecutive homes make one
 * request (up to MAX_REQUEST_BYTES), images adjacent in memory one buffer,
 * and a request never takes more than MAX_BUFFERS_PER_REQUEST buffers.
 * `firstBlock` is the device block where home 0 lies.
 */
export function writeRuns(blocks: readonly BlockImage[], blockSize: number, firstBlock = 0): IoRequest[] {
  const out: IoRequest[] = [];
  const maxBlocks = Math.max(1, Math.floor(MAX_REQUEST_BYTES / blockSize));
  let i = 0;
  while (i < blocks.length) {
    const first = blocks[i].home;
    let n = 1;
    while (i + n < blocks.length && blocks[i + n].home === first + n && n < maxBlocks) n++;
    const images: Uint8Array[] = new Array(n);
    for (let k = 0; k < n; k++) images[k] = blocks[i + k].image;
    const buffers = joinAdjacent(images);
    let offset = (firstBlock + first) * blockSize;
    for (let j = 0; j < buffers.length; j += MAX_BUFFERS_PER_REQUEST) {
      const part = buffers.slice(j, j + MAX_BUFFERS_PER_REQUEST);
      out.push({ op: 'write', offset, buffers: part });
      for (const b of part) offset += b.byteLength;
    }
    i += n;
  }
  return out;
}
