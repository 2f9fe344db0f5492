import type { IoRequest } from '../io/request';
import { runWrites, writeRuns, type BlockImage, type BlockRun } from '../io/write-runs';

/** A block of a delta: its data-area index and its image (blockSize bytes of aligned memory). */
export type JournalBlock = BlockImage;

/** Consecutive blocks of a delta (version 2: redirected): image i goes to data-area block `home + i`. */
export type JournalRun = BlockRun;

/** The write requests that put `blocks` (sorted by home) at their homes in the data area, which starts at block `dataStart`. */
export function homeRequests(dataStart: number, blockSize: number, blocks: readonly JournalBlock[]): IoRequest[] {
  return writeRuns(blocks, blockSize, dataStart);
}

/** The write requests that put runs (sorted by home, apart) at their homes in the data area. */
export function homeRunRequests(dataStart: number, blockSize: number, runs: readonly JournalRun[]): IoRequest[] {
  return runWrites(runs, blockSize, dataStart);
}

/** The read requests that fill `blocks` (sorted by home; `image` the memory to read into) from their homes. */
export function homeReads(dataStart: number, blockSize: number, blocks: readonly JournalBlock[]): IoRequest[] {
  return homeRequests(dataStart, blockSize, blocks).map((request) => ({ ...request, op: 'read' as const }));
}
