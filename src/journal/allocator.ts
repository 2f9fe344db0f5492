import { BlockforkError } from '../io/errors';

/**
 * Free space of the physical area of a redirect-on-write volume (format
 * version 2): which of its `physicalBlocks` blocks may be handed to a
 * delta's redirected runs.
 *
 * Every physical block is in exactly one of three states:
 *
 *   free     allocatable now: in `starts`/`ends`;
 *   pending  a delta K stopped using it and K is not checkpointed yet: in
 *            `pendingStarts`/`pendingEnds`/`pendingDeltas`, tagged with K;
 *   used     neither (referenced by the block map, or handed out by
 *            allocate() and not given back).
 *
 * Invariants (checked by the tests after every operation):
 *
 *   1. starts[k] < ends[k] < starts[k+1]: the free extents are ascending,
 *      disjoint and coalesced (two extents never touch), ends exclusive.
 *   2. pendingStarts[k] < pendingEnds[k] <= pendingStarts[k+1]: pending runs
 *      are ascending by start and disjoint; neighbours of the same delta
 *      are coalesced, of different deltas may touch. No pending run
 *      overlaps a free extent.
 *   3. freeBlocks = sum of free extent lengths, pendingBlocks = sum of
 *      pending run lengths; used = physicalBlocks - freeBlocks - pendingBlocks.
 *   4. Deferred free (Tux3): a block delta K stops using becomes free only
 *      at checkpointed(d) with d >= K. Until then a crash and replay could
 *      return to a state that still references it, or a replayed home
 *      write could land on it. Every pending delta is > lastCheckpoint.
 *   5. allocate() hands out free blocks only, so a block is never given
 *      out twice while used; deferFree() takes used blocks only (a free or
 *      pending one is ERR_DOUBLE_FREE and changes nothing).
 *   6. cursor (next-fit) is the block after the last allocation; the
 *      search for space starts there, so a stream lands sequentially.
 *   7. longestBound >= the longest free extent's length.
 *
 * Costs, with n free extents and m pending runs: a binary search per
 * deferFree (plus one array insertion, at the end for runs in ascending
 * order), one linear merge per checkpoint that releases something, and per
 * allocate a scan from the cursor for an extent that holds the count
 * (skipped when the count exceeds a bound on the longest extent, as in a
 * fragmented area) plus one splice per window of extents taken. No
 * per-block arrays: a physical area of 2^32 blocks costs only its extents
 * (fromMap's transient bitmap of one bit per block aside).
 */

/** `length` blocks from physical block `start`. */
export interface Run {
  readonly start: number;
  readonly length: number;
}

/** A run still being built, which the blocks that follow it extend. */
export interface GrowingRun {
  start: number;
  length: number;
}

/** Appends blocks start .. start + length − 1 to `runs`: to the last run when they follow it. */
export function appendRun(runs: GrowingRun[], start: number, length: number): void {
  const last = runs.length === 0 ? undefined : runs[runs.length - 1];
  if (last !== undefined && last.start + last.length === start) last.length += length;
  else runs.push({ start, length });
}

export class Allocator {
  /** Size of the physical area: blocks 0..physicalBlocks-1. */
  readonly physicalBlocks: number;

  /** Free extents [starts[k], ends[k]), invariant 1. */
  private starts: number[] = [];
  private ends: number[] = [];
  private freeBlocks = 0;

  /** Pending runs [pendingStarts[k], pendingEnds[k]) freed by delta pendingDeltas[k], invariant 2. */
  private pendingStarts: number[] = [];
  private pendingEnds: number[] = [];
  private pendingDeltas: number[] = [];
  private pendingBlocks = 0;
  /** The oldest delta with a pending run (Infinity when none): a checkpoint before it releases nothing. */
  private oldestPending = Infinity;

  /** The newest delta checkpointed (-1: none yet). */
  private lastCheckpoint = -1;
  /** Next-fit position: the block after the last allocation. */
  private cursor = 0;
  /**
   * At least the length of the longest free extent (exact after a search
   * that found none long enough): a count above it goes to pieces without a
   * search, so a fragmented area costs no scan per allocate.
   */
  private longestBound = 0;

