import assert from 'node:assert/strict';
import { describe } from '../io/describe';
import { BlockforkError } from '../io/errors';
import type { BlockIo } from '../io/request';
import { Lru } from './lru';
import { Mapping, type BlockMap } from './mapping';
import { CLEAN, EMPTY, FROZEN, MARK, NO_FRAME, Pages, READ_AHEAD, WRITTEN, dirtyIn, isDirty } from './page';
import { PagePool } from './pool';
import { ReadBatch } from './read-batch';

export interface CacheOptions {
  readonly device: BlockIo;
  readonly pageSize: number;
  readonly blockSize: number;
  /** Bytes of cached pages (frozen copies come on top). */
  readonly cacheSize: number;
  /** Delta slots: a power of two, more than the deltas that can hold dirty blocks at once. */
  readonly slotCount: number;
  /** Bytes of the largest readahead window; 0 (the default) turns readahead off. */
  readonly readahead?: number;
  /** Blocks of the volume mapping (default: the device's). */
  readonly volumeBlocks?: number;
  /**
   * Volume block -> device block, for the volume mapping and the logical
   * ones (whose maps give volume blocks): a version 2 volume's block map.
   * Without it, a volume block is a device block.
   */
  readonly lower?: BlockMap;
  /**
   * Asked when a page must come in and every cached page is dirty or pinned:
   * a promise that settles when writeout may have freed some (the caller
   * waits, as G2 allows), or undefined when nothing in flight can free any
   * (the cache then overcommits rather than deadlock a change that is bigger
   * than the cache).
   */
  readonly whenFull: () => Promise<void> | undefined;
}

export interface CacheCounters {
  pagesRead: number;
  evictions: number;
  /** Times a page had to wait for writeout to free a frame. */
  spaceWaits: number;
  /** Pages brought in by readahead windows and prefetches. */
  readaheadPages: number;
  /** Of those, pages used (read or written) before they were evicted. */
  readaheadUsed: number;
  /** Of those, pages evicted (or dropped with their mapping) without a use. */
  readaheadWasted: number;
}

/**
 * The share of the cache that pages read ahead and not used yet may take:
 * a quarter, so that readahead for a few streams fits beside a working set,
 * and a reader that stops leaves at most that much to be evicted.
 */
export const READAHEAD_SHARE = 4;

/**
 * Frames a readahead window leaves obtainable (free, or clean and
 * evictable) for the misses of readers: a window never takes the last of
 * them, so that a reader's own miss never has to overcommit the cache or
 * wait for writeout because of pages read ahead.
 */
const READAHEAD_RESERVE = 4;

/**
 * The page cache: the page pool, the per-frame records, the LRU of clean
 * pages, the mappings and their page tables, and the page locks. It knows
 * buffer states but not deltas: the delta layer above says which slot is
 * current and when a slot's writeout is done.
 *
 * Pins. Every operation that awaits while it uses a frame pins it (`busy`)
 * first, so that it is neither evicted nor freed under it (and so does the
 * first use of a page that starts a readahead window, whose admissions
 * evict: see `used`); block handles pin
 * with `holds`, which follow the page to its copy on a fork. The page lock
 * (a byte per frame, and a queue of waiters only while someone waits)
 * serialises readpage and fork on one page; it is never held across a
 * device write.
 *
 * Reads. Every read goes through `reads` (read-batch.ts): the misses of one
 * turn go down together, merged where they follow one another. A miss, and
 * the first use of a page read ahead, tell the mapping's readahead
 * (readahead.ts), which may start a window: `startWindow` admits the pages
 * that are not cached, takes their page locks before anyone can see them,
 * and reads them in the background, so that a reader who comes for one
 * waits on that read instead of issuing its own.
 */
