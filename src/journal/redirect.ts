/**
 * Where each block of a delta goes, in a version 2 volume (Tux3's
 * redirect-on-write, with our log as its forward log):
 *
 *   a run of at least `thresholdBlocks` consecutive volume blocks
 *       -> redirected: written once, to newly allocated physical blocks
 *          (contiguous where the allocator has room), in the same batch as
 *          the delta's log records; the map entries change in this delta,
 *          and the old physical blocks are freed once it is checkpointed;
 *   a shorter run
 *       -> logged whole, then written home at its current physical block,
 *          as in version 1 (one durable write for the commit, no map change).
 *
 * Redirecting costs a map entry (4 bytes, in map blocks that are logged)
 * and a descriptor entry (12 bytes) per block instead of a second write of
 * the whole block, but it moves the block: a short run among others would
 * scatter a region that was contiguous on disk, and its map block would be
 * logged for a few blocks' sake. See DEFAULT_REDIRECT_BYTES for the
 * threshold.
 *
 * Reserve: a redirected block takes a new physical block before its old one
 * is free. When the free space cannot hold the delta's long runs and
 * earlier deltas have frees pending, the plan waits for a checkpoint (which
 * frees them) before allocating; what still does not fit is logged whole,
 * so a delta never fails for want of reserve while it fits in the log.
 */
import type { Allocator, Run } from './allocator';
import type { MapDirty, VolumeMap } from './block-map';
import type { JournalBlock } from './home-area';

/**
 * 64 KiB: at this size a run's map change (one entry per block, one or two
 * map blocks logged and written home per run, shared by every run in the
 * same map block) costs a few percent of the second write it saves, and a
 * region is moved in pieces of at least this size, which a sequential read
 * takes in stride (a fraction of the 1 MiB requests it is read with).
 */
export const DEFAULT_REDIRECT_BYTES = 64 << 10;

export interface PlannedDelta {
  readonly logged: JournalBlock[];
  readonly redirected: JournalBlock[];
}

export interface RedirectCounters {
  /** Blocks written once to new homes. */
  redirectedBlocks: number;
  /** Data blocks logged whole (short runs, or no room in the reserve). */
  loggedBlocks: number;
  /** Map and summary blocks logged. */
  mapBlocksLogged: number;
  /** Times a plan waited for a checkpoint to free reserve. */
  reserveWaits: number;
}

export class Redirector {
  readonly counters: RedirectCounters = { redirectedBlocks: 0, loggedBlocks: 0, mapBlocksLogged: 0, reserveWaits: 0 };

  constructor(
    readonly map: VolumeMap,
    readonly allocator: Allocator,
    /** Runs of at least this many blocks are redirected. */
    readonly thresholdBlocks: number,
    /**
     * Asks for a checkpoint of what is at home and resolves once one has
     * completed (the allocator has been told): frees pending before it
     * become free.
     */
    private readonly checkpointSoon: () => Promise<void>,
  ) {}

  /** Plans delta `delta` (its full number): `blocks` by volume block, ascending. */
  async plan(delta: number, blocks: readonly JournalBlock[], dirty: MapDirty): Promise<PlannedDelta> {
    const runs = this.runs(blocks);
    let wanted = 0;
    for (const [from, to] of runs) if (to - from >= this.thresholdBlocks) wanted += to - from;
    // Pending frees are all of earlier deltas here (this one has freed nothing yet): a checkpoint releases them.
    while (wanted > this.allocator.free && this.allocator.pending > 0) {
      this.counters.reserveWaits++;
      await this.checkpointSoon();
    }
    const logged: JournalBlock[] = [];
    const redirected: JournalBlock[] = [];
    const touched = new Map<number, Buffer>();
    const freed: number[] = [];
    const start = this.map.physicalStart;
    for (const [from, to] of runs) {
      let at = from;
      if (to - from >= this.thresholdBlocks) {
        for (const run of this.allocator.allocate(to - from)) {
          for (let p = run.start; p < run.start + run.length; p++, at++) {
            const volumeBlock = blocks[at].home;
            let old = this.map.physical(volumeBlock);
            if (typeof old !== 'number') old = await old;
            freed.push(old);
            await this.map.set(volumeBlock, p, dirty, touched);
            redirected.push({ home: start + p, image: blocks[at].image });
          }
        }
      }
      for (; at < to; at++) {
        let physical = this.map.physical(blocks[at].home);
        if (typeof physical !== 'number') physical = await physical;
        logged.push({ home: start + physical, image: blocks[at].image });
      }
    }
    for (const run of coalesce(freed)) this.allocator.deferFree(delta, run);
    const mapBlocks = this.map.seal(touched);
    this.counters.redirectedBlocks += redirected.length;
    this.counters.loggedBlocks += logged.length;
    this.counters.mapBlocksLogged += mapBlocks.length;
    const all = mapBlocks.length === 0 ? logged : mapBlocks.concat(logged);
    all.sort((a, b) => a.home - b.home);
    redirected.sort((a, b) => a.home - b.home);
    return { logged: all, redirected };
  }

  /** Runs of consecutive volume blocks, as [from, to) index pairs. */
  private runs(blocks: readonly JournalBlock[]): [number, number][] {
    const runs: [number, number][] = [];
    let from = 0;
    for (let i = 1; i <= blocks.length; i++) {
      if (i === blocks.length || blocks[i].home !== blocks[i - 1].home + 1) {
        runs.push([from, i]);
        from = i;
      }
    }
    return blocks.length === 0 ? [] : runs;
  }
}

/** Physical blocks as sorted runs. */
function coalesce(blocks: number[]): Run[] {
  blocks.sort((a, b) => a - b);
  const runs: Run[] = [];
  for (let i = 0; i < blocks.length; ) {
    let j = i + 1;
    while (j < blocks.length && blocks[j] === blocks[j - 1] + 1) j++;
    runs.push({ start: blocks[i], length: j - i });
    i = j;
  }
  return runs;
}