  /** `free`: the free extents (any order, disjoint, within 0..physicalBlocks-1). */
  constructor(physicalBlocks: number, free: Iterable<Run>) {
    this.physicalBlocks = integer('physicalBlocks', physicalBlocks, 0, Number.MAX_SAFE_INTEGER);
    if (free === null || typeof (free as Partial<Iterable<Run>>)?.[Symbol.iterator] !== 'function') {
      throw new TypeError('free must be an iterable of runs ({ start, length })');
    }
    const runs: [number, number][] = [];
    for (const run of free) runs.push(this.checkRun('free extent', run));
    runs.sort((a, b) => a[0] - b[0]);
    for (const [start, end] of runs) {
      const last = this.ends.length - 1;
      if (last >= 0 && start < this.ends[last]) {
        throw new RangeError(`free extents overlap at block ${start} (${this.starts[last]}..${this.ends[last] - 1} and ${start}..${end - 1})`);
      }
      if (last >= 0 && start === this.ends[last]) this.ends[last] = end;
      else {
        this.starts.push(start);
        this.ends.push(end);
      }
      this.freeBlocks += end - start;
    }
    this.longestBound = this.ends.reduce((longest, end, k) => Math.max(longest, end - this.starts[k]), 0);
  }

  /**
   * Rebuilds free space from the block map: `entries` yields every
   * non-identity entry [logical, physical] (logical < logicalBlocks,
   * physical < physicalBlocks), one entry per logical block at most (the
   * map's own invariant). Used = { i < logicalBlocks whose entry is
   * identity } ∪ { physical of every non-identity entry }; free = the rest.
   * An entry whose physical equals its logical is identity in effect.
   * Nothing is pending: a volume is mounted from a checkpointed state.
   *
   * Throws BlockforkError('ERR_MAP_CORRUPT') when a physical block is
   * referenced twice (by two entries, or by an entry and an identity
   * logical block), or an entry is out of range. The message names the
   * blocks, except when `entries` is a one-shot iterator (a generator, or
   * `map.entries()`): it is iterated once, and naming them takes a second
   * pass that only a re-iterable (an array, a Map) allows.
   *
   * Memory: one transient bit per physical block, then extents. The bit of
   * block b is the parity of its references: set for b < logicalBlocks
   * (identity), then each non-identity entry [l, p] flips bit l (logical l
   * is not at l) and bit p (p is referenced). Flips commute, so entries
   * may come in any order. A map of logicalBlocks blocks has logicalBlocks
   * references in all, so it is sound (every block referenced at most
   * once) exactly when logicalBlocks bits end set: a block referenced
   * twice ends with 0 set bits for 2 references.
   */
  static fromMap(physicalBlocks: number, logicalBlocks: number, entries: Iterable<readonly [number, number]>): Allocator {
    const P = integer('physicalBlocks', physicalBlocks, 0, Number.MAX_SAFE_INTEGER);
    const N = integer('logicalBlocks', logicalBlocks, 0, P);
    if (entries === null || typeof (entries as Partial<Iterable<unknown>>)?.[Symbol.iterator] !== 'function') {
      throw new TypeError('entries must be an iterable of [logical, physical] pairs');
    }
    // Few entries beside the area (a volume mostly at its identity places): sorted lists, no bitmap.
    if (Array.isArray(entries) && entries.length * 64 < P) return Allocator.fromFewEntries(P, N, entries as readonly (readonly [number, number])[]);
    const words = new Uint32Array(Math.ceil(P / 32));
    setBits(words, 0, N);
    setBits(words, P, words.length * 32); // padding past the area: never free
    const flip = (b: number) => {
      words[Math.floor(b / 32)] ^= 1 << b % 32;
    };
    for (const entry of entries) {
      const [logical, physical] = entry;
      checkEntry(logical, physical, N, P);
      if (logical === physical) continue;
      flip(logical);
      flip(physical);
    }
    const free = freeRuns(words, P);
    const used = P - free.reduce((sum, run) => sum + run.length, 0);
    if (used !== N) throw mapCorrupt(P, N, used, entries);
    return new Allocator(P, free);
  }

