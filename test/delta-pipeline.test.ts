import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { Cache } from '../src/cache/cache';
import { Change } from '../src/delta/change';
import { DeltaLock } from '../src/delta/lock';
import { LoopTurns } from '../src/delta/loop-turns';
import { slotCountFor } from '../src/delta/number';
import { Deltas } from '../src/delta/transition';
import type { BlockIo, IoRequest, IoResult } from '../src/io/request';
import { Volume } from '../src/volume';
import { FaultDevice } from './support/fault-device';
import { MemoryDevice } from './support/memory-device';
import { seeded } from './support/random';
import { Recorder } from './support/recorder';
import { TempDir } from './support/temp';
import { fileBytes, realVolume, realVolumesPerTest, settles, until, type RealVolume } from './support/volumes';

const BLOCK = 4096;

function pattern(value: number): Buffer {
  return Buffer.alloc(BLOCK, value);
}

/** Holds the first flush until `release()`; every other request goes straight through. */
class FirstFlushHeld implements BlockIo {
  flushes = 0;
  /** Flushes that returned. */
  flushed = 0;
  holding = false;
  private letGo!: () => void;
  private readonly gate = new Promise<void>((resolve) => (this.letGo = resolve));

  constructor(private readonly inner: BlockIo) {}

  get path(): string {
    return this.inner.path;
  }

  get geometry(): BlockIo['geometry'] {
    return this.inner.geometry;
  }

  submit(requests: readonly IoRequest[]): Promise<IoResult[]> {
    return this.inner.submit(requests);
  }

  run(requests: readonly IoRequest[]): Promise<void> {
    return this.inner.run(requests);
  }

  async flush(): Promise<void> {
    if (this.flushes++ === 0) {
      this.holding = true;
      await this.gate;
    }
    await this.inner.flush();
    this.flushed++;
  }

