/**
 * Where each block of a delta goes, in a version 2 volume (Tux3's
 * redirect-on-write, with our log as its forward log):
 *
 *   a run of at least `thresholdBlocks` consecutive volume blocks
 *       -> redirected: written once, to newly allocated physical blocks
 *          (contiguous where the allocator has room), before the same
 *          flush as the delta's log records; the map entries change in
 *          this delta, and the old physical blocks are freed once it is
 *          durable (see "deferred free" below);
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
 * Deferred free. A redirected block takes a new physical block before its
 * old one is free. The old one, freed by delta K, may be reused once no
 * crash can bring back a state that reads it, and no replay can write over
 * it after its reuse:
 *
 *   - once K is durable, every replay ends at K or later: no state before K
 *     comes back (the next delta's writes go out only after K's flush);
 *   - but replay rewrites every logged image after the checkpoint: if a
 *     delta still in the log logged an image to that block (a short run
 *     there, before K moved it), its reuse must wait for a checkpoint that
 *     covers K, or replay would put the old image over the new owner's data.
 *
 * So a free is released when K is durable, unless the block is *pinned* by
 * a logged image in the live log; a pinned one is held here until a
 * checkpoint covers K. A stream, whose runs are all redirected, reuses its
 * space as fast as its deltas become durable.
 *
 * When the free space cannot hold the delta's long runs and frees are on
 * their way (pending durability, or held for a checkpoint), the plan waits
 * for them before allocating; what still does not fit is logged whole, so a
 * delta never fails for want of reserve while it fits in the log.
 */
import { appendRun, type Allocator, type GrowingRun, type Run } from './allocator';
import type { MapDirty, VolumeMap } from './block-map';
import type { JournalBlock, JournalBlockList, JournalRun } from './home-area';

/**
 * 64 KiB: the shortest run whose move costs a later sequential reader no
 * more than a longer run's does, while its write already gains most of what
 * redirecting gains.
 *
 * What a run's redirect trades: its map change (one entry per block, one or
 * two map blocks logged and written home per run, shared by every run in the
 * same map block) against the second write it saves; and a piece of a region
 * that was contiguous on disk moved elsewhere, which a sequential reader
 * pays for. Measured with `blockfork bench --only redirect-threshold`
 * (random runs of one length over a 1 GiB image, every run redirected
 * against every run logged, timed to close; then the region read in order),
 * two runs of 8 KiB to 1 MiB on a quiet machine:
 *
 *   - the write, redirected against logged: 1.04–1.26× at 8 KiB, 1.08–1.43×
 *     at 16, 1.26–1.38× at 32, 1.21–1.45× at 64, 1.39–1.77× at 128,
 *     1.41–1.66× at 256 KiB and 1 MiB;
 *   - the read after it: 0.42–0.49× at 8 KiB, 0.53–0.69× at 16, 0.59–0.73×
 *     at 32, and 0.60–0.78× from 64 KiB to 1 MiB, where every length falls
 *     in the same band (the reader pays per piece moved, whatever its size,
 *     once a piece is a large transfer of its own).
 *
 * Below 64 KiB a moved piece costs a reader more and the write gains less;
 * a higher threshold would not lower the reader's price, and would log the
 * runs below it twice for nothing.
 */
export const DEFAULT_REDIRECT_BYTES = 64 << 10;

export interface PlannedDelta {
  readonly logged: JournalBlock[];
  /** Runs of new homes, each allocated whole: a block's own object is not needed (a stream's delta has thousands). */
  readonly redirected: JournalRun[];
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
  /**
   * Physical block -> the newest delta that logged an image to it, for the
   * deltas after the checkpoint: the first `folded` entries of `pins`. It is
   * brought up to date only by a plan that frees blocks (foldPins), the one
   * place it is read: a run of small commits, which frees nothing, adds a
   * delta's pins to a list and drops them at the next checkpoint, without a
   * Map entry per logged block (the plan's largest cost in an awaited
   * one-block commit).
   */
  private readonly pinned = new Map<number, number>();
  /** The pins each delta made, oldest first, to drop at checkpoints. */
  private readonly pins: { delta: number; physicals: number[] }[] = [];
  /** How many of `pins`, from the oldest, are in `pinned`. */
  private folded = 0;
  /** Frees of pinned blocks, oldest first: released once a checkpoint covers their delta. */
  private readonly held: { delta: number; runs: Run[] }[] = [];
  private heldCount = 0;
  private wakers: (() => void)[] = [];