  /**
   * fromMap for a map with few entries: memory in proportion to them, not
   * to the area. Free = (the blocks identity leaves: [N, P) and every
   * redirected logical block) − (every entry's physical block).
   */
  private static fromFewEntries(P: number, N: number, entries: readonly (readonly [number, number])[]): Allocator {
    const vacated: number[] = [];
    const targets: number[] = [];
    for (const [logical, physical] of entries) {
      checkEntry(logical, physical, N, P);
      if (logical === physical) continue;
      vacated.push(logical);
      targets.push(physical);
    }
    vacated.sort((a, b) => a - b);
    targets.sort((a, b) => a - b);
    for (let i = 1; i < vacated.length; i++) if (vacated[i] === vacated[i - 1]) throw mapCorrupt(P, N, NaN, entries);
    for (let i = 0; i < targets.length; i++) {
      const t = targets[i];
      const twice = i > 0 && t === targets[i - 1];
      // A target below N is taken by its identity block unless that block was redirected.
      const identityUsed = t < N && vacated[lowerBound(vacated, t)] !== t;
      if (twice || identityUsed) throw mapCorrupt(P, N, NaN, entries);
    }
    const free: Run[] = [];
    let t = 0;
    const add = (start: number, end: number) => {
      // [start, end) minus the targets in it.
      while (t < targets.length && targets[t] < start) t++;
      let from = start;
      while (t < targets.length && targets[t] < end) {
        if (targets[t] > from) free.push({ start: from, length: targets[t] - from });
        from = targets[t] + 1;
        t++;
      }
      if (end > from) free.push({ start: from, length: end - from });
    };
    for (let i = 0; i < vacated.length; ) {
      let j = i + 1;
      while (j < vacated.length && vacated[j] === vacated[j - 1] + 1) j++;
      add(vacated[i], vacated[j - 1] + 1);
      i = j;
    }
    add(N, P);
    return new Allocator(P, free);
  }

  /** Blocks allocatable now. */
  get free(): number {
    return this.freeBlocks;
  }

  /** Blocks freed by deltas not checkpointed yet (not allocatable). */
  get pending(): number {
    return this.pendingBlocks;
  }

  /** Blocks in use: physicalBlocks - free - pending. */
  get used(): number {
    return this.physicalBlocks - this.freeBlocks - this.pendingBlocks;
  }

  /** The newest delta checkpointed, -1 before the first checkpointed() call. */
  get checkpointDelta(): number {
    return this.lastCheckpoint;
  }

  /**
   * Allocates up to `count` blocks, next-fit: from a cursor that follows
   * the last allocation, the first free extent that holds the whole count
   * if one does (wrapping round once; the extent the cursor is in counts
   * from the cursor first, and whole last), else pieces in cursor order.
   * Returns runs in allocation order; their total is `count`, or less only
   * when less is free (the caller then decides: wait for a checkpoint, or
   * log the rest whole). Sequential calls on fresh space return
   * consecutive blocks (a stream lands sequentially).
   */
  allocate(count: number): Run[] {
    integer('count', count, 0, Number.MAX_SAFE_INTEGER);
    const n = this.starts.length;
    if (count === 0 || n === 0) return [];
    const { starts, ends } = this;
    // The extent the cursor is in or before (wrapping to the first), and where its part from the cursor begins.
    let first = this.extentEndingAfter(this.cursor);
    let from: number;
    if (first === n) {
      first = 0; // nothing free past the cursor: round to the start
      from = starts[0];
    } else from = Math.max(starts[first], this.cursor);

    // Whole fit: from the cursor to the end of its extent, the extents after, wrapping, then its extent whole.
    if (ends[first] - from >= count) return [this.take(first, from, count)];
    if (count <= this.longestBound) {
      let longest = ends[first] - starts[first];
      for (let k = 1; k < n; k++) {
        const j = (first + k) % n;
        if (ends[j] - starts[j] >= count) return [this.take(j, starts[j], count)];
        longest = Math.max(longest, ends[j] - starts[j]);
      }
      if (from > starts[first] && ends[first] - starts[first] >= count) return [this.take(first, starts[first], count)];
      this.longestBound = longest;
    }

    // Pieces, in cursor order, until count or everything free is taken.
    const pieces: Run[] = [];
    let remaining = Math.min(count, this.freeBlocks);
    const piece = (start: number, end: number) => {
      const length = Math.min(remaining, end - start);
      pieces.push({ start, length });
      remaining -= length;
    };
    piece(from, ends[first]);
    for (let k = 1; k < n && remaining > 0; k++) {
      const j = (first + k) % n;
      piece(starts[j], ends[j]);
    }
    if (remaining > 0 && from > starts[first]) piece(starts[first], from);
    this.subtract([...pieces].sort((a, b) => a.start - b.start));
    const last = pieces[pieces.length - 1];
    this.cursor = last.start + last.length;
    return pieces;
  }

