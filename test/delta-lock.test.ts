import assert from 'node:assert/strict';
import { Delta } from '../src/delta/delta';
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

describe('a delta\'s states (delta.ts), as the pipeline reads them', () => {
  it('ordered mode: OPEN and REQUESTED are open; only OPEN is asked to close; written, it is FLUSHING (no home write pending), then DURABLE with its number', async () => {
    const delta = new Delta(7, 3);
    assert.equal(delta.open, true);
    delta.requestClose();
    assert.equal(delta.state, 'requested');
    assert.equal(delta.open, true, 'still taking changes');
    delta.state = 'closing';
    assert.equal(delta.open, false);
    delta.requestClose();
    assert.equal(delta.state, 'closing', 'a delta closing is not asked to close again');
    delta.state = 'writing';
    assert.equal(delta.open, false);
    assert.equal(delta.homeWritesPending, true);
    delta.markWritten();
    assert.equal(delta.state, 'flushing');
    assert.equal(delta.homeWritesPending, false, 'its frozen pages are free: the cache has nothing to wait for');
    await delta.written;
    delta.markDurable();
    assert.equal(delta.state, 'durable');
    assert.equal(await delta.committed, 7);
    assert.equal(delta.homeWritesPending, false);
  });

  it('journal mode: LOGGED is durable with home writes still pending; written, it is AT_HOME', async () => {
    const delta = new Delta(9, 1);
    delta.state = 'writing';
    delta.markLogged();
    assert.equal(delta.state, 'logged');
    assert.equal(await delta.committed, 9, 'commit resolves once logged');
    await delta.durable;
    assert.equal(delta.homeWritesPending, true, 'its home writes still read its frozen pages');
    assert.equal(delta.open, false);
    delta.markWritten();
    assert.equal(delta.state, 'at-home');
    assert.equal(delta.homeWritesPending, false);
  });

  it('FAILED rejects its writes, its durability and its commits with the error; a delta that gave way resolves with the one it covers', async () => {
    const failed = new Delta(4, 0);
    const error = new Error('EIO');
    failed.state = 'writing';
    failed.fail(error);
    assert.equal(failed.state, 'failed');
    assert.equal(failed.failure, error);
    assert.equal(failed.homeWritesPending, false);
    for (const settled of [failed.written, failed.durable, failed.committed]) await assert.rejects(settled, (e) => e === error);
    const empty = new Delta(5, 1);
    empty.giveWay(Promise.resolve(3));
    assert.equal(await empty.committed, 3);
  });
});