export class Cache {
  readonly device: BlockIo;
  readonly pageSize: number;
  readonly blockSize: number;
  /** Blocks per page. */
  readonly perPage: number;
  readonly slotCount: number;
  /** Pages the cache keeps at most (frozen copies aside). */
  readonly capacity: number;
  /** Blocks on the device. */
  readonly deviceBlocks: number;
  /** Blocks of the volume mapping: what logical mappings' maps may name. */
  readonly volumeBlocks: number;
  /** Volume block -> device block, when the volume has a block map of its own (version 2). */
  readonly lower: BlockMap | undefined;
  readonly pool: PagePool;
  readonly pages: Pages;
  readonly lru: Lru;
  /** The physical mapping of the whole device. */
  readonly volume: Mapping;
  readonly counters: CacheCounters = { pagesRead: 0, evictions: 0, spaceWaits: 0, readaheadPages: 0, readaheadUsed: 0, readaheadWasted: 0 };
  /** Reads on their way to the device, batched and merged. */
  readonly reads: ReadBatch;
  /** Pages of the largest readahead window; 0: readahead is off. */
  readonly readaheadPages: number;
  /** Pages read ahead may take at most this many frames until they are used. */
  readonly readaheadLimit: number;

  private readonly whenFull: () => Promise<void> | undefined;
  private readonly mappings = new Map<number, Mapping>();
  /**
   * The waiters of held page locks (FIFO), only while some wait; the locks
   * themselves are a byte per frame (`pages.locks`). A lock is held across
   * a read into the page's EMPTY blocks or a fork, never across a wait for
   * anything else, so it is almost always free when asked for: a readahead
   * window takes one per page. A Mutex object and a map entry per lock
   * (async-mutex, as this was first written) cost 1.2 to 1.8 µs a page
   * there; the byte 0.03 to 0.06 µs, and a window's locks are taken
   * synchronously.
   */
  private readonly lockWaiters = new Map<number, (() => void)[]>();
  private nextMappingId = 0;
  private cached = 0;
  private dirty = 0;
  private frozen = 0;
  /** Cached pages flagged READ_AHEAD. */
  private unused = 0;
  /**
   * Frames admitted by readahead, oldest first (from `readaheadHead` on):
   * when the share is full, the oldest that is still unused and evictable
   * makes room, so that the windows of streams that were left go before
   * those of a stream that lasts. Entries of frames used or freed since are
   * skipped.
   */
  private readaheadOrder: number[] = [];
  private readaheadHead = 0;

  constructor(options: CacheOptions) {
    this.device = options.device;
    this.pageSize = options.pageSize;
    this.blockSize = options.blockSize;
    this.perPage = options.pageSize / options.blockSize;
    this.slotCount = options.slotCount;
    this.capacity = Math.max(1, Math.floor(options.cacheSize / options.pageSize));
    this.deviceBlocks = Math.floor(options.device.geometry.size / options.blockSize);
    this.volumeBlocks = options.volumeBlocks ?? this.deviceBlocks;
    this.lower = options.lower;
    this.whenFull = options.whenFull;
    this.reads = new ReadBatch(options.device);
    this.readaheadLimit = Math.floor(this.capacity / READAHEAD_SHARE);
    // Half the share at most: a stream's next window is admitted while the pages of the one
    // before are still unused, and with a window as large as the share it would evict them.
    this.readaheadPages = Math.min(Math.floor((options.readahead ?? 0) / options.pageSize), Math.floor(this.readaheadLimit / 2));
    this.pool = new PagePool(options.pageSize, this.capacity);
    this.pages = new Pages(this.perPage, this.pool.slabPages);
    this.lru = new Lru(this.pool.slabPages);
    this.volume = this.createMapping(undefined, this.volumeBlocks);
  }

  get pagesCached(): number {
    return this.cached;
  }

  /** Cached pages with a dirty block. */
  get pagesDirty(): number {
    return this.dirty;
  }

  /** Forked-away pages still held for their delta's writeout. */
  get pagesFrozen(): number {
    return this.frozen;
  }

  /** `internal`: the volume's own metadata by device block (see Mapping.internal). */
  createMapping(map: BlockMap | undefined, blockCount: number, internal = false): Mapping {
    const mapping = new Mapping(this, this.nextMappingId++, blockCount, map, internal);
    this.mappings.set(mapping.id, mapping);
    return mapping;
  }

  private owns(mapping: Mapping): boolean {
    return this.mappings.get(mapping.id) === mapping;
  }