  constructor(
    readonly map: VolumeMap,
    readonly allocator: Allocator,
    /** Runs of at least this many blocks are redirected. */
    readonly thresholdBlocks: number,
    /** Asks for a checkpoint of what is at home (held frees need one). */
    private readonly askCheckpoint: () => void,
    /** Whether a delta of this many logged images and redirected blocks fits in the log. */
    private readonly fitsLog: (logged: number, redirected: number) => boolean,
  ) {}

  /** Free blocks held until a checkpoint (pinned by a logged image). */
  get heldBlocks(): number {
    return this.heldCount;
  }

  /** Delta `delta` and every earlier one are durable: their unpinned frees are free now. */
  durable(delta: number): void {
    this.allocator.checkpointed(delta);
    this.wake();
  }

  /** A checkpoint covers every delta up to `delta`: their logged images are never replayed again. */
  checkpointed(delta: number): void {
    while (this.pins.length > 0 && this.pins[0].delta <= delta) {
      const { physicals } = this.pins.shift() as { physicals: number[] };
      // Pins never folded never entered the map: they are dropped with their list.
      if (this.folded === 0) continue;
      this.folded--;
      for (const p of physicals) if ((this.pinned.get(p) ?? Infinity) <= delta) this.pinned.delete(p);
    }
    const released: number[] = [];
    while (this.held.length > 0 && this.held[0].delta <= delta) {
      for (const run of (this.held.shift() as { runs: Run[] }).runs) for (let b = run.start; b < run.start + run.length; b++) released.push(b);
    }
    if (released.length > 0) {
      this.heldCount -= released.length;
      this.allocator.freeNow(coalesce(released));
    }
    this.wake();
  }

  /** Wakes plans waiting for space (also when the journal failed: they go on and fail on their own). */
  wake(): void {
    const wakers = this.wakers;
    this.wakers = [];
    for (const wake of wakers) wake();
  }

  private nextRelease(): Promise<void> {
    return new Promise((resolve) => this.wakers.push(resolve));
  }

  /** Plans delta `delta` (its full number): `blocks` by volume block, ascending. */
  async plan(delta: number, blocks: JournalBlockList, dirty: MapDirty): Promise<PlannedDelta> {
    const runs = this.runs(blocks);
    let threshold = this.thresholdBlocks;
    let wanted = 0;
    for (const [from, to] of runs) if (to - from >= threshold) wanted += to - from;
    // A delta whose short runs (and the map blocks it may change) would not fit in the log redirects them too.
    if (!this.fitsLog(blocks.length - wanted + this.mapBlocksBound(blocks, runs), wanted)) {
      threshold = 1;
      wanted = blocks.length;
    }
    // Frees on their way are all of earlier deltas here (this one has freed nothing yet).
    while (wanted > this.allocator.free && (this.allocator.pending > 0 || this.heldCount > 0)) {
      this.counters.reserveWaits++;
      const released = this.nextRelease();
      if (this.heldCount > 0) this.askCheckpoint();
      await released;
    }
    // Every run's lookups need their map blocks: those not cached are read together, now.
    this.map.prefetch(runs.map(([from, to]) => [blocks.home(from), blocks.home(to - 1) + 1]));
    const logged: JournalBlock[] = [];
    const redirected: JournalRun[] = [];
    let redirectedBlocks = 0;
    // The map blocks the redirected runs change: none in a delta of short runs alone.
    let touched: Map<number, Buffer> | undefined;
    // The old copies of the redirected blocks, as runs in the order of the blocks.
    const freed: GrowingRun[] = [];
    const pinnedNow: number[] = [];
    const start = this.map.physicalStart;
    for (const [from, to] of runs) {
      let at = from;
      if (to - from >= threshold) {
        // A run of the delta is consecutive volume blocks: each allocated run takes the next of them,
        // looked up and mapped a map block at a time (a stream's plan awaits nothing per block).
        for (const run of this.allocator.allocate(to - from)) {
          const volumeFirst = blocks.home(at);
          const lookup = this.map.physicals(volumeFirst, run.length, freed);
          if (lookup !== undefined) await lookup;
          await this.map.setRun(volumeFirst, run.start, run.length, dirty, (touched ??= new Map()));
          // Joined where the frames follow one another: no view per block lives on to the write.
          redirected.push({ home: start + run.start, images: blocks.images(at, at + run.length) });
          at += run.length;
          redirectedBlocks += run.length;
        }
      }
      for (; at < to; at++) {
        let physical = this.map.physical(blocks.home(at));
        if (typeof physical !== 'number') physical = await physical;
        logged.push({ home: start + physical, image: blocks.image(at) });
        pinnedNow.push(physical);
      }
    }
    const held: number[] = [];
    let released: Run[];
    // This delta's own pins come after: a block it logs is not one it frees (they are other volume blocks' homes).
    const pinned = freed.length > 0 ? this.foldPins() : undefined;
    if (pinned !== undefined && pinned.size > 0) {
      const unpinned: number[] = [];
      for (const run of freed) for (let p = run.start; p < run.start + run.length; p++) (pinned.has(p) ? held : unpinned).push(p);
      released = coalesce(unpinned);
    } else released = sortRuns(freed);
    for (const run of released) this.allocator.deferFree(delta, run);
    if (held.length > 0) {
      this.held.push({ delta, runs: coalesce(held) });
      this.heldCount += held.length;
    }
    if (pinnedNow.length > 0) this.pins.push({ delta, physicals: pinnedNow });
    const mapBlocks = touched === undefined ? [] : this.map.seal(touched);
    this.counters.redirectedBlocks += redirectedBlocks;
    this.counters.loggedBlocks += logged.length;
    this.counters.mapBlocksLogged += mapBlocks.length;
    const all = mapBlocks.length === 0 ? logged : mapBlocks.concat(logged);
    sortByHome(all);
    sortByHome(redirected);
    return { logged: all, redirected };
  }