  /**
   * Delta `delta` stops using `run` (its blocks were allocated or
   * identity-used): they become allocatable once `checkpointed(d)` with
   * d >= delta. Throws ERR_DOUBLE_FREE, changing nothing, when a block of
   * the run is free or pending already.
   */
  deferFree(delta: number, run: Run): void {
    integer('delta', delta, 0, Number.MAX_SAFE_INTEGER);
    if (delta <= this.lastCheckpoint) {
      throw new RangeError(`delta ${delta} is checkpointed already (checkpoint ${this.lastCheckpoint}): it can no longer free blocks`);
    }
    const [start, end] = this.checkRun('run', run);
    const f = this.extentEndingAfter(start);
    if (f < this.starts.length && this.starts[f] < end) {
      const block = Math.max(start, this.starts[f]);
      throw new BlockforkError('ERR_DOUBLE_FREE', `delta ${delta} frees physical block ${block}, which is free already (run ${start}..${end - 1})`);
    }
    const { pendingStarts: ps, pendingEnds: pe, pendingDeltas: pd } = this;
    const p = lowerBound(pe, start + 1); // first pending run ending after start
    if (p < ps.length && ps[p] < end) {
      const block = Math.max(start, ps[p]);
      throw new BlockforkError(
        'ERR_DOUBLE_FREE',
        `delta ${delta} frees physical block ${block}, which delta ${pd[p]} freed already (pending its checkpoint; run ${start}..${end - 1})`,
      );
    }
    this.pendingBlocks += end - start;
    this.oldestPending = Math.min(this.oldestPending, delta);
    const joinsLeft = p > 0 && pe[p - 1] === start && pd[p - 1] === delta;
    const joinsRight = p < ps.length && ps[p] === end && pd[p] === delta;
    if (joinsLeft && joinsRight) {
      pe[p - 1] = pe[p];
      ps.splice(p, 1);
      pe.splice(p, 1);
      pd.splice(p, 1);
    } else if (joinsLeft) pe[p - 1] = end;
    else if (joinsRight) ps[p] = start;
    else if (p === ps.length) {
      ps.push(start);
      pe.push(end);
      pd.push(delta);
    } else {
      ps.splice(p, 0, start);
      pe.splice(p, 0, end);
      pd.splice(p, 0, delta);
    }
  }

