import type { IoRequest } from '../io/request';
import { writeRuns, type BlockImage } from '../io/write-runs';

/** A block of a delta: its data-area index and its image (blockSize bytes of aligned memory). */
export type JournalBlock = BlockImage;

/** The write requests that put `blocks` (sorted by home) at their homes in the data area, which starts at block `dataStart`. */
export function homeRequests(dataStart: number, blockSize: number, blocks: readonly JournalBlock[]): IoRequest[] {
  return writeRuns(blocks, blockSize, dataStart);
}

/** The read requests that fill `blocks` (sorted by home; `image` the memory to read into) from their homes. */
export function homeReads(dataStart: number, blockSize: number, blocks: readonly JournalBlock[]): IoRequest[] {
  return homeRequests(dataStart, blockSize, blocks).map((request) => ({ ...request, op: 'read' as const }));
}
