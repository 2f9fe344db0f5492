import { joinAdjacent } from '../io/adjacent';
import type { IoRequest } from '../io/request';
import { MAX_BUFFERS_PER_REQUEST, MAX_REQUEST_BYTES } from './log-ring';

/** A block of a delta: its data-area index and its image (blockSize bytes of aligned memory). */
export interface JournalBlock {
  readonly home: number;
  readonly image: Uint8Array;
}

/**
 * The write requests that put `blocks` (sorted by home) at their home
 * locations in the data area, which starts at block `dataStart`: runs of
 * consecutive homes (up to MAX_REQUEST_BYTES) become one vectored write
 * each, images adjacent in memory one buffer.
 */
export function homeRequests(dataStart: number, blockSize: number, blocks: readonly JournalBlock[]): IoRequest[] {
  const out: IoRequest[] = [];
  const maxBlocks = Math.max(1, Math.min(MAX_BUFFERS_PER_REQUEST, Math.floor(MAX_REQUEST_BYTES / blockSize)));
  let i = 0;
  while (i < blocks.length) {
    const first = blocks[i].home;
    const images: Uint8Array[] = [blocks[i].image];
    i++;
    while (i < blocks.length && blocks[i].home === first + images.length && images.length < maxBlocks) {
      images.push(blocks[i].image);
      i++;
    }
    out.push({ op: 'write', offset: (dataStart + first) * blockSize, buffers: joinAdjacent(images) });
  }
  return out;
}