  release(): void {
    this.letGo();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

describe('the delta lock', () => {
  it('serves waiters in the order they asked: a shared request after an exclusive one waits for it', async () => {
    const lock = new DeltaLock();
    const order: string[] = [];
    assert.equal(lock.tryShared(), true);
    const exclusive = lock.exclusive().then(() => order.push('exclusive'));
    assert.equal(lock.tryShared(), false, 'a change asking after a transition does not overtake it');
    const shared = lock.shared().then(() => order.push('shared'));
    await settles(exclusive, 5);
    assert.deepEqual(order, [], 'the transition waits for the change in progress');
    lock.releaseShared();
    await exclusive;
    assert.deepEqual(order, ['exclusive']);
    lock.releaseExclusive();
    await shared;
    assert.deepEqual(order, ['exclusive', 'shared']);
    lock.releaseShared();
    assert.equal(lock.tryShared(), true);
  });

  it('grants every shared waiter up to the next exclusive one together', async () => {
    const lock = new DeltaLock();
    await lock.exclusive();
    const granted: number[] = [];
    const a = lock.shared().then(() => granted.push(1));
    const b = lock.shared().then(() => granted.push(2));
    const c = lock.exclusive().then(() => granted.push(3));
    lock.releaseExclusive();
    await Promise.all([a, b]);
    assert.deepEqual(granted, [1, 2]);
    assert.equal(await settles(c, 5), false);
    lock.releaseShared();
    lock.releaseShared();
    await c;
    assert.deepEqual(granted, [1, 2, 3]);
  });
});

describe('delta transitions and the writeout pipeline', () => {
  const volumes = realVolumesPerTest();

  async function volume(options: Parameters<typeof realVolume>[2] = {}, size = 1 << 20): Promise<RealVolume> {
    return volumes.open(size, options);
  }

  it('a change called before commit() lands in the delta it closes; one called after lands in the next', async () => {
    const { vol, path } = await volume();
    let letGo!: () => void;
    const gate = new Promise<void>((resolve) => (letGo = resolve));
    const before = vol.change(async (tx) => {
      await gate;
      (await tx.write(0)).fill(1);
    });
    const commit = vol.commit();
    const after = vol.change(async (tx) => (await tx.write(1)).fill(2));
    assert.equal(await settles(commit), false, 'commit waits for the change called before it');
    letGo();
    await before;
    assert.equal(await commit, 1);
    await after;
    assert.deepEqual(fileBytes(path, 0, BLOCK), pattern(1), 'the earlier change is in delta 1');
    assert.deepEqual(fileBytes(path, BLOCK, BLOCK), Buffer.alloc(BLOCK), 'the later change is not');
    assert.equal(await vol.commit(), 2);
    assert.deepEqual(fileBytes(path, BLOCK, BLOCK), pattern(2));
  });

  it('a change that throws still ends, and keeps its writes (no rollback in ordered mode)', async () => {
    const { vol } = await volume();
    await assert.rejects(
      vol.change(async (tx) => {
        (await tx.write(3)).fill(5);
        throw new Error('boom');
      }),
      /boom/,
    );
    assert.deepEqual(await vol.read(3), pattern(5));
    assert.equal(await vol.commit(), 1, 'the transition was not blocked by the failed change');
  });

  it('G4: a delta whose flush returns first still waits for the flush of the delta before it', async () => {
    const memory = new MemoryDevice({ size: 64 * BLOCK });
    const device = new FirstFlushHeld(memory);
    const vol = Volume.over(device, { maxDeltas: 3 });
    try {
      // Two runs per delta: plain writes, then a flush (a single run would be one dsync write).
      await vol.change(async (tx) => {
        for (const b of [0, 5]) (await tx.write(b)).fill(1);
      });
      const first = vol.commit();
      await until(() => device.holding, "delta 1's flush held");
      await vol.change(async (tx) => {
        for (const b of [1, 7]) (await tx.write(b)).fill(2);
      });
      const second = vol.commit();
      await until(() => device.flushed === 1, "delta 2's flush returned, delta 1's still held");
      assert.equal(await settles(second), false, "delta 2 is flushed, but delta 1 is not: commit 2 waits (G4)");
      assert.equal(await settles(first), false);
      device.release();
      assert.deepEqual(await Promise.all([first, second]), [1, 2]);
    } finally {
      device.release();
      await vol.close();
    }
  });

  it('G3: with completions delayed and reordered, each commit resolves after its delta is flushed, and commits resolve in order', async () => {
    const memory = new MemoryDevice({ size: 64 * BLOCK });
    const recorder = new Recorder(new FaultDevice(memory, { seed: 7, maxTurns: 6 }), BLOCK);
    const vol = Volume.over(recorder, { maxDeltas: 3 });
    const resolved: number[] = [];
    const commits: Promise<void>[] = [];
    for (let d = 1; d <= 12; d++) {
      let delta = 0;
      await vol.change(async (tx) => {
        delta = vol.stats().delta;
        for (let b = 0; b < 8; b++) (await tx.write((d * 5 + b * 3) % 64)).fill(d);
      });
      const blocks = [...Array(8).keys()].map((b) => (d * 5 + b * 3) % 64);
      commits.push(
        vol.commit().then((number) => {
          assert.equal(number, delta, 'a commit resolves with the delta that holds the change before it');
          resolved.push(number);
          // G3: the delta's images are in what a power cut would leave,
          // unless a later delta (also flushed) has overwritten them.
          for (const b of blocks) {
            const held = memory.durable[b * BLOCK];
            assert.ok(held >= d, `block ${b} durable holds delta ${held}, not yet delta ${d}`);
          }
          // Every delta had blocks, so delta n went out as the n-th batch.
          const batch = recorder.events.findIndex((e) => e.kind === 'batch' && e.batch === number - 1);
          assert.ok(batch >= 0 && recorder.events.slice(batch).some((e) => e.kind === 'flush'), `a flush followed delta ${number}'s writes`);
        }),
      );
      assert.ok(vol.stats().deltasInFlight <= 3, 'maxDeltas bounds the deltas in flight');
    }
    await Promise.all(commits);
    assert.deepEqual(resolved, [...resolved].sort((a, b) => a - b), 'durable in order (G4)');
    assert.ok(resolved.at(-1)! < 12, 'commits asked for while the pipeline was full grouped into fewer deltas');
    await vol.close();
  });

  it('two writes of one block reach the device in delta order, however completions are reordered', async () => {
    const memory = new MemoryDevice({ size: 16 * BLOCK });
    const recorder = new Recorder(new FaultDevice(memory, { seed: 3, maxTurns: 8 }), BLOCK);
    const vol = Volume.over(recorder, { maxDeltas: 3 });
    const commits: Promise<number>[] = [];
    /** The last change's value in each delta: what that delta's batch must write to block 2. */
    const lastIn = new Map<number, number>();
    for (let d = 1; d <= 10; d++) {
      await vol.change(async (tx) => {
        lastIn.set(vol.stats().delta, d);
        (await tx.write(2)).fill(d);
        (await tx.write(2 + d)).fill(d);
      });
      commits.push(vol.commit());
    }
    await Promise.all(commits);
    assert.equal(recorder.batches.length, lastIn.size);
    recorder.batches.forEach((batch, i) => assert.deepEqual(batch.blocks.get(2), pattern(lastIn.get(i + 1)!), `batch ${i} held delta ${i + 1}'s image`));
    assert.deepEqual(memory.durable.subarray(2 * BLOCK, 3 * BLOCK), pattern(10));
    await vol.close();
  });

  it('a commit with nothing dirty writes and flushes nothing, spends no delta, and resolves after the delta before it', async () => {
    const { vol, device } = await volume();
    await vol.change(async (tx) => (await tx.write(0)).fill(1));
    const release = device.hold();
    const first = vol.commit();
    await until(() => device.heldRequests() > 0, 'delta 1 writing');
    const empty = vol.commit();
    assert.equal(await settles(empty), false, 'the empty commit does not resolve before delta 1 is durable');
    release();
    assert.equal(await first, 1);
    assert.equal(await empty, 1, 'it resolves with the delta last closed');
    const { writes, flushes } = device;
    assert.equal(await vol.commit(), 1);
    assert.deepEqual([device.writes, device.flushes], [writes, flushes], 'an empty commit costs no I/O');
    assert.equal(vol.stats().delta, 2, 'and no delta number');
    assert.equal(vol.stats().emptyCommits, 2);
  });

  it('a delta of one run is written with RWF_DSYNC and no flush; a delta of several runs is flushed', async () => {
    const { vol, device } = await volume();
    const dsyncWrites: boolean[] = [];
    const submit = device.submit.bind(device);
    device.submit = (requests) => {
      for (const r of requests) if (r.op === 'write') dsyncWrites.push(r.dsync === true);
      return submit(requests);
    };
    await vol.change(async (tx) => {
      for (const b of [4, 5, 6]) (await tx.write(b)).fill(1);
    });
    let flushes = device.flushes;
    await vol.commit();
    assert.deepEqual(dsyncWrites, [true], 'one contiguous run: one durable write');
    assert.equal(device.flushes, flushes, 'and no flush');
    dsyncWrites.length = 0;
    await vol.change(async (tx) => {
      for (const b of [1, 9]) (await tx.write(b)).fill(2);
    });
    flushes = device.flushes;
    await vol.commit();
    assert.deepEqual(dsyncWrites, [false, false], 'two runs: plain writes');
    assert.equal(device.flushes, flushes + 1, 'then one flush');
    await vol.close();
  });

  it('starts a transition by itself when a delta passes the high-water mark', async () => {
    const { vol, path } = await volume({ cacheSize: 64 * BLOCK, highWater: 8 * BLOCK });
    for (let b = 0; b < 20; b++) await vol.change(async (tx) => (await tx.write(b)).fill(b + 1));
    assert.ok(vol.stats().autoTransitions >= 2);
    await until(() => vol.stats().durableDelta >= 2, 'automatic deltas durable');
    for (let b = 0; b < 8; b++) assert.deepEqual(fileBytes(path, b * BLOCK, BLOCK), pattern(b + 1));
  });

  it('G2, G7: when the cache is full of dirty pages under writeout, a writer waits for the writeout rather than fail', async () => {
    const { vol, device } = await volume({ cacheSize: 8 * BLOCK, highWater: 1 << 30 });
    await vol.change(async (tx) => {
      for (let b = 0; b < 8; b++) (await tx.write(b)).fill(1);
    });
    const release = device.hold();
    const first = vol.commit();
    await until(() => device.heldRequests() > 0, 'delta 1 writing');
    const change = vol.change(async (tx) => (await tx.overwrite(100)).fill(2));
    assert.equal(await settles(change), false, 'the writer waits for room');
    assert.equal(vol.stats().spaceWaits, 1);
    release();
    await change;
    await first;
    assert.ok(vol.stats().pagesCached <= 8);
  });

  it('G7: a change bigger than the cache overcommits by its own dirty pages only, rather than deadlock, and the cache shrinks back', async () => {
    const { vol } = await volume({ cacheSize: 4 * BLOCK });
    for (let b = 200; b < 204; b++) await vol.read(b);
    assert.equal(vol.stats().pagesCached, 4, 'the cache is full of clean pages');
    await vol.change(async (tx) => {
      for (let b = 0; b < 16; b++) (await tx.overwrite(b)).fill(b);
    });
    // Its pages cannot be written before the change ends (all of a change lands
    // in one delta), so the cache holds them all; the README's G7 says so.
    assert.equal(vol.stats().pagesDirty, 16);
    assert.equal(vol.stats().pagesCached, 16, 'the change\'s own pages, and no clean page besides');
    await vol.commit();
    for (let b = 100; b < 110; b++) await vol.read(b);
    assert.ok(vol.stats().pagesCached <= 4);
  });

  it('G7: under writes, with deltas in flight, forks and completions reordered, the cache stays within cacheSize', async () => {
    const { vol, device } = await volumes.open(1 << 20, { cacheSize: 16 * BLOCK, maxDeltas: 3 }, { seed: 11, maxTurns: 6 });
    const random = seeded(5);
    const commits: Promise<number>[] = [];
    let peak = 0;
    // Writes held until the cache is full of dirty and frozen pages (a change waits for room), then let go:
    // however fast the device, the run meets a full cache.
    const release = device.hold('write');
    const full = (async () => {
      while (vol.stats().spaceWaits === 0) await new Promise((resolve) => setImmediate(resolve));
      release();
    })();
    for (let i = 0; i < 300; i++) {
      await vol.change(async (tx) => {
        for (let w = 1 + Math.floor(random() * 3); w > 0; w--) (await tx.write(Math.floor(random() * 64))).fill(i & 0xff);
      });
      peak = Math.max(peak, vol.stats().pagesCached);
      assert.ok(vol.stats().pagesCached <= 16, `after change ${i}: ${vol.stats().pagesCached} pages cached, cacheSize is 16`);
      if (i % 4 === 3) commits.push(vol.commit());
    }
    await Promise.all(commits);
    await full;
    assert.ok(vol.stats().forks > 0 && vol.stats().spaceWaits > 0, `the run forked (${vol.stats().forks}) and filled the cache (${vol.stats().spaceWaits} waits)`);
    assert.equal(peak, 16, 'the cache was used up to its size');
  });

  it('G7: the cache stays within cacheSize, evicting the least recently used clean page', async () => {
    // No readahead: a window read ahead of the sequential reads would land at a time of its own in pagesRead.
    const { vol } = await volume({ cacheSize: 16 * BLOCK, readahead: 0 });
    for (let b = 0; b < 16; b++) await vol.read(b);
    await vol.read(0);
    await vol.read(16);
    const reads = vol.stats().pagesRead;
    await vol.read(0);
    assert.equal(vol.stats().pagesRead, reads, 'block 0, used recently, stayed');
    await vol.read(1);
    assert.equal(vol.stats().pagesRead, reads + 1, 'block 1, the least recently used, went');
    for (let b = 0; b < 200; b++) await vol.read(b);
    assert.ok(vol.stats().pagesCached <= 16);
    assert.ok(vol.stats().cacheBytes <= 16 * BLOCK);
  });

  it('delta numbers wrap from 2^32 - 1 to 0 with writeout still in order', async () => {
    const memory = new MemoryDevice({ size: 16 * BLOCK });
    const recorder = new Recorder(new FaultDevice(memory, { seed: 11 }), BLOCK);
    const maxDeltas = 2;
    const cache: Cache = new Cache({
      device: recorder,
      pageSize: BLOCK,
      blockSize: BLOCK,
      cacheSize: 16 * BLOCK,
      slotCount: slotCountFor(maxDeltas),
      whenFull: () => deltas.whenWritten(),
    });
    const deltas: Deltas = new Deltas({ cache, maxDeltas, fork: true, highWater: 1 << 20, firstDelta: 0xfffffffe });
    const numbers: Promise<number>[] = [];
    for (let i = 1; i <= 5; i++) {
      await deltas.lock.shared();
      const tx = new Change(deltas, deltas.current);
      (await tx.write(1)).fill(i);
      tx.end();
      deltas.lock.releaseShared();
      const open = deltas.current.number;
      numbers.push(deltas.commit());
      // One delta per commit: the next change waits until this one has closed.
      await until(() => deltas.current.number !== open, 'the delta switched');
    }
    assert.deepEqual(await Promise.all(numbers), [0xfffffffe, 0xffffffff, 0, 1, 2]);
    assert.equal(deltas.durable, 2);
    recorder.batches.forEach((batch, i) => assert.deepEqual(batch.blocks.get(1), pattern(i + 1)));
    assert.deepEqual(memory.durable.subarray(BLOCK, 2 * BLOCK), pattern(5));
    cache.release();
  });
});

describe('the event loop turns while writeout is in flight', function () {
  this.timeout(60_000);
  let temp: TempDir;
  before(() => (temp = new TempDir()));
  after(() => temp.remove());

  // Completions come in on the event loop. A change whose blocks are all cached never waits for
  // I/O: without a turn of the loop now and then, a commit in flight could never complete while it runs.
  it('a loop of empty commits lets the event loop turn', async () => {
    const { vol } = await realVolume(temp, 1 << 20);
    try {
      let turned = false;
      setImmediate(() => (turned = true));
      let commits = 0;
      while (!turned && commits < 100_000) {
        await vol.commit();
        commits++;
      }
      assert.equal(turned, true, `${commits} empty commits in a row never let a setImmediate run`);
    } finally {
      await vol.close();
    }
  });

  it('a writer that lets the loop turn between changes is not made to yield (the wait for I/O is not work)', async () => {
    const turns = new LoopTurns();
    assert.equal(turns.overdue(), undefined, 'the first check starts a stretch of work');
    // The loop turns and then waits (as it waits for a commit's I/O) far longer than the yield threshold.
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(turns.overdue(), undefined, 'a change after a turn of the loop starts a new stretch: no yield');
  });

  it('a stretch of work without a turn of the loop past the threshold yields once, then starts afresh', async () => {
    const turns = new LoopTurns();
    assert.equal(turns.overdue(), undefined);
    const spinUntil = performance.now() + 2;
    while (performance.now() < spinUntil) {
      // Work in microtasks only: the loop cannot turn.
    }
    const turn = turns.overdue();
    assert.ok(turn instanceof Promise, 'two milliseconds of work without a turn of the loop must yield');
    await turn;
    assert.equal(turns.overdue(), undefined, 'after the yield, the stretch starts again');
  });

  it('a long change of cached blocks lets an earlier commit complete before it ends', async () => {
    const { vol } = await realVolume(temp, 4 << 20);
    try {
      await vol.change(async (tx) => {
        for (let b = 0; b < 64; b++) (await tx.write(b)).fill(1);
      });
      let durable = false;
      const commit = vol.commit().then(() => (durable = true));
      const deadline = Date.now() + 10_000;
      let writes = 0;
      await vol.change(async (tx) => {
        // Block 100 is dirty in this delta after the first write: every later write is in place.
        while (!durable && Date.now() < deadline) {
          (await tx.write(100)).writeUInt32LE(writes++, 0);
        }
      });
      assert.equal(durable, true, `the commit did not complete during a change of ${writes} cached writes`);
      await commit;
    } finally {
      await vol.close();
    }
  });
});
