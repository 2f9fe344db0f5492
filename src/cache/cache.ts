import assert from 'node:assert/strict';
import { Mutex } from 'async-mutex';
import { describe } from '../io/describe';
import { BlockforkError } from '../io/errors';
import type { BlockIo } from '../io/request';
import { Lru } from './lru';
import { Mapping, type BlockMap } from './mapping';
import { CLEAN, EMPTY, FROZEN, NO_FRAME, Pages, WRITTEN, dirtyIn, isDirty } from './page';
import { PagePool } from './pool';

export interface CacheOptions {
  readonly device: BlockIo;
  readonly pageSize: number;
  readonly blockSize: number;
  /** Bytes of cached pages (frozen copies come on top). */
  readonly cacheSize: number;
  /** Delta slots: a power of two, more than the deltas that can hold dirty blocks at once. */
  readonly slotCount: number;
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
}

interface PageLock {
  readonly mutex: Mutex;
  users: number;
}

/**
 * The page cache: the page pool, the per-frame records, the LRU of clean
 * pages, the mappings and their page tables, and the page locks. It knows
 * buffer states but not deltas: the delta layer above says which slot is
 * current and when a slot's writeout is done.
 *
 * Pins. Every operation that awaits while it uses a frame pins it (`busy`)
 * first, so that it is neither evicted nor freed under it; block handles pin
 * with `holds`, which follow the page to its copy on a fork. The page lock
 * (an async mutex, made only while someone holds or wants it) serialises
 * readpage and fork on one page; it is never held across a device write.
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
  readonly pool: PagePool;
  readonly pages: Pages;
  readonly lru: Lru;
  /** The physical mapping of the whole device. */
  readonly volume: Mapping;
  readonly counters: CacheCounters = { pagesRead: 0, evictions: 0, spaceWaits: 0 };

  private readonly whenFull: () => Promise<void> | undefined;
  private readonly mappings = new Map<number, Mapping>();
  private readonly locks = new Map<number, PageLock>();
  private nextMappingId = 0;
  private cached = 0;
  private dirty = 0;
  private frozen = 0;

  constructor(options: CacheOptions) {
    this.device = options.device;
    this.pageSize = options.pageSize;
    this.blockSize = options.blockSize;
    this.perPage = options.pageSize / options.blockSize;
    this.slotCount = options.slotCount;
    this.capacity = Math.max(1, Math.floor(options.cacheSize / options.pageSize));
    this.deviceBlocks = Math.floor(options.device.geometry.size / options.blockSize);
    this.whenFull = options.whenFull;
    this.pool = new PagePool(options.pageSize, this.capacity);
    this.pages = new Pages(this.perPage, this.pool.slabPages);
    this.lru = new Lru(this.pool.slabPages);
    this.volume = this.createMapping(undefined, this.deviceBlocks);
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

  createMapping(map: BlockMap | undefined, blockCount: number): Mapping {
    const mapping = new Mapping(this, this.nextMappingId++, blockCount, map);
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
    let result: T | Promise<T>;
    try {
      target = this.target(mapping);
      target.checkBlock(block);
    } catch (error) {
      return Promise.reject(error);
    }
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
   * A copy of a block as the cache holds it now, read first if it is not
   * cached: the caller may do what it likes with it, no frozen image can
   * change through it (G1).
   */
  copyOut(mapping: Mapping, block: number): Buffer | Promise<Buffer> {
    const pageIndex = Math.floor(block / this.perPage);
    const head = block - pageIndex * this.perPage;
    const frame = mapping.table.get(pageIndex);
    if (frame !== undefined && this.pages.states[frame * this.perPage + head] !== EMPTY) {
      this.lru.touch(frame);
      return Buffer.from(this.view(frame, head));
    }
    return this.copyOutRead(mapping, block, head);
  }

  /** A block's view in a frame. */
  view(frame: number, block: number): Buffer {
    return this.pool.view(frame, block * this.blockSize, this.blockSize);
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
    return this.locks.has(frame);
  }

  /** Takes the page lock of a frame the caller has pinned; resolves with its release. */
  async lock(frame: number): Promise<() => void> {
    let lock = this.locks.get(frame);
    if (lock === undefined) {
      lock = { mutex: new Mutex(), users: 0 };
      this.locks.set(frame, lock);
    }
    lock.users++;
    const held = lock;
    const release = await held.mutex.acquire();
    return () => {
      release();
      if (--held.users === 0) this.locks.delete(frame);
    };
  }

  /**
   * The frame of a page, pinned; a page not cached comes in with every block
   * EMPTY. When the cache is full of dirty and pinned pages, this is the one
   * place a caller waits for writeout.
   */
  async page(mapping: Mapping, pageIndex: number): Promise<number> {
    for (;;) {
      const frame = mapping.table.get(pageIndex);
      if (frame !== undefined) {
        this.pin(frame);
        return frame;
      }
      const fresh = this.admitNow(mapping, pageIndex);
      if (fresh !== NO_FRAME) return fresh;
      const wait = this.whenFull();
      if (wait === undefined) return this.admit(mapping, pageIndex);
      this.counters.spaceWaits++;
      await wait;
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
  async uptodate(mapping: Mapping, block: number): Promise<number> {
    const pageIndex = Math.floor(block / this.perPage);
    const head = block - pageIndex * this.perPage;
    for (;;) {
      const frame = await this.page(mapping, pageIndex);
      if (this.pages.states[frame * this.perPage + head] !== EMPTY) return frame;
      const unlock = await this.lock(frame);
      let current: boolean;
      try {
        current = mapping.table.get(pageIndex) === frame;
        if (current && this.pages.states[frame * this.perPage + head] === EMPTY) await mapping.readpage(frame, pageIndex);
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
   * Marks a block dirty in `slot` in place. The caller has checked that no
   * block of the page is dirty in another slot. Returns whether the page was
   * clean before (it has just joined the mapping's dirty list for the slot).
   */
  markDirty(mapping: Mapping, frame: number, block: number, slot: number): boolean {
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

  private async copyOutRead(mapping: Mapping, block: number, head: number): Promise<Buffer> {
    const frame = await this.uptodate(mapping, block);
    const copy = Buffer.from(this.view(frame, head));
    this.unpin(frame);
    return copy;
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
