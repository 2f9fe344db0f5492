import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { HOLE } from '../src/cache/mapping';
import { Device } from '../src/io/device';
import { Volume, type VolumeOptions } from '../src/volume';
import { FaultDevice } from './support/fault-device';
import { seeded } from './support/random';
import { ReadLog } from './support/read-log';
import { volumesPerTest } from './support/volumes';

const BLOCK = 4096;

/** What the file holds at block i before the test: its number, then a byte of it. */
function pattern(block: number): Buffer {
  const b = Buffer.alloc(BLOCK, (block * 7 + 1) & 0xff);
  b.writeUInt32LE(block, 0);
  return b;
}

describe('the read path: readahead, batched misses, prefetch (real Device, O_DIRECT temp file)', () => {
  const volumes = volumesPerTest();

  /** A volume over a file of `size` blocks (sparse) whose first `blocks` hold `pattern`, its reads logged. */
  async function volume(blocks: number, options: VolumeOptions = {}, size = blocks): Promise<{ vol: Volume; log: ReadLog; path: string; faults: FaultDevice }> {
    const path = volumes.file();
    const fd = fs.openSync(path, 'w');
    for (let i = 0; i < blocks; i++) fs.writeSync(fd, pattern(i), 0, BLOCK, i * BLOCK);
    fs.ftruncateSync(fd, size * BLOCK);
    fs.closeSync(fd);
    const faults = new FaultDevice(await Device.open(path, { direct: true }));
    const log = new ReadLog(faults);
    const vol = Volume.over(log, { cacheSize: 4 << 20, ...options });
    volumes.track(vol);
    return { vol, log, path, faults };
  }

  it('a sequential reader\'s requests grow to the window, each window one merged request, every block read once', async () => {
    const { vol, log } = await volume(1024, { readahead: 256 << 10 });
    for (let i = 0; i < 1024; i++) assert.deepEqual(await vol.read(i), pattern(i), `block ${i}`);
    const sizes = log.reads.map((r) => r.bytes / BLOCK);
    const shown = `requests in pages: ${sizes.join(' ')}`;
    // The first miss looks random; the second starts a stream with a window of 4 pages, and each
    // window after is started by the reader's first use of the one before: twice as large (four
    // times while small, as Linux's), up to the bound of 64 pages; the last is what the file has left.
    assert.deepEqual(sizes.slice(0, 6), [1, 4, 8, 16, 32, 64], shown);
    assert.ok(sizes.slice(6, -1).every((n) => n === 64) && sizes[sizes.length - 1] <= 64, shown);
    assert.ok(log.reads.every((r) => r.buffers <= 2), 'a window is one request, its frames (adjacent in a slab) joined into one or two buffers');
    for (const [block, times] of log.timesRead(BLOCK)) assert.equal(times, 1, `block ${block} read once`);
    const stats = vol.stats();
    assert.ok(stats.readaheadPages >= 1000, `pages read ahead: ${stats.readaheadPages}`);
    assert.equal(stats.readaheadUsed, 1023, 'every page read ahead was used (the first was read alone)');
    assert.equal(stats.readaheadWasted, 0);
  });

  it('the next window starts before the reader reaches the end of the current one', async () => {
    const { vol, log } = await volume(1024, { readahead: 256 << 10 });
    const asked = (): number => Math.max(...log.reads.map((r) => (r.offset + r.bytes) / BLOCK));
    for (let i = 0; i < 900; i++) {
      assert.deepEqual(await vol.read(i), pattern(i));
      // Once the stream has grown its window: a whole window asked for beyond the block just read.
      if (i >= 100) assert.ok(asked() >= i + 64, `at block ${i}, reads asked up to ${asked()}`);
    }
  });

  it('a random reader triggers no readahead: each miss reads its page alone', async () => {
    const { vol, log } = await volume(1024, { cacheSize: 64 << 20 }, 1 << 16);
    const random = seeded(7);
    for (let k = 0; k < 500; k++) {
      const i = Math.floor(random() * (1 << 16));
      assert.deepEqual(await vol.read(i), i < 1024 ? pattern(i) : Buffer.alloc(BLOCK));
    }
    assert.equal(vol.stats().readaheadPages, 0);
    assert.ok(log.reads.every((r) => r.bytes === BLOCK));
  });

  it('32 readers in flight on nearby pages: their misses go down sorted and merged, in one submit', async () => {
    const { vol, log } = await volume(256, { readahead: 0 });
    const order = Array.from({ length: 32 }, (_, k) => (k * 13) % 32);
    const got = await Promise.all(order.map((i) => vol.read(64 + i)));
    for (let k = 0; k < 32; k++) assert.deepEqual(got[k], pattern(64 + order[k]));
    assert.equal(log.submits.length, 1, 'one submit');
    assert.deepEqual(log.submits[0], [{ offset: 64 * BLOCK, bytes: 32 * BLOCK, buffers: log.submits[0][0].buffers }], 'one request of all 32 pages');
  });

  it('readahead never evicts a dirty or pinned page: the cache at its bound, dirty pages everywhere', async () => {
    // 64 pages: 48 dirty in the open delta, 8 held by handles, 8 for reading.
    const { vol, path } = await volume(2048, { cacheSize: 64 * BLOCK, readahead: 64 * BLOCK, highWater: 1 << 30 });
    await vol.change(async (tx) => {
      for (let i = 0; i < 48; i++) (await tx.overwrite(1000 + 2 * i)).fill(0xd0);
    });
    const handles = await Promise.all(Array.from({ length: 8 }, (_, k) => vol.bread(1500 + 3 * k)));
    for (let i = 0; i < 400; i++) assert.deepEqual(await vol.read(i), pattern(i), `block ${i}`);
    const stats = vol.stats();
    assert.equal(stats.pagesDirty, 48, 'every dirty page stayed');
    assert.ok(stats.pagesCached <= 64, `the cache stayed within its bound: ${stats.pagesCached}`);
    assert.ok(stats.readaheadPages > 0, 'readahead ran in what room there was');
    for (const [k, handle] of handles.entries()) assert.deepEqual(handle.data, pattern(1500 + 3 * k), 'held pages stayed');
    for (const handle of handles) handle.release();
    for (let i = 0; i < 48; i++) assert.deepEqual(await vol.read(1000 + 2 * i), Buffer.alloc(BLOCK, 0xd0));
    await vol.commit();
    const fd = fs.openSync(path, 'r');
    try {
      const b = Buffer.alloc(BLOCK);
      for (let i = 0; i < 48; i++) {
        fs.readSync(fd, b, 0, BLOCK, (1000 + 2 * i) * BLOCK);
        assert.deepEqual(b, Buffer.alloc(BLOCK, 0xd0));
      }
    } finally {
      fs.closeSync(fd);
    }
  });

  it('pages read ahead and never used stay within a quarter of the cache, and are counted as wasted when evicted', async () => {
    const { vol } = await volume(4096, { cacheSize: 256 * BLOCK, readahead: 1 << 20 });
    // Short sequential runs in many places: each starts a stream that is then left.
    for (let start = 0; start < 4000; start += 200) for (let i = start; i < start + 6; i++) await vol.read(i);
    const stats = vol.stats();
    assert.ok(stats.readaheadWasted > 0, 'windows of left streams were evicted unused');
    assert.ok(stats.readaheadPages - stats.readaheadUsed - stats.readaheadWasted <= 64, 'unused pages in the cache: at most a quarter');
  });

  it('a window leaves READAHEAD_RESERVE (4) frames obtainable: in a cache nearly full of dirty pages it takes what is beyond them, and no more', async () => {
    // 32 pages, 26 of them dirty: 6 obtainable, so a window may take 2.
    const { vol, log } = await volume(2048, { cacheSize: 32 * BLOCK, readahead: 8 * BLOCK, highWater: 1 << 30 });
    await vol.change(async (tx) => {
      for (let i = 0; i < 26; i++) (await tx.overwrite(1000 + i)).fill(0xd0);
    });
    await vol.read(0);
    assert.equal(vol.stats().readaheadPages, 0, 'a first miss is random');
    await vol.read(1);
    assert.equal(vol.stats().readaheadPages, 2, 'the window of 4 from page 1 stopped with 4 frames left obtainable');
    assert.deepEqual(log.reads.map((r) => [r.offset / BLOCK, r.bytes / BLOCK]), [
      [0, 1],
      [1, 2],
    ]);
    assert.deepEqual(await vol.read(3), pattern(3), 'the reader goes on past the window');
  });

  it('a window cut short by a nearly full cache: the stream goes on from where its pages end, never a lone read', async () => {
    // 32 pages, 26 dirty: each window takes 2 of the 4 or 8 pages asked for.
    const { vol, log } = await volume(2048, { cacheSize: 32 * BLOCK, readahead: 8 * BLOCK, highWater: 1 << 30 });
    await vol.change(async (tx) => {
      for (let i = 0; i < 26; i++) (await tx.overwrite(1000 + i)).fill(0xd0);
    });
    for (let i = 0; i < 200; i++) assert.deepEqual(await vol.read(i), pattern(i), `block ${i}`);
    const sizes = log.reads.map((r) => r.bytes / BLOCK).join(' ');
    // Read 0 alone looks random; every page after it comes in a window (of one or two pages here),
    // none by the lone read of a reader that fell between a cut window and a next one started
    // past the pages never read.
    assert.equal(vol.stats().readaheadUsed, 199, `requests in pages: ${sizes}`);
    for (const [block, times] of log.timesRead(BLOCK)) assert.equal(times, 1, `block ${block} read once`);
  });

  it('a stream that is left with its pages unused does not stop the readahead of the next: its pages are evicted first', async () => {
    // 64 pages: the share of pages read ahead and unused is 16, windows at most 8.
    const { vol, log } = await volume(2048, { cacheSize: 64 * BLOCK, readahead: 64 << 10 });
    for (let i = 0; i < 6; i++) await vol.read(i);
    const left = vol.stats();
    assert.ok(left.readaheadPages - left.readaheadUsed > 0, 'the stream left pages read ahead and unused');
    const from = log.reads.length;
    for (let i = 1000; i < 1400; i++) assert.deepEqual(await vol.read(i), pattern(i), `block ${i}`);
    const sizes = log.reads.slice(from).map((r) => r.bytes / BLOCK);
    // The new stream starts as any does (a lone read, then a window of 4), and then reads windows of 8:
    // its admissions evict the left stream's pages, even those that were still being read when the
    // share first filled.
    assert.deepEqual(sizes.slice(0, 2), [1, 4], `requests in pages: ${sizes.join(' ')}`);
    assert.ok(sizes.slice(2, -1).every((n) => n === 8), `requests in pages: ${sizes.join(' ')}`);
    const stats = vol.stats();
    assert.ok(stats.readaheadWasted >= left.readaheadPages - left.readaheadUsed, 'the left pages were evicted unused, and counted');
    assert.ok(stats.readaheadUsed >= left.readaheadUsed + 399, `pages read ahead and used: ${stats.readaheadUsed}`);
  });

  it('prefetch is not held to the readahead share, and into a cache full of dirty pages takes nothing', async () => {
    const { vol, log } = await volume(2048, { cacheSize: 32 * BLOCK, readahead: 8 * BLOCK, highWater: 1 << 30 });
    // Half the cache: twice the share of 8 pages.
    vol.prefetch(100, 16);
    assert.equal(vol.stats().readaheadPages, 16);
    for (let i = 0; i < 16; i++) assert.deepEqual(await vol.read(100 + i), pattern(100 + i));
    assert.equal(log.reads.length, 1, 'one request for the 16 pages');
    assert.equal(vol.stats().readaheadUsed, 16);
    await vol.change(async (tx) => {
      for (let i = 0; i < 32; i++) (await tx.overwrite(1000 + i)).fill(0xd0);
    });
    vol.prefetch(200, 4);
    assert.equal(vol.stats().readaheadPages, 16, 'no frame to take: nothing read ahead');
    assert.equal(vol.stats().pagesCached, 32);
    assert.deepEqual(await vol.read(201), pattern(201));
  });

  it('close frees the page memory', async () => {
    const { vol } = await volume(64, { cacheSize: 16 * BLOCK });
    for (let i = 0; i < 16; i++) await vol.read(i);
    assert.ok(vol.stats().cacheBytes >= 16 * BLOCK);
    await vol.close();
    assert.equal(vol.stats().cacheBytes, 0);
  });

  it('G1: a window never lands on a block dirty in the open delta (EMPTY blocks only, under the page lock)', async () => {
    const { vol, path } = await volume(512, { blockSize: 512, readahead: 128 << 10, highWater: 1 << 30 });
    // blockSize 512: a page holds 8 blocks. Dirty one block of pages ahead of the reader, reading nothing.
    await vol.change(async (tx) => {
      for (const b of [80, 161, 250, 333]) (await tx.overwrite(b)).fill(0xee);
    });
    for (let b = 0; b < 4096 / 512 * 50; b++) {
      const want = [80, 161, 250, 333].includes(b) ? Buffer.alloc(512, 0xee) : pattern(Math.floor(b / 8)).subarray((b % 8) * 512, (b % 8) * 512 + 512);
      assert.deepEqual(await vol.read(b), want, `block ${b}`);
    }
    assert.ok(vol.stats().readaheadPages > 0);
    await vol.commit();
    await vol.close();
    const bytes = fs.readFileSync(path);
    for (const b of [80, 161, 250, 333]) assert.deepEqual(bytes.subarray(b * 512, b * 512 + 512), Buffer.alloc(512, 0xee));
  });

  it('a stream of tx.write misses reads ahead as readers do', async () => {
    const { vol, log } = await volume(1024, { readahead: 256 << 10 });
    await vol.change(async (tx) => {
      for (let i = 0; i < 512; i++) {
        const view = await tx.write(i);
        assert.equal(view.readUInt32LE(0), i);
        view.writeUInt32LE(i + 1_000_000, 0);
      }
    });
    assert.ok(log.reads.length < 20, `${log.reads.length} read requests for 512 blocks`);
    assert.ok(vol.stats().readaheadUsed >= 500);
    await vol.commit();
    for (let i = 0; i < 512; i++) assert.equal((await vol.read(i)).readUInt32LE(0), i + 1_000_000);
  });

  it('a logical mapping reads ahead through its block map: contiguous physical runs merged, holes without I/O', async () => {
    const { vol, log } = await volume(1024, { readahead: 256 << 10 });
    // Logical 0..63 -> physical 100..163, 64..127 holes, 128..255 -> 600..727 backwards in halves.
    const map = (b: number): number => (b < 64 ? 100 + b : b < 128 ? HOLE : b < 192 ? 664 + (b - 128) : 600 + (b - 192));
    const file = vol.createMapping({ map, blockCount: 256 });
    for (let b = 0; b < 256; b++) {
      const physical = map(b);
      assert.deepEqual(await vol.read(b, file), physical === HOLE ? Buffer.alloc(BLOCK) : pattern(physical), `logical block ${b}`);
    }
    for (const r of log.reads) {
      const first = r.offset / BLOCK;
      const last = first + r.bytes / BLOCK - 1;
      const inside = (lo: number, hi: number): boolean => first >= lo && last <= hi;
      assert.ok(inside(100, 163) || inside(664, 727) || inside(600, 663), `request ${first}..${last} stays within one run`);
    }
    assert.ok(log.reads.length <= 12, `${log.reads.length} requests`);
    for (const [block, times] of log.timesRead(BLOCK)) assert.equal(times, 1, `physical block ${block} read once`);
  });

  it('prefetch returns at once; reads of its blocks then wait on the reads in flight and never issue a second', async () => {
    const { vol, log, faults } = await volume(512, { readahead: 0 });
    const release = faults.hold('read');
    let got: Buffer[];
    try {
      assert.equal(vol.prefetch(100, 64), undefined);
      const reads = Promise.all(Array.from({ length: 64 }, (_, k) => vol.read(100 + k)));
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(log.submits.length, 1, 'the prefetch went down; the reads did not');
      release();
      got = await reads;
    } finally {
      release();
    }
    for (let k = 0; k < 64; k++) assert.deepEqual(got[k], pattern(100 + k));
    assert.equal(log.reads.length, 1, 'one request for the 64 blocks');
    for (const [block, times] of log.timesRead(BLOCK)) assert.equal(times, 1, `block ${block} read once`);
    assert.equal(vol.stats().readaheadUsed, 64);
  });

  it('prefetch: bad runs are RangeErrors and TypeErrors before any I/O', async () => {
    const { vol, log } = await volume(64);
    assert.throws(() => vol.prefetch(60, 5), /count must be an integer from 1 to 4/);
    assert.throws(() => vol.prefetch(0, 0), RangeError);
    assert.throws(() => vol.prefetch(-1, 1), RangeError);
    assert.throws(() => vol.prefetch(0, Number.NaN), RangeError);
    assert.throws(() => vol.prefetch(0, '1' as unknown as number), TypeError);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(log.reads.length, 0);
  });

  it('tx.write on the marked page of a stream, the cache over its bound: the window it starts never evicts that page under the write', async () => {
    // 32 pages, windows of 4. The first use of a stream's mark starts the next window, whose
    // pages are admitted at once (evicting the oldest clean pages); the write that used the mark
    // must not find its own page evicted (and its frame freed) by them.
    const { vol, path } = await volume(2048, { cacheSize: 32 * BLOCK, readahead: 4 * BLOCK, highWater: 1 << 30 });
    await vol.read(0);
    await vol.read(1); // a stream: the window of pages 1 to 4, its mark on page 2
    // Page 2 is dirtied first (an overwrite keeps its mark), then 32 more pages: the cache
    // overcommits by one, nothing being in flight. Written, page 2 is the oldest clean page.
    await vol.change(async (tx) => {
      (await tx.overwrite(2)).fill(0x22);
      for (let i = 0; i < 32; i++) (await tx.overwrite(1000 + 7 * i)).fill(0x33);
    });
    await vol.commit();
    assert.equal(vol.stats().pagesCached, 33, 'the cache is over its bound by one clean page');
    // tx.write(2) uses the mark: the next window (pages 5 to 8) comes in at once.
    await vol.change(async (tx) => {
      const view = await tx.write(2);
      assert.deepEqual(view, Buffer.alloc(BLOCK, 0x22));
      view.fill(0x44);
    });
    assert.ok(vol.stats().readaheadPages >= 8, 'the next window was read ahead');
    assert.deepEqual(await vol.read(2), Buffer.alloc(BLOCK, 0x44), 'the write landed in the cached page');
    await vol.commit();
    const onDisk = Buffer.alloc(BLOCK);
    const fd = fs.openSync(path, 'r');
    try {
      fs.readSync(fd, onDisk, 0, BLOCK, 2 * BLOCK);
    } finally {
      fs.closeSync(fd);
    }
    assert.deepEqual(onDisk, Buffer.alloc(BLOCK, 0x44), 'the commit wrote it');
    for (let i = 5; i < 9; i++) assert.deepEqual(await vol.read(i), pattern(i), `block ${i}`);
  });

  it('readahead: 0 turns it off', async () => {
    const { vol, log } = await volume(256, { readahead: 0 });
    for (let i = 0; i < 256; i++) await vol.read(i);
    assert.equal(vol.stats().readaheadPages, 0);
    assert.equal(log.reads.length, 256);
  });
});
