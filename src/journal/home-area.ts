import type { IoRequest } from '../io/request';
import { MAX_BUFFERS_PER_REQUEST } from './log-ring';

/** A block of a delta: its data-area index and its image (blockSize bytes of aligned memory). */
export interface JournalBlock {
  readonly home: number;
  readonly image: Uint8Array;
}

/**
 * The write requests that put `blocks` (sorted by home) at their home
 * locations in the data area, which starts at block `dataStart`: runs of
 * consecutive homes become one vectored write each.
 */
export function homeRequests(dataStart: number, blockSize: number, blocks: readonly JournalBlock[]): IoRequest[] {
  const out: IoRequest[] = [];
  let i = 0;
  while (i < blocks.length) {
    const first = blocks[i].home;
    const buffers: Uint8Array[] = [blocks[i].image];
    i++;
    while (i < blocks.length && blocks[i].home === first + buffers.length && buffers.length < MAX_BUFFERS_PER_REQUEST) {
      buffers.push(blocks[i].image);
      i++;
    }
    out.push({ op: 'write', offset: (dataStart + first) * blockSize, buffers });
  }
  return out;
}
