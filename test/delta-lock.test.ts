import assert from 'node:assert/strict';
import { DeltaLock } from '../src/delta/lock';
import { deltaBefore, slotCountFor } from '../src/delta/number';

// What commit() reads of the delta lock to decide a commit's delta: idle (an
// empty commit spends no delta) and sharedWaiting (a change queued behind a
// switch lands in the next delta, so a commit after it must wait for that one).

describe('the delta lock as commit() reads it', () => {
  it('is idle only while no one holds it shared or exclusive and no one waits', async () => {
    const lock = new DeltaLock();
    assert.equal(lock.idle, true);
    assert.equal(lock.tryShared(), true);
    assert.equal(lock.idle, false, 'a change in progress');
    lock.releaseShared();
    assert.equal(lock.idle, true);
    await lock.exclusive();
    assert.equal(lock.idle, false, 'a switch under way');
    const waiting = lock.shared();
    lock.releaseExclusive();
    await waiting;
    assert.equal(lock.idle, false, 'the waiter now holds it shared');
    lock.releaseShared();
    assert.equal(lock.idle, true);
  });

  it('reports shared waiters behind an exclusive holder or waiter, and not exclusive waiters alone', async () => {
    const lock = new DeltaLock();
    assert.equal(lock.sharedWaiting, false);
    assert.equal(lock.tryShared(), true);
    const exclusive = lock.exclusive();
    assert.equal(lock.sharedWaiting, false, 'only a switch waits');
    const shared = lock.shared();
    assert.equal(lock.sharedWaiting, true, 'a change waits behind the switch');
    lock.releaseShared();
    await exclusive;
    assert.equal(lock.sharedWaiting, true, 'still behind the switch that holds the lock');
    lock.releaseExclusive();
    await shared;
    assert.equal(lock.sharedWaiting, false);
    lock.releaseShared();
  });

  it('a shared request waits while a switch holds it exclusive with no one else in line', async () => {
    const lock = new DeltaLock();
    await lock.exclusive();
    assert.equal(lock.tryShared(), false, 'the switch holds it');
    let granted = false;
    const shared = lock.shared().then(() => (granted = true));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(granted, false);
    lock.releaseExclusive();
    await shared;
    lock.releaseShared();
  });
});

describe('delta numbers, as the pipeline orders them', () => {
  it('a delta is not before itself; slots are exactly the next power of two above maxDeltas', () => {
    assert.equal(deltaBefore(5, 5), false);
    assert.equal(deltaBefore(4, 5), true);
    assert.deepEqual([1, 2, 3, 4, 7, 8].map(slotCountFor), [2, 4, 4, 8, 8, 16]);
  });
});
