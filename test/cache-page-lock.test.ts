import assert from 'node:assert/strict';
import { Cache } from '../src/cache/cache';
import { slotCountFor } from '../src/delta/number';
import { MemoryDevice } from './support/memory-device';

// The page locks (cache.ts): a table by frame, with waiters only while some wait.
// White-box: the lock is the cache's own, below any I/O (a memory device).

describe('page locks: a table by frame', () => {
  function cacheOf(pages: number): Cache {
    return new Cache({ device: new MemoryDevice({ size: 16 << 20 }), pageSize: 4096, blockSize: 4096, cacheSize: pages * 4096, slotCount: slotCountFor(2), whenFull: () => undefined });
  }
  const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  it('tryLock takes a free lock at once and refuses a held one; lock() waits in call order; each release hands the lock over once', async () => {
    const cache = cacheOf(16);
    const frame = await cache.page(cache.volume, 3);
    const release = cache.tryLock(frame);
    assert.ok(release !== undefined, 'a free lock is taken at once');
    assert.equal(cache.isLocked(frame), true);
    assert.equal(cache.tryLock(frame), undefined, 'a held lock is refused');
    const order: string[] = [];
    const first = cache.lock(frame).then((r) => (order.push('first'), r));
    const second = cache.lock(frame).then((r) => (order.push('second'), r));
    await turn();
    assert.deepEqual(order, [], 'both wait while it is held');
    release();
    release();
    const releaseFirst = await first;
    await turn();
    assert.deepEqual(order, ['first'], 'the first waiter has it; the second call of the same release passed nothing on');
    assert.equal(cache.isLocked(frame), true, 'handed over, it stayed held');
    releaseFirst();
    const releaseSecond = await second;
    assert.deepEqual(order, ['first', 'second']);
    assert.equal(cache.isLocked(frame), true);
    releaseSecond();
    assert.equal(cache.isLocked(frame), false, 'free once the last holder let go');
    const again = cache.tryLock(frame);
    assert.ok(again !== undefined, 'and taken at once again');
    again();
    const other = await cache.page(cache.volume, 4);
    assert.equal(cache.isLocked(other), false, 'another frame was never locked');
    cache.unpin(other);
    cache.unpin(frame);
  });

  it('frames of a slab added later have locks too (the table grows with the frames)', async () => {
    // 1,024 pages: two slabs of 512 frames; the second comes in with page 512.
    const cache = cacheOf(1024);
    const frames: number[] = [];
    for (let p = 0; p < 600; p++) frames.push(await cache.page(cache.volume, p));
    const late = frames.filter((f) => f >= 512);
    assert.ok(late.length > 0, 'frames of the second slab');
    const releases = late.map((f) => cache.tryLock(f));
    assert.ok(releases.every((r) => r !== undefined) && late.every((f) => cache.isLocked(f)));
    assert.ok(frames.filter((f) => f < 512).every((f) => !cache.isLocked(f)), 'the first slab\'s frames are not locked by it');
    for (const r of releases) (r as () => void)();
    assert.ok(late.every((f) => !cache.isLocked(f)));
    for (const f of frames) cache.unpin(f);
  });
});
