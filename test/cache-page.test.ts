import assert from 'node:assert/strict';
import { Lru } from '../src/cache/lru';
import { CLEAN, EMPTY, MAX_SLOTS, NO_FRAME, Pages, dirtyIn, isDirty } from '../src/cache/page';
import { PagePool } from '../src/cache/pool';
import { Slab } from '../src/io/slab';
import { canModifyInPlace, dirtyInThisDelta } from '../src/delta/fork';
import { deltaBefore, nextDelta, slotCountFor, slotOf } from '../src/delta/number';

describe('buffer states', () => {
  it('are one value each, distinct for every delta slot, and survive the byte a page record keeps', () => {
    const states = [EMPTY, CLEAN, ...Array.from({ length: MAX_SLOTS }, (_, slot) => dirtyIn(slot))];
    assert.equal(new Set(states).size, states.length, 'no two states share a value');
    const record = new Pages(1, states.length);
    record.states.set(states);
    assert.deepEqual([...record.states], states, 'every state fits the byte of a buffer record');
    assert.deepEqual(states.map(isDirty), [false, false, ...Array(MAX_SLOTS).fill(true)], 'dirty means dirty in some slot, and nothing else');
    for (let slot = 0; slot < MAX_SLOTS; slot++) {
      for (const other of [0, 1, MAX_SLOTS - 1]) assert.equal(dirtyInThisDelta(dirtyIn(slot), other), slot === other, `dirty in slot ${slot}, asked about slot ${other}`);
    }
    assert.equal(dirtyInThisDelta(CLEAN, 0), false);
    assert.equal(dirtyInThisDelta(EMPTY, 0), false);
  });

  it('decide a fork with two predicates: already dirty in this delta, can modify in place', () => {
    const pages = new Pages(4, 2);
    pages.reset(0, 0, 0);
    pages.states.fill(CLEAN, 0, 4);
    assert.equal(canModifyInPlace(pages, 0, 1), true, 'a clean page is modified in place');
    pages.states[2] = dirtyIn(1);
    assert.equal(dirtyInThisDelta(pages.states[2], 1), true);
    assert.equal(dirtyInThisDelta(pages.states[2], 0), false);
    assert.equal(canModifyInPlace(pages, 0, 1), true, 'a page dirty in this delta is modified in place');
    assert.equal(canModifyInPlace(pages, 0, 0), false, 'a page dirty in another delta is not');
    assert.equal(pages.dirtyState(0), dirtyIn(1));
  });

  it('keep every record when the page records grow', () => {
    const pages = new Pages(2, 1);
    pages.reset(0, 7, 42);
    pages.states[1] = dirtyIn(2);
    pages.holds[0] = 3;
    pages.grow(10);
    assert.equal(pages.frames, 10);
    assert.equal(pages.owner[0], 7);
    assert.equal(pages.index[0], 42);
    assert.equal(pages.states[1], dirtyIn(2));
    assert.equal(pages.holds[0], 3);
    assert.equal(pages.pinned(0), true);
  });

  it('reset clears one frame\'s records and no other\'s; a page is pinned by a busy pin or a hold alone; its dirty state is that of any dirty block', () => {
    const pages = new Pages(4, 3);
    for (const frame of [0, 1, 2]) {
      pages.states.fill(dirtyIn(frame), frame * 4, frame * 4 + 4);
      pages.flags[frame] = 3;
      pages.busy[frame] = 1;
      pages.holds[frame] = 1;
    }
    pages.reset(1, 5, 9);
    assert.deepEqual([...pages.states], [...Array(4).fill(dirtyIn(0)), EMPTY, EMPTY, EMPTY, EMPTY, ...Array(4).fill(dirtyIn(2))]);
    assert.deepEqual([pages.owner[1], pages.index[1], pages.flags[1], pages.busy[1], pages.holds[1]], [5, 9, 0, 0, 0]);
    assert.deepEqual([pages.flags[0], pages.busy[2], pages.holds[2]], [3, 1, 1], 'the neighbours keep theirs');
    assert.equal(pages.pinned(1), false);
    pages.busy[1] = 1;
    assert.equal(pages.pinned(1), true, 'a busy pin alone');
    pages.busy[1] = 0;
    pages.holds[1] = 1;
    assert.equal(pages.pinned(1), true, 'a hold alone');
    assert.equal(pages.dirtyState(1), CLEAN, 'no dirty block (EMPTY ones neither)');
    pages.states[4 + 3] = dirtyIn(6);
    assert.equal(pages.dirtyState(1), dirtyIn(6), 'its last block dirty');
    pages.states[4] = CLEAN;
    pages.states[4 + 1] = dirtyIn(6);
    assert.equal(pages.dirtyState(1), dirtyIn(6));
    const before = pages.states;
    pages.grow(2);
    assert.equal(pages.states, before, 'growing to fewer frames changes nothing');
    assert.equal(pages.frames, 3);
  });
});

