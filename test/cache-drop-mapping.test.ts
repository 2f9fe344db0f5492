import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { Volume } from '../src/volume';
import { FaultDevice, type FaultPlan } from './support/fault-device';
import { MemoryDevice } from './support/memory-device';
import { until } from './support/volumes';

/** The work of a long change: the loop is overdue for a turn (loop-turns.ts) once this returns. */
function longWork(): void {
  const end = performance.now() + 2;
  while (performance.now() < end);
}

describe('dropMapping and the operations in flight on a mapping', () => {
  it('refuses (ERR_MAPPING_BUSY) while an operation that named the mapping waits for its loop turn; nothing lands in a dropped mapping', async () => {
    const memory = new MemoryDevice({ size: 1 << 20 });
    const device = new FaultDevice(memory);
    const vol = Volume.over(device, { cacheSize: 4 * 4096, highWater: 1 << 30 });
    try {
      const file = vol.createMapping({ map: (block) => 100 + block, blockCount: 4 });
      await vol.change(async (tx) => (await tx.write(0)).fill(1));
      const release = device.hold();
      const first = vol.commit();
      await until(() => device.heldRequests() > 0, 'delta 1 writing');
      await vol.change(async (tx) => {
        longWork();
        // A delta is in flight and the loop is overdue: the overwrite first waits for a turn, holding no page.
        const overwrite = tx.overwrite(0, file);
        release();
        // The writeout completes in microtasks, before that turn: drained() resolves under the waiting overwrite.
        const drop = vol.dropMapping(file);
        const [dropped, written] = await Promise.allSettled([drop, overwrite]);
        assert.equal(dropped.status, 'rejected', 'the drop is refused while the overwrite is in flight');
        assert.equal((dropped as PromiseRejectedResult).reason.code, 'ERR_MAPPING_BUSY');
        assert.equal(written.status, 'fulfilled');
        (written as PromiseFulfilledResult<Buffer>).value.fill(7);
      });
      await first;
      await vol.commit();
      assert.deepEqual(memory.durable.subarray(100 * 4096, 101 * 4096), Buffer.alloc(4096, 7), 'the overwrite reached the mapping\'s block');
      await vol.dropMapping(file);
      // Evictions walk every page: none belongs to a mapping the cache has forgotten.
      for (let b = 0; b < 40; b++) await vol.read(b);
      assert.ok(vol.stats().pagesCached <= 4, `the cache holds ${vol.stats().pagesCached} pages, at most 4`);
    } finally {
      await vol.close();
    }
  });

  it('a dropped mapping refuses every operation with ERR_MAPPING_DROPPED, before any I/O', async () => {
    const device = new FaultDevice(new MemoryDevice({ size: 1 << 20 }));
    const vol = Volume.over(device);
    try {
      const file = vol.createMapping({ map: (block) => 100 + block, blockCount: 4 });
      await vol.read(0, file);
      await vol.dropMapping(file);
      const reads = device.reads;
      const dropped = { name: 'TypeError', code: 'ERR_MAPPING_DROPPED', message: /mapping \d+ has been dropped/ };
      await assert.rejects(vol.read(0, file), dropped);
      await assert.rejects(vol.bread(0, file), dropped);
      await assert.rejects(vol.dropMapping(file), dropped);
      await vol.change(async (tx) => {
        await assert.rejects(tx.read(0, file), dropped);
        await assert.rejects(tx.write(0, file), dropped);
        await assert.rejects(tx.overwrite(1, file), dropped);
      });
      assert.equal(device.reads, reads);
    } finally {
      await vol.close();
    }
  });

  it('every operation lets go of the mapping and its pages when it settles: a read served from the cache, a read that failed, a range with one failed request', async () => {
    const memory = new MemoryDevice({ size: 1 << 20 });
    for (let b = 0; b < 64; b++) memory.volatile.fill(b, b * 4096, (b + 1) * 4096);
    // The plan is read at each request: the test moves the failure along.
    const plan: FaultPlan = { failRead: 1 };
    const device = new FaultDevice(memory, plan);
    const vol = Volume.over(device, { readahead: 0 });
    try {
      const cached = vol.createMapping({ map: (block) => 10 + block, blockCount: 4 });
      assert.deepEqual(await vol.read(0, cached), Buffer.alloc(4096, 10));
      assert.deepEqual(await vol.read(0, cached), Buffer.alloc(4096, 10), 'from the cache, without a promise of its own');
      await vol.dropMapping(cached);

      const failed = vol.createMapping({ map: (block) => 20 + block, blockCount: 4 });
      await assert.rejects(vol.read(0, failed), { code: 'EIO' });
      await vol.dropMapping(failed);

      // Every other block: each page of the range is a request of its own, and the second fails.
      const spread = vol.createMapping({ map: (block) => 30 + 2 * block, blockCount: 8 });
      plan.failRead = device.reads + 1;
      await assert.rejects(vol.readRange(0, 4, spread), { code: 'EIO' });
      await vol.dropMapping(spread);
      const again = vol.createMapping({ map: (block) => 30 + 2 * block, blockCount: 8 });
      const run = await vol.readRange(0, 4, again);
      for (let k = 0; k < 4; k++) assert.equal(run[k * 4096], 30 + 2 * k, `block ${k}, read again`);
    } finally {
      await vol.close();
    }
  });

  it('a read that missed counts on its mapping until its block is in, once: a drop meanwhile is refused, and succeeds once it has settled', async () => {
    const memory = new MemoryDevice({ size: 1 << 20 });
    memory.volatile.fill(5, 40 * 4096, 41 * 4096);
    const device = new FaultDevice(memory);
    const vol = Volume.over(device, { readahead: 0 });
    try {
      const file = vol.createMapping({ map: (block) => 40 + block, blockCount: 4 });
      const release = device.hold('read');
      const read = vol.read(0, file);
      await until(() => device.heldRequests('read') > 0, 'the miss at the device');
      assert.equal(file.operations, 1, 'the miss is in flight on its mapping');
      await assert.rejects(vol.dropMapping(file), { code: 'ERR_MAPPING_BUSY' });
      release();
      assert.deepEqual(await read, Buffer.alloc(4096, 5));
      // Counted down once: a count left above zero would refuse every drop, one below would let
      // a drop through under a later operation that has not pinned its page yet.
      assert.equal(file.operations, 0);
      await assert.rejects(vol.read(9, file), RangeError);
      assert.equal(file.operations, 0, 'a refused read counts nothing');
      await vol.dropMapping(file);
    } finally {
      await vol.close();
    }
  });

  it('two drops of one mapping at once: one resolves, the other is refused', async () => {
    const vol = Volume.over(new MemoryDevice({ size: 1 << 20 }));
    try {
      const file = vol.createMapping({ map: (block) => block });
      await vol.read(0, file);
      const results = await Promise.allSettled([vol.dropMapping(file), vol.dropMapping(file)]);
      assert.deepEqual(
        results.map((r) => r.status),
        ['fulfilled', 'rejected'],
      );
      assert.equal((results[1] as PromiseRejectedResult).reason.code, 'ERR_MAPPING_DROPPED');
    } finally {
      await vol.close();
    }
  });
});
