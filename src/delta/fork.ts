import assert from 'node:assert/strict';
import type { Mapping } from '../cache/mapping';
import { CLEAN, DIRTY, EMPTY, NO_FRAME, dirtyIn, isDirty, type Pages } from '../cache/page';
import type { Delta } from './delta';
import type { Deltas } from './transition';

/**
 * blockdirty and the buffer fork (Tux3, Daniel Phillips, 2009).
 *
 * Before the front end writes a block, blockdirty makes it dirty in the
 * writer's delta (the open one). Two predicates carry the whole decision:
 *
 *   - already dirty in this delta: write in place, nothing else to do;
 *   - can modify in place: no block of the page is dirty in an earlier delta,
 *     so no writeout reads (or will read) this memory: dirty it in place.
 *
 * Otherwise the page is dirty in an earlier delta, whose writeout is in
 * flight or queued: its memory is that delta's image (G1) and must not
 * change. Rather than wait for the write (G2), the page is forked: a new
 * frame takes a copy, every dirty block moves to the copy, dirty in the open
 * delta, and the copy replaces the page in the page table, so that handles
 * find the copy from now on; the original stays frozen on the earlier
 * delta's dirty list until its writeout is done. With `fork: false` the
 * writer waits for that writeout instead (Linux's stable pages), to compare.
 *
 * The fork runs under the page lock: a read landing in the page (readpage
 * holds the lock) must not be split between the original and the copy. When
 * the page is cached, up to date for the block, and unlocked, the whole
 * decision (fork included) runs synchronously: nothing can interleave, which
 * is what the lock would give, at the cost of no promise.
 */

/** Who is writing: the change, which knows its delta and whether it may still write. */
export interface Writer {
  readonly delta: Delta;
  /** Throws if the writer may no longer write (its change ended, the volume failed). */
  check(): void;
}

/** Already dirty in this delta: its page is this delta's alone. */
export function dirtyInThisDelta(state: number, slot: number): boolean {
  return state === dirtyIn(slot);
}

/** No block of the page is dirty in another delta, so no writeout will read what we change. */
export function canModifyInPlace(pages: Pages, frame: number, slot: number): boolean {
  const state = pages.dirtyState(frame);
  return state === CLEAN || state === dirtyIn(slot);
}

/**
 * Makes `block` of `mapping` dirty in the writer's delta and returns a
 * writable view of it (zero-filled if `overwrite`; otherwise read first if
 * it is not cached). Synchronous when it can be, a promise when it must read,
 * wait for the page lock, or (stable pages) wait for writeout.
 */
export function blockdirty(deltas: Deltas, writer: Writer, mapping: Mapping, block: number, overwrite: boolean): Buffer | Promise<Buffer> {
  const cache = deltas.cache;
  const perPage = cache.perPage;
  const pageIndex = perPage === 1 ? block : Math.floor(block / perPage);
  const head = block - pageIndex * perPage;
  const frame = mapping.table.get(pageIndex);
  if (frame !== undefined) {
    if (!overwrite) cache.used(mapping, frame);
    const view = dirtyNow(deltas, writer.delta, mapping, pageIndex, frame, head, overwrite, false);
    if (view !== undefined) return view;
  } else if (overwrite) {
    // A page that comes in now is new and unlocked: until we return, no one
    // else can see it, which is all its lock would give us.
    const fresh = cache.admitNow(mapping, pageIndex);
    if (fresh !== NO_FRAME) {
      const view = dirtyNow(deltas, writer.delta, mapping, pageIndex, fresh, head, true, true);
      cache.unpin(fresh);
      if (view !== undefined) return view;
    }
  } else {
    // A write that must read first is a reader: a stream of them reads ahead as readers do.
    cache.missed(mapping, pageIndex, 1);
  }
  return blockdirtyLocked(deltas, writer, mapping, pageIndex, head, overwrite);
}