describe('delta numbers', () => {
  it('wrap from 2^32 - 1 to 0 and still compare in order', () => {
    const last = 0xffffffff;
    assert.equal(nextDelta(last), 0);
    assert.ok(deltaBefore(last, 0));
    assert.ok(deltaBefore(last - 1, 1));
    assert.ok(!deltaBefore(0, last));
    assert.ok(!deltaBefore(5, 5));
  });

  it('keep consecutive deltas in distinct slots across the wrap', () => {
    for (const maxDeltas of [1, 2, 3, 7, 64]) {
      const slots = slotCountFor(maxDeltas);
      assert.ok(slots > maxDeltas && (slots & (slots - 1)) === 0 && slots <= MAX_SLOTS);
      let delta = 0xffffffff - maxDeltas;
      const seen: number[] = [];
      for (let i = 0; i < 3 * slots; i++) {
        seen.push(slotOf(delta, slots));
        delta = nextDelta(delta);
      }
      for (let i = 0; i + slots <= seen.length; i++) {
        assert.equal(new Set(seen.slice(i, i + slots)).size, slots, `any ${slots} consecutive deltas have distinct slots`);
      }
    }
  });
});

describe('PagePool', () => {
  it('G7: hands out page-aligned frames of native memory and reuses freed ones', () => {
    const pool = new PagePool(4096, 4);
    const frames = [pool.alloc(), pool.alloc(), pool.alloc()];
    assert.equal(new Set(frames).size, 3);
    for (const f of frames) {
      const view = pool.view(f, 0, 4096);
      assert.equal(view.length, 4096);
      assert.equal(view.byteOffset % 4096, 0);
    }
    pool.view(frames[0], 0, 4096).fill(0xaa);
    pool.copy(frames[1], frames[0]);
    assert.equal(pool.view(frames[1], 100, 1)[0], 0xaa);
    pool.free(frames[2]);
    assert.equal(pool.alloc(), frames[2]);
    pool.release();
  });

  it('G7: returns slabs beyond the budget to the system once their frames are free', () => {
    const pool = new PagePool(4096, 4);
    const frames = Array.from({ length: 12 }, () => pool.alloc());
    assert.equal(pool.byteLength, 12 * 4096);
    for (const f of frames.slice(4)) pool.free(f);
    assert.equal(pool.byteLength, 4 * 4096, 'only the budget stays');
    for (const f of frames.slice(0, 4)) pool.free(f);
    assert.equal(pool.byteLength, 4 * 4096, 'the budget itself is kept for reuse');
    pool.release();
    assert.equal(pool.byteLength, 0);
  });

  it('refuses a frame freed twice, or used after it was freed, with an internal error; after release, views fail as a closed volume', () => {
    const pool = new PagePool(4096, 4);
    const frames = Array.from({ length: 6 }, () => pool.alloc());
    pool.free(frames[1]);
    assert.throws(() => pool.free(frames[1]), { code: 'ERR_ASSERTION', message: /frame 1 freed twice/ });
    assert.throws(() => pool.view(frames[1], 0, 4096), { code: 'ERR_ASSERTION', message: /frame 1 used after it was freed/ });
    // Frames 4 and 5 are beyond the budget: once both are free their slab is returned to the system.
    pool.free(frames[4]);
    pool.free(frames[5]);
    assert.throws(() => pool.view(frames[5], 0, 4096), { code: 'ERR_ASSERTION', message: /frame 5 used after it was freed/ });
    assert.throws(() => pool.free(frames[5]), { code: 'ERR_ASSERTION' });
    assert.equal(pool.alloc(), frames[1], 'the free list was not corrupted by the refused free');
    pool.release();
    assert.throws(() => pool.view(frames[0], 0, 4096), { code: 'ERR_VOLUME_CLOSED' });
    pool.free(frames[0]);
  });

  it('G7: allocates from the lowest slab with a free frame, and puts a new slab in the lowest place one was returned from', () => {
    const pool = new PagePool(4096, 4);
    assert.equal(pool.slabPages, 4);
    assert.equal(pool.frameLimit, 0, 'no slab before the first frame');
    const frames = Array.from({ length: 12 }, () => pool.alloc());
    assert.deepEqual(frames, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 'each slab\'s frames lowest first');
    assert.equal(pool.frameLimit, 12);
    pool.free(9);
    pool.free(2);
    assert.equal(pool.alloc(), 2, 'the lowest slab first');
    assert.equal(pool.alloc(), 9);
    for (const f of [4, 5, 6, 7]) pool.free(f);
    assert.equal(pool.byteLength, 8 * 4096, 'slab 1, beyond the budget and all free, went back to the system');
    assert.equal(pool.frameLimit, 12, 'frame numbers stay stable: slab 2 keeps its place');
    assert.deepEqual([pool.alloc(), pool.alloc()], [4, 5], 'a new slab in the place slab 1 left');
    assert.equal(pool.frameLimit, 12);
    pool.free(0);
    pool.free(1);
    assert.equal(pool.byteLength, 12 * 4096, 'the budget\'s slab is kept, though two of its frames are free');
    assert.equal(pool.alloc(), 1, 'freed frames are reused last freed first');
    pool.release();
  });

  it('sizes slabs in whole system pages: small pages share one, and a small budget still gets a whole system page', () => {
    const perSystemPage = Math.max(1, Slab.systemPageSize / 512);
    const pool = new PagePool(512, 3);
    assert.equal(pool.slabPages, perSystemPage);
    const frames = Array.from({ length: perSystemPage + 1 }, () => pool.alloc());
    assert.equal(pool.byteLength, 2 * Slab.systemPageSize, 'two slabs');
    for (const [k, f] of frames.entries()) pool.view(f, 0, 512).fill(k);
    for (const [k, f] of frames.entries()) assert.equal(pool.view(f, 511, 1)[0], k, `frame ${f} is memory of its own`);
    pool.release();
    const big = new PagePool(4096, 10_000);
    assert.equal(big.slabPages, (2 << 20) / 4096, 'a slab is at most 2 MiB');
    big.release();
  });
});