  /**
   * Forgets a mapping whose pages are all clean and unpinned (its dirty ones
   * written by a commit) and on which no operation is in flight. Refused with
   * ERR_MAPPING_BUSY otherwise: an operation in flight may not have pinned
   * its page yet, and would land it in a page table no one writes out.
   */
  dropMapping(mapping: Mapping): void {
    if (mapping === this.volume) throw new TypeError('the volume mapping cannot be dropped');
    if (mapping.dropped) throw droppedError(mapping);
    if (mapping.operations > 0) {
      throw new BlockforkError('ERR_MAPPING_BUSY', `mapping ${mapping.id} has ${mapping.operations} operations in flight; let them settle first`);
    }
    for (const frame of mapping.table.values()) {
      if (this.pages.pinned(frame) || this.pages.dirtyState(frame) !== CLEAN) {
        throw new BlockforkError('ERR_MAPPING_BUSY', `mapping ${mapping.id} has dirty or referenced pages; commit and release them first`);
      }
    }
    for (const frame of mapping.table.values()) this.evict(frame);
    this.mappings.delete(mapping.id);
    mapping.dropped = true;
  }

  /** The mapping an operation names: the volume's when none is given. */
  target(mapping: unknown): Mapping {
    if (mapping === undefined) return this.volume;
    if (mapping instanceof Mapping && mapping.dropped) throw droppedError(mapping);
    if (!(mapping instanceof Mapping) || !this.owns(mapping)) {
      throw new TypeError(`mapping must be a Mapping of this volume, got ${describe(mapping)}`);
    }
    return mapping;
  }