/**
 * The decision, made synchronously on a cached page: undefined when it needs
 * what only the page lock's holder may do (fill an EMPTY block, fork a
 * locked page) or, with `fork: false`, a wait for writeout.
 */
function dirtyNow(
  deltas: Deltas,
  delta: Delta,
  mapping: Mapping,
  pageIndex: number,
  frame: number,
  head: number,
  overwrite: boolean,
  locked: boolean,
): Buffer | undefined {
  const cache = deltas.cache;
  const state = cache.pages.states[frame * cache.perPage + head];
  if (state === EMPTY && !(overwrite && locked)) return undefined;
  const slot = delta.slot;
  if (!dirtyInThisDelta(state, slot)) {
    if (!canModifyInPlace(cache.pages, frame, slot)) {
      if (!deltas.forking || (!locked && cache.isLocked(frame))) return undefined;
      frame = fork(deltas, delta, mapping, pageIndex, frame);
    }
    if (cache.markDirty(mapping, frame, head, slot)) deltas.joined(delta, mapping);
  }
  const view = cache.view(frame, head);
  if (overwrite) view.fill(0);
  return view;
}

async function blockdirtyLocked(
  deltas: Deltas,
  writer: Writer,
  mapping: Mapping,
  pageIndex: number,
  head: number,
  overwrite: boolean,
): Promise<Buffer> {
  const cache = deltas.cache;
  for (;;) {
    // No turn of the microtask queue while the page and its lock are free: a
    // stream of tx.write misses pays a read's wait, not two awaits besides.
    let frame = cache.page(mapping, pageIndex);
    if (typeof frame !== 'number') frame = await frame;
    if (!overwrite) cache.used(mapping, frame);
    let writeout: Promise<void>;
    const unlock = cache.tryLock(frame) ?? (await cache.lock(frame));
    try {
      // The change may have ended, or the volume failed, while we waited.
      writer.check();
      // Forked by another task while we waited for the lock: decide again on
      // the copy, where our block is most likely dirty in this delta already.
      if (mapping.table.get(pageIndex) !== frame) continue;
      if (cache.pages.states[frame * cache.perPage + head] === EMPTY && !overwrite) {
        await mapping.readpage(frame, pageIndex);
        writer.check();
      }
      const view = dirtyNow(deltas, writer.delta, mapping, pageIndex, frame, head, overwrite, true);
      if (view !== undefined) return view;
      writeout = deltas.writtenSlot(cache.pages.dirtyState(frame) - DIRTY);
    } finally {
      unlock();
      cache.unpin(frame);
    }
    deltas.counters.stableWaits++;
    await writeout;
  }
}

/**
 * Forks a page dirty in an earlier delta; returns the copy, now the cached
 * page. Walks the two pages' buffer heads together: each dirty block moves to
 * the copy, dirty in this delta, and stays dirty in the earlier delta on the
 * frozen original, which keeps its place on that delta's dirty list.
 */
function fork(deltas: Deltas, delta: Delta, mapping: Mapping, pageIndex: number, frame: number): number {
  const cache = deltas.cache;
  const pages = cache.pages;
  const copy = cache.allocCopy();
  cache.pool.copy(copy, frame);
  const earlier = pages.dirtyState(frame);
  const current = dirtyIn(delta.slot);
  assert.ok(isDirty(earlier) && earlier !== current, 'a page is forked only when it is dirty in an earlier delta');
  const perPage = cache.perPage;
  const base = frame * perPage;
  const copyBase = copy * perPage;
  for (let b = 0; b < perPage; b++) {
    const state = pages.states[base + b];
    if (isDirty(state)) {
      assert.equal(state, earlier, 'all dirty blocks of a page belong to one delta');
      pages.states[copyBase + b] = current;
    } else {
      pages.states[copyBase + b] = state;
    }
  }
  cache.replace(mapping, pageIndex, frame, copy, delta.slot);
  deltas.counters.forks++;
  deltas.joined(delta, mapping);
  return copy;
}