  /**
   * Makes runs allocatable at once: blocks whose free the caller held until
   * it was safe (redirect.ts holds those that a logged image still targets
   * until a checkpoint). `runs` ascending and disjoint. Throws
   * ERR_DOUBLE_FREE, changing nothing, when a block is free or pending.
   */
  freeNow(runs: readonly Run[]): void {
    const starts: number[] = [];
    const ends: number[] = [];
    let previous = -1;
    for (const run of runs) {
      const [start, end] = this.checkRun('run', run);
      if (start < previous) throw new RangeError(`runs must be ascending and disjoint: ${start} follows ${previous - 1}`);
      previous = end;
      const f = this.extentEndingAfter(start);
      if (f < this.starts.length && this.starts[f] < end) {
        throw new BlockforkError('ERR_DOUBLE_FREE', `physical block ${Math.max(start, this.starts[f])} is free already (run ${start}..${end - 1})`);
      }
      const p = lowerBound(this.pendingEnds, start + 1);
      if (p < this.pendingStarts.length && this.pendingStarts[p] < end) {
        throw new BlockforkError('ERR_DOUBLE_FREE', `physical block ${Math.max(start, this.pendingStarts[p])} is pending already (run ${start}..${end - 1})`);
      }
      starts.push(start);
      ends.push(end);
    }
    for (let k = 0; k < starts.length; k++) this.freeBlocks += ends[k] - starts[k];
    this.merge(starts, ends);
  }

  /**
   * Every delta <= `delta` is checkpointed: their deferred frees become
   * allocatable. Deltas only grow (full 64-bit-safe JS integers); the same
   * delta again is a no-op.
   */
  checkpointed(delta: number): void {
    integer('delta', delta, 0, Number.MAX_SAFE_INTEGER);
    if (delta < this.lastCheckpoint) {
      throw new RangeError(`checkpoints only grow: delta ${delta} is before checkpoint ${this.lastCheckpoint}`);
    }
    this.lastCheckpoint = delta;
    if (this.oldestPending > delta) return;
    // One pass: the released runs come out ascending, the kept ones stay so.
    const { pendingStarts: ps, pendingEnds: pe, pendingDeltas: pd } = this;
    const releasedStarts: number[] = [];
    const releasedEnds: number[] = [];
    let kept = 0;
    let oldest = Infinity;
    for (let k = 0; k < ps.length; k++) {
      if (pd[k] <= delta) {
        releasedStarts.push(ps[k]);
        releasedEnds.push(pe[k]);
        this.pendingBlocks -= pe[k] - ps[k];
        this.freeBlocks += pe[k] - ps[k];
      } else {
        ps[kept] = ps[k];
        pe[kept] = pe[k];
        pd[kept] = pd[k];
        oldest = Math.min(oldest, pd[k]);
        kept++;
      }
    }
    ps.length = pe.length = pd.length = kept;
    this.oldestPending = oldest;
    this.merge(releasedStarts, releasedEnds);
  }

  /** Free extents, ascending, coalesced (for `blockfork check` and tests). */
  extents(): Run[] {
    return this.starts.map((start, k) => ({ start, length: this.ends[k] - start }));
  }

  /** Pending runs, ascending by start, each with the delta that freed it (for `blockfork check` and tests). */
  pendingRuns(): (Run & { readonly delta: number })[] {
    return this.pendingStarts.map((start, k) => ({ start, length: this.pendingEnds[k] - start, delta: this.pendingDeltas[k] }));
  }

  /** Index of the first free extent that ends after `block` (starts.length if none). */
  private extentEndingAfter(block: number): number {
    return lowerBound(this.ends, block + 1);
  }

  /** Takes [start, start+count) out of free extent k, which holds it; moves the cursor past it. */
  private take(k: number, start: number, count: number): Run {
    const { starts, ends } = this;
    const end = start + count;
    if (start === starts[k] && end === ends[k]) {
      starts.splice(k, 1);
      ends.splice(k, 1);
    } else if (start === starts[k]) starts[k] = end;
    else if (end === ends[k]) ends[k] = start;
    else {
      starts.splice(k + 1, 0, end);
      ends.splice(k + 1, 0, ends[k]);
      ends[k] = start;
    }
    this.freeBlocks -= count;
    this.cursor = end;
    return { start, length: count };
  }

