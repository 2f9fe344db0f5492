import assert from 'node:assert/strict';
import { Cache } from '../src/cache/cache';
import { CLEAN, EMPTY, FROZEN, NO_FRAME, dirtyIn } from '../src/cache/page';
import { Change } from '../src/delta/change';
import { slotCountFor } from '../src/delta/number';
import { Deltas } from '../src/delta/transition';
import { FaultDevice } from './support/fault-device';
import { inChange } from './support/in-change';
import { MemoryDevice } from './support/memory-device';
import { until } from './support/volumes';

// A white-box walk through the buffer and page states drawn at the top of
// src/cache/page.ts, on a page of four 1 KiB blocks. The FaultDevice holds
// writes to catch delta 1 in the middle of its writeout.

describe('the buffer state machine (page.ts)', () => {
  it('EMPTY -> CLEAN -> DIRTY+k; a fork freezes the original and moves every dirty block; writeout cleans and frees', async () => {
    const device = new FaultDevice(new MemoryDevice({ size: 64 * 1024 }));
    const maxDeltas = 2;
    const cache: Cache = new Cache({
      device,
      pageSize: 4096,
      blockSize: 1024,
      cacheSize: 16 * 4096,
      slotCount: slotCountFor(maxDeltas),
      whenFull: () => deltas.whenWritten(),
    });
    const deltas: Deltas = new Deltas({ cache, maxDeltas, fork: true, highWater: 1 << 20, firstDelta: 1 });
    const mapping = cache.volume;
    const states = (frame: number): number[] => [...cache.pages.states.subarray(frame * 4, frame * 4 + 4)];
    const change = (fn: (tx: Change) => Promise<void>): Promise<void> => inChange(deltas, fn);

    const frame = await cache.page(mapping, 0);
    assert.deepEqual(states(frame), [EMPTY, EMPTY, EMPTY, EMPTY], 'a page comes in EMPTY');
    cache.unpin(frame);
    cache.unpin(await cache.uptodate(mapping, 1));
    assert.deepEqual(states(frame), [CLEAN, CLEAN, CLEAN, CLEAN], 'readpage brings the whole page up to date');
    assert.equal(cache.lru.has(frame), true, 'a clean, unpinned page is evictable');

    await change(async (tx) => void (await tx.write(1)).fill(1));
    const d1 = dirtyIn(1);
    assert.deepEqual(states(frame), [CLEAN, d1, CLEAN, CLEAN], 'dirty in delta 1, in place');
    assert.deepEqual(mapping.dirty[1], [frame]);
    assert.equal(cache.lru.has(frame), false, 'a dirty page is not evictable');

    const release = device.hold();
    const first = deltas.commit();
    await until(() => device.heldRequests() > 0, 'delta 1 writing');
    await change(async (tx) => void (await tx.write(2)).fill(2));
    const copy = mapping.table.get(0) as number;
    assert.notEqual(copy, frame, 'the page forked');
    const d2 = dirtyIn(2);
    assert.deepEqual(states(copy), [CLEAN, d2, d2, CLEAN], 'the copy holds every dirty block, in delta 2');
    assert.deepEqual(states(frame), [CLEAN, d1, CLEAN, CLEAN], 'the frozen original keeps delta 1 as it was');
    assert.equal(cache.pages.flags[frame] & FROZEN, FROZEN);
    assert.deepEqual(mapping.dirty[1], [frame], 'the original stays on delta 1 dirty list');
    assert.deepEqual(mapping.dirty[2], [copy]);
    assert.deepEqual([cache.pagesCached, cache.pagesDirty, cache.pagesFrozen], [1, 1, 1]);

    release();
    assert.equal(await first, 1);
    assert.equal(cache.pages.owner[frame], NO_FRAME, 'the frozen original is freed once written');
    assert.deepEqual(mapping.dirty[1], []);
    assert.deepEqual(states(copy), [CLEAN, d2, d2, CLEAN]);
    assert.deepEqual([cache.pagesCached, cache.pagesDirty, cache.pagesFrozen], [1, 1, 0]);

    assert.equal(await deltas.commit(), 2);
    assert.deepEqual(states(copy), [CLEAN, CLEAN, CLEAN, CLEAN], 'writeout of delta 2 cleans the copy');
    assert.equal(cache.lru.has(copy), true);
    assert.deepEqual([cache.pagesCached, cache.pagesDirty, cache.pagesFrozen], [1, 0, 0]);
    cache.release();
  });
});