  /** `pinned`, with every delta's pins since the last fold added, oldest first (a newer delta's pin wins). */
  private foldPins(): Map<number, number> {
    for (; this.folded < this.pins.length; this.folded++) {
      const { delta, physicals } = this.pins[this.folded];
      for (const p of physicals) this.pinned.set(p, delta);
    }
    return this.pinned;
  }

  /** At most the map and summary blocks a plan of these blocks (in `runs`) changes: the map blocks their entries lie in, a run at a time. */
  private mapBlocksBound(blocks: JournalBlockList, runs: readonly (readonly [number, number])[]): number {
    let count = 0;
    let last = -1;
    for (const [from, to] of runs) {
      const first = this.map.mapBlockOf(blocks.home(from));
      const end = this.map.mapBlockOf(blocks.home(to - 1));
      // Runs ascend: a map block shared with the run before is counted once.
      count += end - Math.max(first, last + 1) + 1;
      last = end;
    }
    return 2 * count;
  }

  /** Runs of consecutive volume blocks, as [from, to) index pairs. */
  private runs(blocks: JournalBlockList): [number, number][] {
    const runs: [number, number][] = [];
    let from = 0;
    for (let i = 1; i <= blocks.length; i++) {
      if (i === blocks.length || blocks.home(i) !== blocks.home(i - 1) + 1) {
        runs.push([from, i]);
        from = i;
      }
    }
    return blocks.length === 0 ? [] : runs;
  }
}

/** Sorts by home, unless already sorted (a stream's redirected runs are, allocated next-fit). */
function sortByHome(blocks: { readonly home: number }[]): void {
  for (let i = 1; i < blocks.length; i++) {
    if (blocks[i].home < blocks[i - 1].home) {
      blocks.sort((a, b) => a.home - b.home);
      return;
    }
  }
}

/** Runs sorted by start, those that meet end to end joined (overlapping ones are left apart, for deferFree to refuse). */
function sortRuns(runs: GrowingRun[]): Run[] {
  let sorted = true;
  for (let i = 1; i < runs.length && sorted; i++) sorted = runs[i].start > runs[i - 1].start;
  if (!sorted) runs.sort((a, b) => a.start - b.start);
  const out: GrowingRun[] = [];
  for (const run of runs) appendRun(out, run.start, run.length);
  return out;
}

/** Physical blocks as sorted runs (a block listed twice starts a run of its own, for deferFree to refuse). */
function coalesce(blocks: readonly number[]): Run[] {
  return sortRuns(blocks.map((start) => ({ start, length: 1 })));
}
