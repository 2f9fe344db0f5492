import type { IoRequest } from '../io/request';
import { runWrites, writeRuns, type BlockImage, type BlockList, type BlockRun } from '../io/write-runs';

/** A block of a delta: its data-area index and its image (blockSize bytes of aligned memory). */
export type JournalBlock = BlockImage;

/** Consecutive blocks of a delta (version 2: redirected): the images, end to end, go to data-area blocks from `home`. */
export type JournalRun = BlockRun;

/** A delta's blocks as a plan takes them: a plan that redirects a run whole needs no object or view per block of it. */
export type JournalBlockList = BlockList;

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
