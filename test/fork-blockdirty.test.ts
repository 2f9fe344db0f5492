import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { Cache } from '../src/cache/cache';
import { Change } from '../src/delta/change';
import { blockdirty } from '../src/delta/fork';
import { slotCountFor } from '../src/delta/number';
import { Deltas } from '../src/delta/transition';
import { Device } from '../src/io/device';
import { Volume } from '../src/volume';
import { FaultDevice } from './support/fault-device';
import { inChange } from './support/in-change';
import { ReadLog } from './support/read-log';
import { TempDir } from './support/temp';
import { fileBytes, realVolume, realVolumesPerTest, settles, until, type RealVolume } from './support/volumes';

// The fork runs against the real Device (O_DIRECT on a temp file). The
// FaultDevice in front of it only holds writes (or reads) in flight on
// command, to catch a delta in the middle of its writeout.

const SIZE = 1 << 20;

function pattern(blockSize: number, value: number): Buffer {
  return Buffer.alloc(blockSize, value);
}

describe('blockdirty and the buffer fork', () => {
  const volumes = realVolumesPerTest();

  async function volume(options: Parameters<typeof realVolume>[2] = {}): Promise<RealVolume> {
    return volumes.open(SIZE, { cacheSize: 1 << 20, ...options });
  }

  for (const blockSize of [4096, 1024, 512]) {
    describe(`blockSize ${blockSize} on 4096-byte pages`, () => {
      it('G1, G2: a write of a block under writeout forks at once, and the earlier delta writes its image', async () => {
        const { vol, device, path } = await volume({ blockSize });
        await vol.change(async (tx) => (await tx.write(0)).fill(0xa1));
        const release = device.hold();
        const first = vol.commit();
        await until(() => device.heldRequests() > 0, 'delta 1 writing');

        // The writeout is held until released: a write that waited for it would never end.
        assert.equal(await settles(vol.change(async (tx) => (await tx.write(0)).fill(0xb2))), true, 'the write did not wait for the writeout in flight (G2)');
        assert.ok(device.heldRequests() > 0, 'and the writeout was still in flight when it ended');
        assert.equal(vol.stats().forks, 1);
        assert.equal(vol.stats().pagesFrozen, 1);
        assert.deepEqual(await vol.read(0), pattern(blockSize, 0xb2), 'reads see the latest write');

        release();
        assert.equal(await first, 1);
        assert.deepEqual(fileBytes(path, 0, blockSize), pattern(blockSize, 0xa1), 'delta 1 wrote its own image (G1)');
        assert.equal(await vol.commit(), 2);
        assert.deepEqual(fileBytes(path, 0, blockSize), pattern(blockSize, 0xb2));
      });

      it('G7: the frozen copy is freed once its writeout is done', async () => {
        const { vol, device } = await volume({ blockSize });
        await vol.change(async (tx) => (await tx.write(3)).fill(1));
        const release = device.hold();
        const first = vol.commit();
        await until(() => device.heldRequests() > 0, 'delta 1 writing');
        await vol.change(async (tx) => (await tx.write(3)).fill(2));
        assert.equal(vol.stats().pagesFrozen, 1);
        const cached = vol.stats().pagesCached;
        release();
        await first;
        assert.equal(vol.stats().pagesFrozen, 0);
        assert.equal(vol.stats().pagesCached, cached, 'the copy is the cached page; only the frozen original went');
      });

      it('G1: a write into a tx.read copy changes neither the cache nor a frozen image', async () => {
        const { vol, device, path } = await volume({ blockSize });
        await vol.change(async (tx) => (await tx.write(1)).fill(7));
        const release = device.hold();
        const first = vol.commit();
        await until(() => device.heldRequests() > 0, 'delta 1 writing');
        await vol.change(async (tx) => (await tx.read(1)).fill(9));
        release();
        await first;
        assert.deepEqual(fileBytes(path, blockSize, blockSize), pattern(blockSize, 7));
        assert.deepEqual(await vol.read(1), pattern(blockSize, 7));
        assert.equal(vol.stats().forks, 0, 'a read never forks');
      });
    });
  }

  for (const blockSize of [512, 1024]) {
    describe(`several blocks per page (blockSize ${blockSize})`, () => {
      it('G1: forking one block carries its dirty neighbours into the current delta', async () => {
        const { vol, device, path } = await volume({ blockSize });
        await vol.change(async (tx) => {
          for (const b of [0, 1, 2]) (await tx.write(b)).fill(0x10 + b);
        });
        const release = device.hold();
        const first = vol.commit();
        await until(() => device.heldRequests() > 0, 'delta 1 writing');

        await vol.change(async (tx) => (await tx.write(1)).fill(0x21));
        assert.equal(vol.stats().forks, 1);
        release();
        await first;
        const afterFirst = vol.stats().bytesWritten;
        assert.deepEqual(fileBytes(path, 0, 3 * blockSize), Buffer.concat([0x10, 0x11, 0x12].map((v) => pattern(blockSize, v))), 'delta 1 image (G1)');

        await vol.commit();
        assert.equal(vol.stats().bytesWritten - afterFirst, 3 * blockSize, 'delta 2 wrote the forked block and both carried neighbours');
        assert.deepEqual(fileBytes(path, 0, 3 * blockSize), Buffer.concat([0x10, 0x21, 0x12].map((v) => pattern(blockSize, v))));
      });

      it('a fork that happened while another task waited on the page lock lets it exit early', async () => {
        const { vol, device, path } = await volume({ blockSize });
        // Block 0 dirty in delta 1, the rest of its page never read (EMPTY).
        await vol.change(async (tx) => (await tx.overwrite(0)).fill(0x31));
        const releaseWrites = device.hold();
        const first = vol.commit();
        await until(() => device.heldRequests() > 0, 'delta 1 writing');

        const releaseReads = device.hold('read');
        await vol.change(async (tx) => {
          // Task A: block 3 must be read, so A takes the page lock and holds it across the read.
          const a = tx.write(3);
          await until(() => device.heldRequests('read') > 0, 'A reading under the page lock');
          // Task B: block 0 is dirty in delta 1, so B must fork, and waits for the lock.
          const b = tx.write(0);
          assert.equal(await settles(b), false, 'B waits for the page lock');
          releaseReads();
          const [viewA, viewB] = await Promise.all([a, b]);
          viewA.fill(0x43);
          viewB.fill(0x40);
          assert.equal(viewA.buffer, viewB.buffer, 'both write the one copy');
        });
        assert.equal(vol.stats().forks, 1, 'A forked; B found the copy and did not fork again');

        releaseWrites();
        await first;
        assert.deepEqual(fileBytes(path, 0, blockSize), pattern(blockSize, 0x31), 'delta 1 image (G1)');
        await vol.commit();
        assert.deepEqual(fileBytes(path, 0, blockSize), pattern(blockSize, 0x40));
        assert.deepEqual(fileBytes(path, 3 * blockSize, blockSize), pattern(blockSize, 0x43));
      });

      it('writes to clean neighbours of a page dirty in this delta stay in place', async () => {
        const { vol } = await volume({ blockSize });
        await vol.change(async (tx) => {
          const first = await tx.write(0);
          const second = await tx.write(1);
          assert.equal(first.buffer, second.buffer);
          assert.equal(second.byteOffset, first.byteOffset + blockSize);
        });
        assert.equal(vol.stats().forks, 0);
        assert.equal(vol.stats().pagesDirty, 1);
      });
    });
  }

  it('G1: a delta queued behind another (not yet writing) is forked too, and writes its own image', async () => {
    const { vol, device, path } = await volume({ blockSize: 4096, maxDeltas: 2 });
    await vol.change(async (tx) => (await tx.write(0)).fill(1));
    const release = device.hold();
    const first = vol.commit();
    await until(() => device.heldRequests() > 0, 'delta 1 writing');
    await vol.change(async (tx) => (await tx.write(5)).fill(2));
    const second = vol.commit();
    await until(() => vol.stats().delta === 3, 'delta 2 closed');
    await vol.change(async (tx) => (await tx.write(5)).fill(3));
    assert.equal(vol.stats().forks, 1, 'the page of delta 2, queued for writeout, forked');
    release();
    assert.equal(await first, 1);
    assert.equal(await second, 2);
    assert.deepEqual(fileBytes(path, 5 * 4096, 4096), pattern(4096, 2), 'delta 2 image (G1)');
    await vol.commit();
    assert.deepEqual(fileBytes(path, 5 * 4096, 4096), pattern(4096, 3));
  });

  it('fork: false waits for the writeout instead (stable pages), and keeps G1', async () => {
    const { vol, device, path } = await volume({ blockSize: 4096, fork: false });
    await vol.change(async (tx) => (await tx.write(2)).fill(0x51));
    const release = device.hold();
    const first = vol.commit();
    await until(() => device.heldRequests() > 0, 'delta 1 writing');
    const change = vol.change(async (tx) => (await tx.write(2)).fill(0x52));
    assert.equal(await settles(change), false, 'the write waits while delta 1 is being written');
    release();
    await change;
    assert.equal(vol.stats().forks, 0);
    assert.equal(vol.stats().stableWaits, 1);
    await first;
    assert.deepEqual(fileBytes(path, 2 * 4096, 4096), pattern(4096, 0x51), 'delta 1 image (G1)');
    await vol.commit();
    assert.deepEqual(fileBytes(path, 2 * 4096, 4096), pattern(4096, 0x52));
  });

  it('overwrite gives a zero-filled block without reading it', async () => {
    const { vol, path } = await volume({ blockSize: 4096 });
    await vol.change(async (tx) => (await tx.write(4)).fill(0xee));
    await vol.commit();
    const reads = vol.stats().pagesRead;
    await vol.change(async (tx) => {
      const view = await tx.overwrite(9);
      assert.deepEqual(view, Buffer.alloc(4096));
      view.fill(0x99);
      assert.deepEqual(await tx.overwrite(4), Buffer.alloc(4096), 'zero-filled even when cached');
    });
    assert.equal(vol.stats().pagesRead, reads, 'nothing was read');
    await vol.commit();
    assert.deepEqual(fileBytes(path, 9 * 4096, 4096), pattern(4096, 0x99));
    assert.deepEqual(fileBytes(path, 4 * 4096, 4096), Buffer.alloc(4096));
  });
});