describe('Lru', () => {
  it('evicts the least recently used frame first', () => {
    const lru = new Lru(2);
    lru.grow(8);
    for (const f of [1, 2, 3]) lru.insert(f);
    assert.equal(lru.oldest(), 1);
    lru.touch(1);
    assert.equal(lru.oldest(), 2);
    lru.remove(2);
    lru.remove(2);
    assert.equal(lru.oldest(), 3);
    assert.equal(lru.length, 2);
    assert.equal(lru.has(2), false);
    lru.remove(3);
    lru.remove(1);
    assert.equal(lru.oldest(), NO_FRAME);
    assert.equal(lru.length, 0);
  });

  it('keeps its order through removals from the middle, both ends and growth; touch leaves the newest and frames off the list alone', () => {
    const lru = new Lru(4);
    for (const f of [0, 1, 2, 3]) lru.insert(f);
    lru.grow(2);
    lru.grow(8);
    assert.equal(lru.has(6), false, 'frames added by growth are off the list');
    lru.touch(6);
    assert.equal(lru.has(6), false, 'touch does not put a frame on the list');
    assert.equal(lru.length, 4);
    lru.insert(6);
    lru.touch(6);
    lru.remove(2);
    lru.touch(0);
    lru.remove(3);
    // Newest first now: 0, 6, 1.
    const order: number[] = [];
    for (let f = lru.oldest(); f !== NO_FRAME; f = lru.oldest()) {
      order.push(f);
      lru.remove(f);
    }
    assert.deepEqual(order, [1, 6, 0], 'oldest first');
    assert.equal(lru.length, 0);
    lru.insert(5);
    assert.equal(lru.oldest(), 5, 'an emptied list starts again');
    lru.remove(5);
    lru.insert(4);
    lru.insert(5);
    lru.remove(5);
    lru.insert(7);
    assert.equal(lru.oldest(), 4);
    lru.remove(4);
    assert.equal(lru.oldest(), 7, 'the head, removed, left the list whole');
  });
});
