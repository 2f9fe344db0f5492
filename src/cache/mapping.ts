import { describe } from '../io/describe';
import { joinAdjacent } from '../io/adjacent';
import { blocksPerRequest, MAX_BUFFERS_PER_REQUEST, type IoRequest } from '../io/request';
import type { Cache } from './cache';
import { CLEAN, EMPTY } from './page';
import { PageTable } from './page-table';
import { Readahead } from './readahead';

/**
 * Maps a block of a logical mapping to its physical block on the device, or
 * to HOLE (-1): a hole reads as zeros and must be mapped before a delta that
 * dirtied it is written. Called when a page is read and when a delta is
 * written out; it may be async (a file system looks its extents up).
 */
export type BlockMap = (block: number) => number | Promise<number>;

export const HOLE = -1;

/**
 * An address space: a page table from page index to frame, the dirty lists of
 * its pages (one per delta slot), and `readpage`. The volume mapping is
 * physical (block i lives at byte i * blockSize); a logical mapping, for a
 * file or a directory of a file system built on the volume, translates each
 * block through the user's BlockMap, and is cached as its own address space
 * over the same device and the same page pool.
 */
export class Mapping {
  /** Page index -> frame. */
  readonly table = new PageTable();
  /** Per delta slot: the frames of this mapping dirty in that slot's delta. */
  readonly dirty: number[][];
  /** Its streams' readahead state; undefined when readahead is off. */
  readonly readahead: Readahead | undefined;
  /**
   * Operations that named this mapping and have not settled (Cache.operate).
   * Between naming the mapping and pinning a page, an operation may await
   * (a loop turn, room in the cache) holding nothing the page table shows:
   * this count is what keeps dropMapping from forgetting the mapping under it.
   */
  operations = 0;
  /** Forgotten by dropMapping: every operation on it is refused. */
  dropped = false;

  /**
   * The volume's own metadata (version 2: the block map), addressed by
   * device block: not translated by the cache's lower map, not read ahead,
   * and written out by the journal's plan rather than collected as data.
   */
  readonly internal: boolean;

  constructor(
    private readonly cache: Cache,
    readonly id: number,
    /** Block indexes run from 0 to blockCount - 1. */
    readonly blockCount: number,
    private readonly map: BlockMap | undefined,
    internal = false,
  ) {
    this.internal = internal;
    this.dirty = Array.from({ length: cache.slotCount }, () => []);
    this.readahead = cache.readaheadPages > 0 && !internal ? new Readahead(cache.readaheadPages) : undefined;
  }

  /** Throws a TypeError or RangeError unless `block` names a block of this mapping. */
  checkBlock(block: unknown): void {
    if (typeof block !== 'number') throw new TypeError(`block must be a number, got ${describe(block)}`);
    if (!Number.isSafeInteger(block) || block < 0 || block >= this.blockCount) {
      throw new RangeError(`block must be an integer from 0 to ${this.blockCount - 1}, got ${describe(block)}`);
    }
  }

  /**
   * Throws a TypeError or RangeError unless `first` and `count` name a run
   * of blocks of this mapping: at least one, none past the end.
   */
  checkRange(first: unknown, count: unknown): void {
    this.checkBlock(first);
    if (typeof count !== 'number') throw new TypeError(`count must be a number, got ${describe(count)}`);
    const room = this.blockCount - (first as number);
    if (!Number.isSafeInteger(count) || count < 1 || count > room) {
      throw new RangeError(`count must be an integer from 1 to ${room} (the blocks from ${first as number} to the end), got ${describe(count)}`);
    }
  }

  /** Whether its blocks go through a BlockMap (a logical mapping): volumeBlock may then have to be awaited. */
  get translated(): boolean {
    return this.map !== undefined;
  }

  /**
   * The volume block of `block`, or HOLE: through the mapping's BlockMap
   * (a logical mapping), else the block itself. Where the cache has no
   * lower map (ordered mode, version 1) it is the device block.
   */
  volumeBlock(block: number): number | Promise<number> {
    if (this.map === undefined) return block;
    return this.translate(block);
  }

