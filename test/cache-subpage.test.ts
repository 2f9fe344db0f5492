import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { HOLE } from '../src/cache/mapping';
import { Device } from '../src/io/device';
import { Volume, type VolumeOptions } from '../src/volume';
import { ReadLog } from './support/read-log';
import { fileBytes, volumesPerTest } from './support/volumes';

// Blocks smaller than the page (1 KiB blocks, 4 KiB pages): runs, handles,
// holes and writeout on pages past the first and from the middle of a page,
// on a real Device (O_DIRECT on a temp file) whose reads are logged.

const BLOCK = 1024;
const PER_PAGE = 4;

/** What the file holds at block i before the test: its number, then a byte of it. */
function pattern(block: number): Buffer {
  const b = Buffer.alloc(BLOCK, (block * 7 + 1) & 0xff);
  b.writeUInt32LE(block, 0);
  return b;
}

describe('blocks smaller than a page (real Device, O_DIRECT temp file)', () => {
  const volumes = volumesPerTest();

  /** A volume of 1 KiB blocks over a file whose first `blocks` blocks hold `pattern`, its reads logged. */
  async function volume(blocks: number, options: VolumeOptions = {}): Promise<{ vol: Volume; log: ReadLog; path: string }> {
    const path = volumes.file();
    const fd = fs.openSync(path, 'w');
    for (let i = 0; i < blocks; i++) fs.writeSync(fd, pattern(i), 0, BLOCK, i * BLOCK);
    fs.ftruncateSync(fd, Math.max(blocks * BLOCK, 1 << 20));
    fs.closeSync(fd);
    const log = new ReadLog(await Device.open(path, { direct: true }));
    const vol = Volume.over(log, { blockSize: BLOCK, cacheSize: 64 * 4096, highWater: 1 << 30, readahead: 0, ...options });
    volumes.track(vol);
    return { vol, log, path };
  }

  const reads = (log: ReadLog): number[][] => log.reads.map((r) => [r.offset / BLOCK, r.bytes / BLOCK]);

  it('readRange from the middle of a page to the middle of another: each block of the run, read once', async () => {
    const { vol, log } = await volume(64);
    const run = await vol.readRange(6, 13);
    for (let k = 0; k < 13; k++) assert.deepEqual(run.subarray(k * BLOCK, (k + 1) * BLOCK), pattern(6 + k), `block ${6 + k}`);
    assert.deepEqual(reads(log), [[4, 16]], 'pages 1 to 4, whole, in one request');
  });

  it('a run reads only what it lacks: its part of a first and last page that are up to date for it is not read, their other blocks neither', async () => {
    const { vol, log } = await volume(64);
    await vol.change(async (tx) => {
      // Page 0: blocks 2 and 3 overwritten, 0 and 1 EMPTY. Page 2: blocks 8 and 9 overwritten, 10 and 11 EMPTY.
      for (const b of [2, 3, 8, 9]) (await tx.overwrite(b)).fill(0xb0 + b);
    });
    const run = await vol.readRange(2, 8);
    assert.deepEqual(reads(log), [[4, 4]], 'only page 1, the one the run needed');
    assert.deepEqual(run.subarray(0, BLOCK), Buffer.alloc(BLOCK, 0xb2));
    assert.deepEqual(run.subarray(2 * BLOCK, 3 * BLOCK), pattern(4));
    assert.deepEqual(run.subarray(7 * BLOCK, 8 * BLOCK), Buffer.alloc(BLOCK, 0xb9));
    assert.deepEqual(await vol.read(0), pattern(0), 'block 0, outside the run, read when asked for');
    assert.deepEqual(await vol.read(11), pattern(11));
  });

  it('a run in several range steps lands every block at its place (a step of 16 pages, 64 blocks)', async () => {
    const { vol } = await volume(256);
    const run = await vol.readRange(3, 150);
    for (let k = 0; k < 150; k++) assert.deepEqual(run.subarray(k * BLOCK, (k + 1) * BLOCK), pattern(3 + k), `block ${3 + k}`);
  });

  it('a run of single blocks (count 1) is a run', async () => {
    const { vol } = await volume(64);
    assert.deepEqual(await vol.readRange(13, 1), pattern(13));
    await vol.change(async (tx) => {
      const [view] = await tx.writeRange(14, 1);
      assert.deepEqual(view, pattern(14));
    });
  });

  it('a handle on a block in the middle of a page past the first gives that block, and holds that page until released once', async () => {
    const { vol, log } = await volume(64, { cacheSize: 4 * 4096 });
    const handle = await vol.bread(9);
    assert.deepEqual(handle.data, pattern(9));
    for (let b = 16; b < 64; b += PER_PAGE) await vol.read(b);
    const before = log.reads.length;
    assert.deepEqual(handle.data, pattern(9), 'held through the evictions');
    assert.equal(log.reads.length, before);
    handle.release();
    handle.release();
    // Released (once: a second release takes no other pin), page 2 may go, even after one more use: every page evictable, the cache within its 4.
    assert.deepEqual(await vol.readRange(9, 1), pattern(9), 'a use that pins the page and lets it go');
    for (let b = 16; b < 64; b += PER_PAGE) await vol.read(b);
    assert.ok(vol.stats().pagesCached <= 4, `${vol.stats().pagesCached} pages cached`);
    await vol.read(9);
    assert.deepEqual(reads(log).at(-1), [8, 4], 'page 2 was evicted, and read again');
  });

  it('a handle\'s data after close is refused (ERR_VOLUME_CLOSED)', async () => {
    const { vol } = await volume(16);
    const handle = await vol.bread(5);
    await vol.close();
    assert.throws(() => handle.data, { code: 'ERR_VOLUME_CLOSED' });
    handle.release();
  });

  it('a hole in the middle of a page reads as zeros, even in a frame that held other data, without I/O and without counting a page read', async () => {
    const { vol, log } = await volume(256, { cacheSize: 4 * 4096 });
    // Every frame of the cache has held data.
    for (let b = 0; b < 64; b += PER_PAGE) await vol.read(b);
    const holes = vol.createMapping({ map: (block) => (block % PER_PAGE === 2 ? HOLE : 100 + block), blockCount: 8 });
    assert.deepEqual(await vol.read(2, holes), Buffer.alloc(BLOCK), 'the hole');
    assert.deepEqual(await vol.read(3, holes), pattern(103));
    const allHoles = vol.createMapping({ map: () => HOLE, blockCount: 8 });
    const pagesRead = vol.stats().pagesRead;
    const requests = log.reads.length;
    assert.deepEqual(await vol.read(5, allHoles), Buffer.alloc(BLOCK));
    assert.equal(log.reads.length, requests, 'no I/O for a page of holes');
    assert.equal(vol.stats().pagesRead, pagesRead, 'and no page counted as read');
  });

  it('a block map that returns anything but a hole or a volume block is refused with a RangeError that gives the bounds', async () => {
    const { vol } = await volume(16);
    const blocks = vol.blockCount;
    for (const value of [blocks, -2, 2.5, Number.NaN]) {
      const bad = vol.createMapping({ map: () => value, blockCount: 4 });
      await assert.rejects(vol.read(0, bad), { name: 'RangeError', message: new RegExp(`expected -1 \\(a hole\\) or an integer from 0 to ${blocks - 1}$`) }, `map returned ${value}`);
    }
    const last = vol.createMapping({ map: () => blocks - 1, blockCount: 4 });
    assert.equal((await vol.read(0, last)).length, BLOCK, 'the last volume block is one');
  });

  it('writeout cleans only the blocks it wrote: the EMPTY blocks of a page overwritten in part are read from the device later', async () => {
    const { vol, path } = await volume(64);
    await vol.change(async (tx) => (await tx.overwrite(5)).fill(0x55));
    assert.equal(await vol.commit(), 1);
    assert.deepEqual(fileBytes(path, 5 * BLOCK, BLOCK), Buffer.alloc(BLOCK, 0x55));
    for (const b of [4, 6, 7]) assert.deepEqual(await vol.read(b), pattern(b), `block ${b}, never read before the commit`);
  });

  it('a mapping of another volume is refused with a TypeError, not taken for one of this volume\'s', async () => {
    const { vol } = await volume(16);
    const other = (await volume(16)).vol;
    const theirs = other.createMapping({ map: (block) => block, blockCount: 4 });
    assert.equal(vol.createMapping({ map: (block) => block, blockCount: 4 }).id, theirs.id, 'the same id in each volume');
    await assert.rejects(vol.read(0, theirs), { name: 'TypeError', message: /mapping must be a Mapping of this volume/ });
  });
});