  /**
   * Takes `runs` (ascending, each within one free extent) out of the free
   * extents. Allocated pieces take whole extents of a window of consecutive
   * ones (two when they wrap), save a part at each end: each window is
   * replaced by what remains of it in one splice, the last window first so
   * that the indices of the earlier one hold.
   */
  private subtract(runs: readonly Run[]): void {
    const index = runs.map((run) => this.extentEndingAfter(run.start));
    let high = runs.length - 1;
    while (high >= 0) {
      let low = high;
      while (low > 0 && index[low] - index[low - 1] <= 1) low--;
      this.subtractWindow(index[low], index[high], runs.slice(low, high + 1));
      high = low - 1;
    }
  }

  /** Takes `runs` (ascending) out of free extents first..last, which hold them. */
  private subtractWindow(first: number, last: number, runs: readonly Run[]): void {
    const starts: number[] = [];
    const ends: number[] = [];
    let r = 0;
    for (let k = first; k <= last; k++) {
      let position = this.starts[k];
      const end = this.ends[k];
      while (r < runs.length && runs[r].start < end) {
        const { start, length } = runs[r++];
        if (start < position || start + length > end) throw new Error(`allocator: run ${start}+${length} is not within free extent ${this.starts[k]}..${end - 1}`);
        if (start > position) {
          starts.push(position);
          ends.push(start);
        }
        position = start + length;
        this.freeBlocks -= length;
      }
      if (position < end) {
        starts.push(position);
        ends.push(end);
      }
    }
    if (r < runs.length) throw new Error(`allocator: run ${runs[r].start}+${runs[r].length} is not free`);
    this.starts.splice(first, last - first + 1, ...starts);
    this.ends.splice(first, last - first + 1, ...ends);
  }

  /** Merges released runs (ascending, disjoint, none overlapping a free extent) into the free extents, coalescing. */
  private merge(addStarts: readonly number[], addEnds: readonly number[]): void {
    const starts: number[] = [];
    const ends: number[] = [];
    const push = (start: number, end: number) => {
      const last = ends.length - 1;
      if (last >= 0 && start < ends[last]) throw new Error(`allocator: released run ${start}..${end - 1} overlaps free ${starts[last]}..${ends[last] - 1}`);
      if (last >= 0 && start === ends[last]) ends[last] = end;
      else {
        starts.push(start);
        ends.push(end);
      }
      this.longestBound = Math.max(this.longestBound, ends[ends.length - 1] - starts[starts.length - 1]);
    };
    let i = 0;
    let j = 0;
    while (i < this.starts.length || j < addStarts.length) {
      if (j === addStarts.length || (i < this.starts.length && this.starts[i] < addStarts[j])) {
        push(this.starts[i], this.ends[i]);
        i++;
      } else {
        push(addStarts[j], addEnds[j]);
        j++;
      }
    }
    this.starts = starts;
    this.ends = ends;
  }

  /** Validates a run within the area: returns [start, end). */
  private checkRun(name: string, run: Run): [number, number] {
    if (run === null || typeof run !== 'object') throw new TypeError(`${name} must be a run ({ start, length }), not ${String(run)}`);
    const start = integer(`${name}.start`, run.start, 0, Number.MAX_SAFE_INTEGER);
    const length = integer(`${name}.length`, run.length, 1, Number.MAX_SAFE_INTEGER);
    if (start + length > this.physicalBlocks) {
      const error = new RangeError(`${name} ${start}..${start + length - 1} is outside the physical area (blocks 0..${this.physicalBlocks - 1})`);
      (error as RangeError & { code: string }).code = 'ERR_OUT_OF_RANGE';
      throw error;
    }
    return [start, start + length];
  }
}

/** Throws ERR_MAP_CORRUPT unless [logical, physical] lies within N logical and P physical blocks. */
function checkEntry(logical: number, physical: number, N: number, P: number): void {
  if (!Number.isSafeInteger(logical) || !Number.isSafeInteger(physical) || logical < 0 || logical >= N || physical < 0 || physical >= P) {
    throw new BlockforkError(
      'ERR_MAP_CORRUPT',
      `block map entry [logical ${String(logical)}, physical ${String(physical)}] is out of range (${N} logical blocks, ${P} physical blocks)`,
    );
  }
}

