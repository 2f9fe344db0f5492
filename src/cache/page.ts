/**
 * Pages and their buffer heads.
 *
 * A page is one frame of native page memory (`pageSize` bytes, a slot of a
 * slab in the PagePool) that holds `perPage = pageSize / blockSize` blocks.
 * Each block has a buffer head, and a buffer head is ONE byte: its state. As
 * in Tux3, "dirty in which delta" is part of the state value, so it can never
 * disagree with "dirty".
 *
 * BUFFER STATES
 *
 *   EMPTY (0)       The block's bytes in the frame mean nothing: the block was
 *                   never read, or its read failed. Only the holder of the
 *                   page lock moves a block out of EMPTY, so a read in flight
 *                   never lands on bytes someone else has written.
 *
 *   CLEAN (1)       The bytes are what the device holds (or what a completed
 *                   write gave it).
 *
 *   DIRTY + k       The bytes were changed in the delta whose slot is k
 *   (2 .. 2+127)    (slot = delta number mod the slot count, a power of two,
 *                   so slots stay in step when the 32-bit delta numbers wrap).
 *                   They must reach the device in that delta's writeout.
 *
 *       EMPTY --readpage-------------------------------> CLEAN
 *       EMPTY --overwrite (page lock held)-------------> DIRTY + current
 *       CLEAN --blockdirty (in place)------------------> DIRTY + current
 *       DIRTY + current --blockdirty-------------------> (unchanged: already dirty)
 *       DIRTY + earlier --blockdirty-------------------> the page forks: the copy
 *                         (now cached) holds DIRTY + current, the original
 *                         (now frozen) keeps DIRTY + earlier
 *       DIRTY + k --writeout of slot k's delta done----> CLEAN (or the frozen
 *                                                        frame is freed)
 *
 * PAGE STATES (of a frame as a whole)
 *
 *   FREE     On the pool's free list; its metadata means nothing.
 *   CACHED   In its mapping's page table. Clean, unpinned cached pages are in
 *            the LRU and may be evicted; dirty or pinned ones are not.
 *   FROZEN   Forked away: out of the page table, still on its delta's dirty
 *            list, its memory read by (or queued for) that delta's writeout
 *            and written by nobody.
 *
 *       FREE --obtain (cache miss)--> CACHED --evict (clean, unpinned)--> FREE
 *       CACHED --fork--> FROZEN --writeout done, unpinned--> FREE
 *
 *   A CACHED page may also be READ_AHEAD: it came in with a readahead
 *   window (or a prefetch) and no one has used it yet. It is clean once its
 *   read lands, on the LRU like any clean page, so it goes before every page
 *   used since it came in; the first use (a read, or a write that dirties
 *   it) clears the flag, an eviction first counts it as wasted. The cache
 *   holds at most a stated share of such pages (cache.ts). MARK: the page
 *   whose first use starts the next window of its stream (readahead.ts).
 *   A readahead window only admits pages that are not cached, and fills
 *   them under their page locks, so it never lands on a dirty block.
 *
 * INVARIANTS
 *
 *   - All dirty blocks of one page are dirty in one delta (one slot): a page
 *     dirty in an earlier delta is forked before any block of it is dirtied
 *     in the current one, and a fork moves every dirty block to the copy.
 *   - A page is on its mapping's dirty list for slot k iff some block of it
 *     is DIRTY + k.
 *   - The front end never writes the memory of a page dirty in an earlier
 *     delta: that memory is the earlier delta's image (guarantee G1).
 */

/** Buffer states: one byte per block. */
export const EMPTY = 0;
export const CLEAN = 1;
export const DIRTY = 2;
/** Slots fit in the byte beside EMPTY and CLEAN (and are a power of two). */
export const MAX_SLOTS = 128;

/** A frame number that names no frame. */
export const NO_FRAME = -1;

/** Page flag: forked away, kept only for its delta's writeout. */
export const FROZEN = 1;
/** Page flag: a frozen page whose writeout is done; freed once unpinned. */
export const WRITTEN = 2;
/** Page flag: read ahead and not used yet (counted against the readahead share of the cache). */
export const READ_AHEAD = 4;
/** Page flag: its first use starts its stream's next readahead window. */
export const MARK = 8;

export function dirtyIn(slot: number): number {
  return DIRTY + slot;
}

export function isDirty(state: number): boolean {
  return state >= DIRTY;
}

/**
 * The per-frame records of every page, as parallel typed arrays indexed by
 * frame number rather than one object per page or per block: a cached page
 * costs the JS heap a few dozen bytes beyond its data (guarantee G7's
 * budget), and the hot path reads a byte rather than chasing a pointer.
 */
export class Pages {
  /** Buffer heads: `states[frame * perPage + block]`. */
  states: Uint8Array;
  /** Which page of its mapping the frame holds. */
  index: Float64Array;
  /** The id of the mapping the frame belongs to. */
  owner: Int32Array;
  /** FROZEN, WRITTEN. */
  flags: Uint8Array;
  /** Pins of operations in progress: they stay with the frame through a fork. */
  busy: Int32Array;
  /** Pins of block handles: they follow the page to its copy on a fork, as Tux3's buffer heads do. */
  holds: Int32Array;
  /** The page lock (cache.ts): 0 free, 1 held, 2 held with waiters. A frame is unlocked when it joins. */
  locks: Uint8Array;

  constructor(readonly perPage: number, frames: number) {
    this.states = new Uint8Array(frames * perPage);
    this.index = new Float64Array(frames);
    this.owner = new Int32Array(frames);
    this.flags = new Uint8Array(frames);
    this.busy = new Int32Array(frames);
    this.holds = new Int32Array(frames);
    this.locks = new Uint8Array(frames);
  }

  get frames(): number {
    return this.owner.length;
  }

  /** Makes room for frame numbers below `frames`, keeping every record. */
  grow(frames: number): void {
    if (frames <= this.frames) return;
    this.states = grown(this.states, new Uint8Array(frames * this.perPage));
    this.index = grown(this.index, new Float64Array(frames));
    this.owner = grown(this.owner, new Int32Array(frames));
    this.flags = grown(this.flags, new Uint8Array(frames));
    this.busy = grown(this.busy, new Int32Array(frames));
    this.holds = grown(this.holds, new Int32Array(frames));
    this.locks = grown(this.locks, new Uint8Array(frames));
  }

  /** Sets every buffer head of a frame that is joining the cache. */
  reset(frame: number, owner: number, index: number): void {
    this.states.fill(EMPTY, frame * this.perPage, (frame + 1) * this.perPage);
    this.owner[frame] = owner;
    this.index[frame] = index;
    this.flags[frame] = 0;
    this.busy[frame] = 0;
    this.holds[frame] = 0;
  }

  /** The state shared by the page's dirty blocks, or CLEAN when none is dirty. */
  dirtyState(frame: number): number {
    const base = frame * this.perPage;
    for (let i = 0; i < this.perPage; i++) {
      const state = this.states[base + i];
      if (state >= DIRTY) return state;
    }
    return CLEAN;
  }

  pinned(frame: number): boolean {
    return this.busy[frame] !== 0 || this.holds[frame] !== 0;
  }
}

function grown<T extends Uint8Array | Int32Array | Float64Array>(old: T, fresh: T): T {
  fresh.set(old as never);
  return fresh;
}