  /**
   * Runs an operation on `block` of `mapping` (the volume's when undefined):
   * checks both, then counts the operation in flight on the mapping until
   * what `op` returns has settled, so that the mapping cannot be dropped
   * under it. Every refusal rejects.
   */
  operate<T>(mapping: unknown, block: unknown, op: (target: Mapping) => T | Promise<T>): Promise<T> {
    let target: Mapping;
    try {
      target = this.target(mapping);
      target.checkBlock(block);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.counted(target, op);
  }

  /** `operate` for a run of `count` blocks from `first`. */
  operateRange<T>(mapping: unknown, first: unknown, count: unknown, op: (target: Mapping) => T | Promise<T>): Promise<T> {
    let target: Mapping;
    try {
      target = this.target(mapping);
      target.checkRange(first, count);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.counted(target, op);
  }

  /** Runs `op` on a checked mapping, counted in flight on it until what it returns has settled. */
  private counted<T>(target: Mapping, op: (target: Mapping) => T | Promise<T>): Promise<T> {
    let result: T | Promise<T>;
    target.operations++;
    try {
      result = op(target);
    } catch (error) {
      target.operations--;
      return Promise.reject(error);
    }
    if (!(result instanceof Promise)) {
      target.operations--;
      return Promise.resolve(result);
    }
    return result.then(
      (value) => {
        target.operations--;
        return value;
      },
      (error: unknown) => {
        target.operations--;
        throw error;
      },
    );
  }

  /**
   * A copy of `block` of `mapping` (the volume's when undefined) as the cache
   * holds it now, read first if it is not cached: the caller may do what it
   * likes with it, no frozen image can change through it (G1). `operate`
   * with the copy, except that a miss counts itself in flight on the
   * mapping (see copyOutRead): a read that misses is the random reader's
   * whole cost, and `operate`'s extra promise layer a share of it.
   */
  copyOut(mapping: unknown, block: unknown): Promise<Buffer> {
    try {
      const target = this.target(mapping);
      target.checkBlock(block);
      const b = block as number;
      const pageIndex = Math.floor(b / this.perPage);
      const head = b - pageIndex * this.perPage;
      const frame = target.table.get(pageIndex);
      if (frame !== undefined && this.pages.states[frame * this.perPage + head] !== EMPTY) {
        this.lru.touch(frame);
        this.used(target, frame);
        return Promise.resolve(this.copyOf(frame, head));
      }
      target.operations++;
      return this.copyOutRead(target, b, head);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * A copy of a block of a frame in memory of its own: never Node's shared
   * pool (which Buffer.allocUnsafe uses below 4 KiB), so that the caller may
   * transfer its ArrayBuffer to a worker without taking other copies with it.
   */
  private copyOf(frame: number, block: number): Buffer {
    const copy = Buffer.allocUnsafeSlow(this.blockSize);
    copy.set(this.image(frame, block));
    return copy;
  }

  /** A block's view in a frame. */
  view(frame: number, block: number): Buffer {
    return this.pool.view(frame, block * this.blockSize, this.blockSize);
  }

  /** The memory a frame lies in (an image's, without a view of it: see imageOffset). */
  frameMemory(frame: number): ArrayBuffer {
    return this.pool.memoryOf(frame);
  }

  /** Where a block of a frame lies in its frameMemory. */
  imageOffset(frame: number, block: number): number {
    return this.pool.byteOffsetOf(frame, block * this.blockSize);
  }

  /** A block's memory in a frame as a plain Uint8Array: an image for the cache's own writes. */
  image(frame: number, block: number): Uint8Array {
    return this.pool.image(frame, block * this.blockSize, this.blockSize);
  }

  pin(frame: number): void {
    this.pages.busy[frame]++;
    this.lru.remove(frame);
  }

  unpin(frame: number): void {
    this.pages.busy[frame]--;
    this.settle(frame);
  }

  hold(frame: number): void {
    this.pages.holds[frame]++;
    this.lru.remove(frame);
  }

  unhold(frame: number): void {
    this.pages.holds[frame]--;
    this.settle(frame);
  }

  isLocked(frame: number): boolean {
    return this.pages.locks[frame] !== 0;
  }

  /** Takes the page lock of a frame the caller has pinned; resolves with its release. */
  lock(frame: number): Promise<() => void> {
    const release = this.tryLock(frame);
    if (release !== undefined) return Promise.resolve(release);
    return new Promise((resolve) => {
      let waiters = this.lockWaiters.get(frame);
      if (waiters === undefined) this.lockWaiters.set(frame, (waiters = []));
      this.pages.locks[frame] = 2;
      // Handed over by the holder's release: the lock stays held, now by this waiter.
      waiters.push(() => resolve(this.releaser(frame)));
    });
  }

  /** The page lock of a pinned frame if it is free now (its release), else undefined. */
  tryLock(frame: number): (() => void) | undefined {
    if (this.pages.locks[frame] !== 0) return undefined;
    this.pages.locks[frame] = 1;
    return this.releaser(frame);
  }

  /** A release of the page lock of `frame`, which does something the first time only. */
  private releaser(frame: number): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (this.pages.locks[frame] === 1) {
        this.pages.locks[frame] = 0;
        return;
      }
      const waiters = this.lockWaiters.get(frame) as (() => void)[];
      const next = waiters.shift() as () => void;
      if (waiters.length === 0) {
        this.lockWaiters.delete(frame);
        this.pages.locks[frame] = 1;
      }
      next();
    };
  }

  /**
   * The frame of a page, pinned; a page not cached comes in with every block
   * EMPTY. When the cache is full of dirty and pinned pages, this is the one
   * place a caller waits for writeout.
   */
  page(mapping: Mapping, pageIndex: number): number | Promise<number> {
    const frame = this.pageNow(mapping, pageIndex);
    // Nothing to wait for, as on almost every call: the frame itself, with no promise and no turn.
    return frame !== NO_FRAME ? frame : this.pageWhenRoom(mapping, pageIndex);
  }

  /** The frame of a page, pinned, if it is cached or there is room for it now; else NO_FRAME. */
  private pageNow(mapping: Mapping, pageIndex: number): number {
    const frame = mapping.table.get(pageIndex);
    if (frame !== undefined) {
      this.pin(frame);
      return frame;
    }
    return this.admitNow(mapping, pageIndex);
  }

  /** `page` when the cache is full of dirty and pinned pages: waits for writeout to make room. */
  private async pageWhenRoom(mapping: Mapping, pageIndex: number): Promise<number> {
    for (;;) {
      // The writeout's own metadata never waits for room: the room it would wait for is its own delta's.
      const wait = mapping.internal ? undefined : this.whenFull();
      if (wait === undefined) return this.admit(mapping, pageIndex);
      this.counters.spaceWaits++;
      await wait;
      const frame = this.pageNow(mapping, pageIndex);
      if (frame !== NO_FRAME) return frame;
    }
  }

  /**
   * Brings a page that is not cached into the cache, pinned, with every
   * block EMPTY, if there is room (evicting if need be); NO_FRAME if the
   * cache is full of dirty and pinned pages.
   */
  admitNow(mapping: Mapping, pageIndex: number): number {
    while (this.cached >= this.capacity && this.lru.length > 0) this.evict(this.lru.oldest());
    return this.cached < this.capacity ? this.admit(mapping, pageIndex) : NO_FRAME;
  }

  /** The frame of a block brought up to date (read if EMPTY), pinned. */
  uptodate(mapping: Mapping, block: number): Promise<number> {
    const pageIndex = Math.floor(block / this.perPage);
    const head = block - pageIndex * this.perPage;
    if (!mapping.table.has(pageIndex)) this.missed(mapping, pageIndex, 1);
    return this.uptodateHeads(mapping, pageIndex, head, head + 1);
  }

  /** The frame of a page whose blocks `from` to `to - 1` are up to date (read if EMPTY), pinned. */
  async uptodateHeads(mapping: Mapping, pageIndex: number, from: number, to: number): Promise<number> {
    for (;;) {
      let frame = this.page(mapping, pageIndex);
      if (typeof frame !== 'number') frame = await frame;
      this.used(mapping, frame);
      if (!this.anyEmpty(frame, from, to)) return frame;
      const unlock = this.tryLock(frame) ?? (await this.lock(frame));
      let current: boolean;
      try {
        current = mapping.table.get(pageIndex) === frame;
        if (current && this.anyEmpty(frame, from, to)) await mapping.readpage(frame, pageIndex);
      } catch (error) {
        this.unpin(frame);
        throw error;
      } finally {
        unlock();
      }
      if (current) return frame;
      // Forked while we waited for the lock: the copy is the page now.
      this.unpin(frame);
    }
  }

  /**
   * The frames of the pages that hold blocks `first` to `first + count - 1`,
   * each up to date for the blocks of the run and pinned: their misses go
   * down together (one batch, merged), a sequential run as a readahead
   * window. The caller keeps the run within `rangeLimit` pages, so that it
   * fits the cache beside what is pinned.
   */
  async uptodateRun(mapping: Mapping, first: number, count: number): Promise<number[]> {
    const perPage = this.perPage;
    const firstPage = Math.floor(first / perPage);
    const lastPage = Math.floor((first + count - 1) / perPage);
    if (!mapping.table.has(firstPage)) this.missed(mapping, firstPage, lastPage - firstPage + 1);
    const pending: Promise<number>[] = [];
    for (let p = firstPage; p <= lastPage; p++) {
      const from = p === firstPage ? first - p * perPage : 0;
      const to = p === lastPage ? first + count - p * perPage : perPage;
      pending.push(this.uptodateHeads(mapping, p, from, to));
    }
    const settled = await Promise.allSettled(pending);
    const frames: number[] = [];
    let failure: unknown;
    for (const result of settled) {
      if (result.status === 'fulfilled') frames.push(result.value);
      else failure ??= result.reason;
    }
    if (failure !== undefined) {
      for (const frame of frames) this.unpin(frame);
      throw failure;
    }
    return frames;
  }

  /** Pages a range call brings in at once: the readahead share, so that a long run never crowds the cache. */
  get rangeLimit(): number {
    return Math.max(1, this.readaheadLimit);
  }

  /** A copy of blocks `first` to `first + count - 1` as the cache holds them now, read first where they are not cached. */
  async copyRange(mapping: Mapping, first: number, count: number): Promise<Buffer> {
    // Never from Node's shared pool (see copyOf).
    const out = Buffer.allocUnsafeSlow(count * this.blockSize);
    const step = this.rangeLimit * this.perPage;
    for (let start = first; start < first + count; start += step) {
      const n = Math.min(step, first + count - start);
      const frames = await this.uptodateRun(mapping, start, n);
      const firstPage = Math.floor(start / this.perPage);
      for (let b = start; b < start + n; b++) {
        const p = Math.floor(b / this.perPage);
        out.set(this.image(frames[p - firstPage], b - p * this.perPage), (b - first) * this.blockSize);
      }
      for (const frame of frames) this.unpin(frame);
    }
    return out;
  }

  /** Starts reading blocks `first` to `first + count - 1` where they are not cached, without waiting (see startWindow). */
  prefetch(mapping: Mapping, first: number, count: number): void {
    const firstPage = Math.floor(first / this.perPage);
    const lastPage = Math.floor((first + count - 1) / this.perPage);
    this.startWindow(mapping, firstPage, lastPage - firstPage + 1, -1, false);
  }

  private anyEmpty(frame: number, from: number, to: number): boolean {
    const base = frame * this.perPage;
    for (let b = from; b < to; b++) if (this.pages.states[base + b] === EMPTY) return true;
    return false;
  }

  /**
   * Marks a block dirty in `slot` in place. The caller has checked that no
   * block of the page is dirty in another slot. Returns whether the page was
   * clean before (it has just joined the mapping's dirty list for the slot).
   */
  markDirty(mapping: Mapping, frame: number, block: number, slot: number): boolean {
    if (this.pages.flags[frame] & READ_AHEAD) this.firstUse(frame);
    const wasClean = this.pages.dirtyState(frame) === CLEAN;
    this.pages.states[frame * this.perPage + block] = dirtyIn(slot);
    if (!wasClean) return false;
    mapping.dirty[slot].push(frame);
    this.dirty++;
    this.lru.remove(frame);
    return true;
  }

  /** A fresh frame for the copy of a page being forked: forks never wait for space (the cached count does not change). */
  allocCopy(): number {
    return this.alloc();
  }

  /**
   * Puts `copy` in the page table in place of `frame`, which is frozen for
   * its delta's writeout; handles held on the page follow it to the copy. The
   * caller has set the copy's buffer heads, dirty in `slot`.
   */
  replace(mapping: Mapping, pageIndex: number, frame: number, copy: number, slot: number): void {
    const pages = this.pages;
    pages.owner[copy] = mapping.id;
    pages.index[copy] = pageIndex;
    pages.flags[copy] = 0;
    pages.busy[copy] = 0;
    pages.holds[copy] = pages.holds[frame];
    pages.holds[frame] = 0;
    pages.flags[frame] |= FROZEN;
    mapping.table.set(pageIndex, copy);
    mapping.dirty[slot].push(copy);
    this.frozen++;
  }

  /**
   * After the writeout of `slot`'s delta has completed: its blocks are CLEAN,
   * its frozen frames are freed (once unpinned), its dirty list is empty.
   */
  written(mapping: Mapping, slot: number): void {
    const { pages, perPage } = this;
    const list = mapping.dirty[slot];
    const state = dirtyIn(slot);
    for (const frame of list) {
      if (pages.flags[frame] & FROZEN) {
        pages.flags[frame] |= WRITTEN;
        this.settle(frame);
        continue;
      }
      const base = frame * perPage;
      for (let b = 0; b < perPage; b++) if (pages.states[base + b] === state) pages.states[base + b] = CLEAN;
      this.dirty--;
      this.settle(frame);
    }
    list.length = 0;
  }

  /**
   * The read path met a cached page: if it came in by readahead, this is its
   * first use, and if it is its stream's mark, the next window starts now,
   * while the reader still has this one's pages ahead of it.
   */
  used(mapping: Mapping, frame: number): void {
    const flags = this.pages.flags[frame];
    if ((flags & (READ_AHEAD | MARK)) === 0) return;
    if (flags & READ_AHEAD) this.firstUse(frame);
    if (flags & MARK) {
      this.pages.flags[frame] &= ~MARK;
      const next = mapping.readahead?.marked(this.pages.index[frame]);
      if (next === undefined) return;
      // The window's admissions evict the oldest clean, unpinned pages, and this
      // page may be one of them (pages read ahead are among the oldest), while
      // the caller goes on with its frame (blockdirty holds no pin of its own):
      // it would dirty a freed frame, and the write would be lost. Pinned, the
      // page stays; unpinned, it goes back on the LRU as just used.
      this.pin(frame);
      this.startWindow(mapping, next.start, next.size, next.mark, true);
      this.unpin(frame);
    }
  }

  /**
   * The read path is about to miss page `pageIndex`, wanting `wanted` pages
   * from it: a sequential stream reads its window ahead (the missed page
   * first); a random miss reads only what it wants, as it would anyway.
   */
  missed(mapping: Mapping, pageIndex: number, wanted: number): void {
    const window = mapping.readahead?.miss(pageIndex, wanted);
    if (window !== undefined) this.startWindow(mapping, window.start, window.size, window.mark, true);
  }

  /**
   * Starts reading pages of a mapping that are not cached, without waiting
   * for them (posix_fadvise WILLNEED): `prefetch`, and readahead windows.
   * Each page is admitted and its page lock taken before this returns, so a
   * reader that comes for it meanwhile waits on the read in flight rather
   * than issue its own. Pages already cached are left alone (a cached page's
   * EMPTY blocks are read by whoever needs them). Admission never waits and
   * never evicts anything but clean, unpinned pages: a window stops where
   * the cache is full of dirty and pinned pages, and (`limited`, readahead
   * rather than an explicit prefetch) where pages read ahead and not yet
   * used reach `readaheadLimit`.
   */
  startWindow(mapping: Mapping, start: number, size: number, mark: number, limited: boolean): void {
    const perPage = this.perPage;
    const end = Math.min(start + size, Math.ceil(mapping.blockCount / perPage));
    const frames: number[] = [];
    const indexes: number[] = [];
    const unlocks: (() => void)[] = [];
    let marked = mark < 0;
    let p = start;
    for (; p < end; p++) {
      if (mapping.table.has(p)) continue;
      if (limited && ((this.unused >= this.readaheadLimit && !this.evictOldestUnused()) || this.obtainable() <= READAHEAD_RESERVE)) break;
      const frame = this.admitNow(mapping, p);
      if (frame === NO_FRAME) break;
      // The volume's own metadata (the block map) is looked up through cached views, never
      // through used(): flagged, its pages would hold the readahead share until evicted.
      if (!mapping.internal) {
        this.pages.flags[frame] |= READ_AHEAD;
        this.unused++;
        this.noteReadahead(frame);
      }
      if (!marked && p >= mark) {
        this.pages.flags[frame] |= MARK;
        marked = true;
      }
      // The lock is taken now, before anyone can see the page: a frame just admitted is not locked.
      unlocks.push(this.tryLock(frame) as () => void);
      frames.push(frame);
      indexes.push(p);
    }
    if (limited && p < end) mapping.readahead?.cut(start, p);
    if (frames.length === 0) return;
    this.counters.readaheadPages += frames.length;
    // Nobody awaits a window: a read that fails leaves its blocks EMPTY, and the
    // reader that needs one reads it again and meets the error itself.
    void this.readWindow(mapping, frames, indexes, unlocks).catch(() => undefined);
  }

  private async readWindow(mapping: Mapping, frames: number[], indexes: number[], unlocks: (() => void)[]): Promise<void> {
    try {
      await mapping.readPages(frames, indexes, true);
    } finally {
      for (const unlock of unlocks) unlock();
      for (const frame of frames) this.unpin(frame);
    }
  }

  /** Frames a page could have now without waiting: free ones, and clean unpinned ones to evict. */
  private obtainable(): number {
    return this.capacity - this.cached + this.lru.length;
  }

  /**
   * Evicts the oldest page read ahead and still unused, if one is evictable; whether one was.
   * Entries of pages used or freed since are dropped; those of unused pages that are pinned
   * now (their window still in flight) are kept, in order: dropping them would leave their
   * pages counted in `unused` with no entry to find them by, and a share full of such pages
   * would stop every later window for good.
   */
  private evictOldestUnused(): boolean {
    const order = this.readaheadOrder;
    const flags = this.pages.flags;
    const kept: number[] = [];
    for (let i = this.readaheadHead; i < order.length; i++) {
      const frame = order[i];
      if (!(flags[frame] & READ_AHEAD)) continue;
      if (!this.lru.has(frame)) {
        kept.push(frame);
        continue;
      }
      this.evict(frame);
      // The kept entries go back just before the rest, in the slots already passed.
      const head = i + 1 - kept.length;
      for (let k = 0; k < kept.length; k++) order[head + k] = kept[k];
      this.readaheadHead = head;
      return true;
    }
    this.readaheadOrder = kept;
    this.readaheadHead = 0;
    return false;
  }

  /** Notes a frame admitted by readahead; entries of frames used since are dropped once they outnumber the cache. */
  private noteReadahead(frame: number): void {
    if (this.readaheadOrder.length - this.readaheadHead >= 2 * this.capacity) {
      this.readaheadOrder = this.readaheadOrder.slice(this.readaheadHead).filter((f) => (this.pages.flags[f] & READ_AHEAD) !== 0);
      this.readaheadHead = 0;
    }
    this.readaheadOrder.push(frame);
  }

  private firstUse(frame: number): void {
    this.pages.flags[frame] &= ~READ_AHEAD;
    this.unused--;
    this.counters.readaheadUsed++;
  }

  /** copyOut's miss, counted in flight on its mapping (by the caller) until it settles. */
  private async copyOutRead(mapping: Mapping, block: number, head: number): Promise<Buffer> {
    try {
      const frame = await this.uptodate(mapping, block);
      const copy = this.copyOf(frame, head);
      this.unpin(frame);
      return copy;
    } finally {
      mapping.operations--;
    }
  }

  /** Frees every slab: the volume is closed. */
  release(): void {
    for (const mapping of this.mappings.values()) mapping.table.clear();
    this.pool.release();
  }

  /** A frame whose last pin is gone goes where its state says: freed if frozen and written, the LRU if clean. */
  private settle(frame: number): void {
    const pages = this.pages;
    if (pages.pinned(frame)) return;
    const flags = pages.flags[frame];
    if (flags & WRITTEN) {
      pages.owner[frame] = NO_FRAME;
      this.pool.free(frame);
      this.frozen--;
    } else if (!(flags & FROZEN) && !this.lru.has(frame) && !isDirty(pages.dirtyState(frame))) {
      this.lru.insert(frame);
    }
  }

  private admit(mapping: Mapping, pageIndex: number): number {
    // A frame in a forgotten page table would fail the eviction of some unrelated operation later.
    assert.ok(!mapping.dropped, `a page of mapping ${mapping.id} came in after it was dropped`);
    const frame = this.alloc();
    this.pages.reset(frame, mapping.id, pageIndex);
    this.pages.busy[frame] = 1;
    mapping.table.set(pageIndex, frame);
    this.cached++;
    return frame;
  }

  private evict(frame: number): void {
    const mapping = this.mappings.get(this.pages.owner[frame]) as Mapping;
    if (this.pages.flags[frame] & READ_AHEAD) {
      this.unused--;
      this.counters.readaheadWasted++;
    }
    this.lru.remove(frame);
    mapping.table.delete(this.pages.index[frame]);
    this.pages.owner[frame] = NO_FRAME;
    this.pool.free(frame);
    this.cached--;
    this.counters.evictions++;
  }

  private alloc(): number {
    const frame = this.pool.alloc();
    const limit = this.pool.frameLimit;
    if (limit > this.pages.frames) {
      const frames = Math.max(limit, this.pages.frames * 2);
      this.pages.grow(frames);
      this.lru.grow(frames);
    }
    return frame;
  }
}

/** The error of an operation on a dropped mapping: a caller's mistake, like a bad argument. */
function droppedError(mapping: Mapping): TypeError {
  return Object.assign(new TypeError(`mapping ${mapping.id} has been dropped: create a new mapping to use its blocks again`), {
    code: 'ERR_MAPPING_DROPPED',
  });
}