/** `value` as an integer in min..max: TypeError if not a number, RangeError if not such an integer. */
function integer(name: string, value: number, min: number, max: number): number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, not ${typeof value}`);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer in ${min}..${max}, not ${value}`);
  }
  return value;
}

/** Index of the first element of ascending `values` that is >= `value` (values.length if none). */
function lowerBound(values: readonly number[], value: number): number {
  let low = 0;
  let high = values.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (values[middle] < value) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Sets bits [from, to) of a bitmap. */
function setBits(words: Uint32Array, from: number, to: number): void {
  let b = from;
  while (b < to && b % 32 !== 0) {
    words[Math.floor(b / 32)] |= 1 << b % 32;
    b++;
  }
  const fullEnd = to - (to % 32);
  if (b < fullEnd) {
    words.fill(0xffffffff, b / 32, fullEnd / 32);
    b = fullEnd;
  }
  for (; b < to; b++) words[Math.floor(b / 32)] |= 1 << b % 32;
}

/** The runs of clear bits of a bitmap whose bits from `P` on are set. */
function freeRuns(words: Uint32Array, P: number): Run[] {
  const runs: Run[] = [];
  let runStart = -1;
  const close = (end: number) => {
    if (runStart >= 0) runs.push({ start: runStart, length: end - runStart });
    runStart = -1;
  };
  for (let w = 0; w < words.length; w++) {
    const word = words[w];
    const base = w * 32;
    if (word === 0xffffffff) close(base);
    else if (word === 0) {
      if (runStart < 0) runStart = base;
    } else {
      for (let bit = 0; bit < 32; bit++) {
        if ((word >>> bit) & 1) close(base + bit);
        else if (runStart < 0) runStart = base + bit;
      }
    }
  }
  close(P);
  return runs;
}

/**
 * The error for a block map whose references do not add up (`used` blocks
 * referenced where a sound map references `N`): names the blocks when
 * `entries` can be iterated again.
 */
function mapCorrupt(P: number, N: number, used: number, entries: Iterable<readonly [number, number]>): BlockforkError {
  const iterator = entries[Symbol.iterator]();
  if ((iterator as unknown) === entries) {
    return new BlockforkError(
      'ERR_MAP_CORRUPT',
      `block map references physical blocks more than once: ${used} blocks in use where ${N} logical blocks are mapped (pass the map as an array or a Map to name the blocks)`,
    );
  }
  // Second pass, on the error path only: the references of each physical block an entry names.
  const redirected = new Map<number, number[]>(); // logical -> its entries' physicals
  const referrers = new Map<number, string[]>(); // physical -> who references it
  for (const entry of { [Symbol.iterator]: () => iterator }) {
    const [logical, physical] = entry;
    if (logical === physical) continue;
    redirected.set(logical, [...(redirected.get(logical) ?? []), physical]);
    referrers.set(physical, [...(referrers.get(physical) ?? []), `logical ${logical}`]);
  }
  const problems: string[] = [];
  for (const [logical, physicals] of redirected) {
    if (physicals.length > 1) problems.push(`logical block ${logical} has ${physicals.length} entries (physical ${physicals.join(', ')})`);
  }
  const twice = [...referrers]
    .map(([physical, who]) => (physical < N && !redirected.has(physical) ? [physical, [...who, `logical ${physical} (identity)`]] as const : [physical, who] as const))
    .filter(([, who]) => who.length > 1)
    .sort((a, b) => a[0] - b[0]);
  for (const [physical, who] of twice) problems.push(`physical block ${physical} is referenced by ${who.join(' and ')}`);
  const shown = problems.slice(0, 8).join('; ');
  const more = problems.length > 8 ? `; and ${problems.length - 8} more` : '';
  return new BlockforkError('ERR_MAP_CORRUPT', `block map is corrupt (${P} physical blocks, ${N} logical): ${problems.length ? shown + more : `${used} blocks in use where ${N} are mapped`}`);
}