  /** The device block of `block`, or HOLE: the volume block, then the cache's lower map (version 2's block map). */
  physical(block: number): number | Promise<number> {
    const lower = this.cache.lower;
    if (this.internal || lower === undefined) return this.volumeBlock(block);
    // The lower map is the volume's own (trusted): it names only blocks of the device.
    if (this.map === undefined) return lower(block);
    return this.translate(block).then((v) => (v === HOLE ? HOLE : lower(v)));
  }

  /**
   * Brings every EMPTY block of a page up to date: contiguous blocks in one
   * request, all of them in one batch; holes and blocks past the end of the
   * device become zeros without I/O. The caller holds the page lock: no one
   * else moves these blocks out of EMPTY, and no fork copies the page while
   * the read is landing in it.
   */
  readpage(frame: number, pageIndex: number): Promise<void> {
    return this.readPages([frame], [pageIndex]);
  }

  /**
   * readpage for several pages (ascending page indexes, each frame locked by
   * the caller): blocks whose physical homes follow one another make one
   * request across page boundaries, up to MAX_REQUEST_BYTES, so that a
   * window read ahead through a block map goes down as its contiguous runs.
   * `now`: submit at once rather than with the turn's other misses (a
   * readahead window, see ReadBatch).
   */
  async readPages(frames: readonly number[], pageIndexes: readonly number[], now = false): Promise<void> {
    const { pages, pool, blockSize } = this.cache;
    const perPage = pages.perPage;
    const maxBlocks = blocksPerRequest(blockSize);
    const requests: IoRequest[] = [];
    const reading: number[] = [];
    // The run being gathered: physical blocks runPhysical .. runPhysical + runBuffers.length - 1.
    let runPhysical = HOLE;
    let runBuffers: Uint8Array[] = [];
    for (let k = 0; k < frames.length; k++) {
      const frame = frames[k];
      const base = frame * perPage;
      const first = pageIndexes[k] * perPage;
      for (let b = 0; b < perPage; b++) {
        const empty = pages.states[base + b] === EMPTY;
        let physical = HOLE;
        if (empty) {
          const block = first + b;
          const found = block >= this.blockCount ? HOLE : this.physical(block);
          physical = typeof found === 'number' ? found : await found;
        }
        // A block not to read, a hole, or one that does not follow the run on the device ends the run.
        const runLength = runBuffers.length;
        if (runLength > 0 && (physical !== runPhysical + runLength || runLength === maxBlocks || runLength === MAX_BUFFERS_PER_REQUEST)) {
          requests.push(readRequest(runPhysical * blockSize, runBuffers));
          runBuffers = [];
        }
        if (!empty) continue;
        if (physical === HOLE) {
          pool.image(frame, b * blockSize, blockSize).fill(0);
          pages.states[base + b] = CLEAN;
          continue;
        }
        if (runBuffers.length === 0) runPhysical = physical;
        // Plain views: the requests are the cache's own, and a Buffer's checks would be paid per block.
        runBuffers.push(pool.image(frame, b * blockSize, blockSize));
        reading.push(base + b);
      }
    }
    if (runBuffers.length > 0) requests.push(readRequest(runPhysical * blockSize, runBuffers));
    if (requests.length === 0) return;
    await this.cache.reads.run(requests, now);
    for (const head of reading) pages.states[head] = CLEAN;
    this.cache.counters.pagesRead += frames.length;
  }

  private async translate(block: number): Promise<number> {
    const physical = await (this.map as BlockMap)(block);
    const limit = this.cache.volumeBlocks;
    if (physical !== HOLE && !(Number.isSafeInteger(physical) && physical >= 0 && physical < limit)) {
      throw new RangeError(
        `block map of mapping ${this.id} returned ${describe(physical)} for block ${block}: ` +
          `expected -1 (a hole) or an integer from 0 to ${limit - 1}`,
      );
    }
    return physical;
  }
}

/** A read of consecutive blocks into `buffers`, those that follow one another in memory joined. */
function readRequest(offset: number, buffers: Uint8Array[]): IoRequest {
  return { op: 'read', offset, buffers: buffers.length === 1 ? buffers : joinAdjacent(buffers) };
}