describe('blockdirty without a promise, and under the page lock', () => {
  const volumes = realVolumesPerTest();

  it('G2: on a cached, up-to-date, unlocked page the whole decision runs synchronously, a fork included; an overwrite of a page not cached too', async () => {
    const temp = new TempDir();
    const device = new FaultDevice(await Device.open(temp.file(), { size: 1 << 20, direct: true }));
    const cache: Cache = new Cache({ device, pageSize: 4096, blockSize: 1024, cacheSize: 16 * 4096, slotCount: slotCountFor(2), whenFull: () => deltas.whenWritten() });
    const deltas: Deltas = new Deltas({ cache, maxDeltas: 2, fork: true, highWater: 1 << 20, firstDelta: 1 });
    const mapping = cache.volume;
    const change = <T>(fn: (tx: Change) => T): Promise<T> => inChange(deltas, fn);
    try {
      // Page 1 (blocks 4 to 7) read in; page 2 not cached.
      cache.unpin(await cache.uptodate(mapping, 5));
      await change((tx) => {
        const view = blockdirty(deltas, tx, mapping, 5, false);
        assert.ok(!(view instanceof Promise), 'a cached block: a view, not a promise');
        view.fill(0x51);
        const fresh = blockdirty(deltas, tx, mapping, 9, true);
        assert.ok(!(fresh instanceof Promise), 'an overwrite of a page not cached: a view, not a promise');
        assert.deepEqual(fresh, Buffer.alloc(1024));
        fresh.fill(0x91);
      });
      const release = device.hold();
      const first = deltas.commit();
      await until(() => device.heldRequests() > 0, 'delta 1 writing');
      await change((tx) => {
        const view = blockdirty(deltas, tx, mapping, 6, false);
        assert.ok(!(view instanceof Promise), 'the fork of a page under writeout, synchronously');
        view.fill(0x62);
      });
      assert.equal(deltas.counters.forks, 1);
      release();
      assert.equal(await first, 1);
      assert.equal(await deltas.commit(), 2);
      const path = device.path;
      assert.deepEqual(fileBytes(path, 5 * 1024, 1024), Buffer.alloc(1024, 0x51));
      assert.deepEqual(fileBytes(path, 6 * 1024, 1024), Buffer.alloc(1024, 0x62));
      assert.deepEqual(fileBytes(path, 9 * 1024, 1024), Buffer.alloc(1024, 0x91));
      await deltas.drained();
    } finally {
      device.releaseAll();
      await deltas.drained();
      cache.release();
      await device.close();
      temp.remove();
    }
  });

  it('an overwrite of an EMPTY block of a page being read waits for the page lock: the read in flight never lands on what it wrote', async () => {
    const { vol, device, path } = await volumes.open(1 << 20, { blockSize: 1024, readahead: 0 });
    const fd = fs.openSync(path, 'r+');
    fs.writeSync(fd, Buffer.alloc(4096, 0x11), 0, 4096, 0);
    fs.closeSync(fd);
    const releaseReads = device.hold('read');
    const reading = vol.read(0);
    await until(() => device.heldRequests('read') > 0, 'page 0 read under its page lock');
    const change = vol.change(async (tx) => (await tx.overwrite(1)).fill(0x77));
    assert.equal(await settles(change), false, 'the overwrite waits for the read that holds the page lock');
    releaseReads();
    assert.deepEqual(await reading, Buffer.alloc(1024, 0x11));
    await change;
    assert.deepEqual(await vol.read(1), Buffer.alloc(1024, 0x77), 'the overwrite won');
    assert.deepEqual(await vol.read(2), Buffer.alloc(1024, 0x11));
    await vol.commit();
    assert.deepEqual(fileBytes(path, 1024, 1024), Buffer.alloc(1024, 0x77));
  });

  it('an overwrite reads nothing, even when the cache is full of dirty pages and must overcommit', async () => {
    const { vol, device } = await volumes.open(1 << 20, { cacheSize: 4 * 4096, highWater: 1 << 30, readahead: 0 });
    await vol.change(async (tx) => {
      for (let b = 0; b < 6; b++) (await tx.overwrite(b)).fill(b);
    });
    assert.equal(device.reads, 0);
    assert.equal(vol.stats().pagesDirty, 6, 'beyond the 4 pages of the cache: nothing in flight could free any');
    await vol.commit();
    assert.equal(device.reads, 0);
  });

  it('a writeRange reads the missing blocks of each step in one request and lets go of every page once done: they can be evicted after the commit', async () => {
    const temp = new TempDir();
    const path = temp.file();
    const fd = fs.openSync(path, 'w');
    for (let b = 0; b < 256; b++) fs.writeSync(fd, Buffer.alloc(1024, b), 0, 1024, b * 1024);
    fs.ftruncateSync(fd, 1 << 20);
    fs.closeSync(fd);
    const log = new ReadLog(await Device.open(path, { direct: true }));
    // 64 pages: a range step of 16 pages, 64 blocks of 1 KiB; the run fills the cache.
    const vol = Volume.over(log, { blockSize: 1024, cacheSize: 64 * 4096, highWater: 1 << 30, readahead: 0 });
    try {
      await vol.change(async (tx) => {
        const views = await tx.writeRange(0, 256);
        for (const [k, view] of views.entries()) {
          assert.equal(view[0], k, `block ${k} read before it is written`);
          view[1] = 0xab;
        }
      });
      assert.deepEqual(
        log.reads.map((r) => [r.offset / 1024, r.bytes / 1024]),
        [
          [0, 64],
          [64, 64],
          [128, 64],
          [192, 64],
        ],
        'four steps, each one request for its 16 pages',
      );
      await vol.commit();
      for (let b = 256; b < 512; b += 4) await vol.read(b);
      assert.ok(vol.stats().pagesCached <= 64, `the cache holds ${vol.stats().pagesCached} pages, at most its 64: the run's pages were evictable`);
      assert.deepEqual((await vol.read(5)).subarray(0, 2), Buffer.from([5, 0xab]));
    } finally {
      await vol.close();
      temp.remove();
    }
  });
});
