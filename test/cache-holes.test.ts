import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import fc from 'fast-check';
import { Device } from '../src/io/device';
import { KnownData } from '../src/io/known-data';
import { Slab } from '../src/io/slab';
import { open, Volume } from '../src/volume';
import { ReadLog } from './support/read-log';
import { volumesPerTest } from './support/volumes';

const BLOCK = 4096;

function pattern(block: number): Buffer {
  const b = Buffer.alloc(BLOCK, (block * 7 + 1) & 0xff);
  b.writeUInt32LE(block, 0);
  return b;
}

/**
 * A sparse file's holes read as zeros without a request: the device says
 * where its data is (lseek SEEK_DATA / SEEK_HOLE), and the read path fills
 * the pages of a hole itself. What is at stake is that data is never taken
 * for a hole: every test reads back what was written.
 */
describe('holes of a sparse file: zeros without I/O (real Device, O_DIRECT temp file)', () => {
  const volumes = volumesPerTest();

  /** A sparse file of `size` blocks holding `pattern` in each of `runs` ([first, end) blocks) and holes elsewhere. */
  function sparseFile(size: number, runs: [number, number][]): string {
    const path = volumes.file();
    const fd = fs.openSync(path, 'w');
    for (const [first, end] of runs) for (let i = first; i < end; i++) fs.writeSync(fd, pattern(i), 0, BLOCK, i * BLOCK);
    fs.ftruncateSync(fd, size * BLOCK);
    fs.closeSync(fd);
    return path;
  }

  it('Device.holeAt: true inside a hole, false over data or a range that reaches data, and false once a write filled it', async () => {
    const path = sparseFile(1024, [[256, 320]]);
    const device = await Device.open(path);
    const slab = Slab.alloc(BLOCK, 16);
    try {
      assert.equal(device.holeAt(0, 256 * BLOCK), true);
      assert.equal(device.holeAt(100 * BLOCK, BLOCK), true);
      assert.equal(device.holeAt(256 * BLOCK, BLOCK), false);
      assert.equal(device.holeAt(300 * BLOCK, 20 * BLOCK), false);
      assert.equal(device.holeAt(250 * BLOCK, 8 * BLOCK), false, 'a range that begins in a hole and reaches data');
      assert.equal(device.holeAt(320 * BLOCK, 704 * BLOCK), true, 'the hole that runs to the end of the file');
      await device.run([{ op: 'write', offset: 600 * BLOCK, buffers: [slab.page(0)] }]);
      assert.equal(device.holeAt(600 * BLOCK, BLOCK), false, 'a block written through the device');
      assert.equal(device.holeAt(320 * BLOCK, 704 * BLOCK), false);
      assert.equal(device.holeAt(601 * BLOCK, BLOCK), true, 'the block after it is still a hole');
    } finally {
      slab.release();
      await device.close();
    }
    assert.equal(device.holeAt(0, BLOCK), false, 'a closed device asks nothing');
  });

  it('a sequential reader over data and holes: every block as the file holds it, and no request for a hole', async () => {
    const runs: [number, number][] = [[0, 40], [300, 310], [700, 1024]];
    const path = sparseFile(1024, runs);
    const log = new ReadLog(await Device.open(path), true);
    // 64 pages: the holes' pages reuse frames that held data, and must come out zeroed.
    const vol = Volume.over(log, { cacheSize: 64 * BLOCK, readahead: 128 << 10 });
    volumes.track(vol);
    const isData = (b: number): boolean => runs.some(([first, end]) => b >= first && b < end);
    for (let b = 0; b < 1024; b++) assert.deepEqual(await vol.read(b), isData(b) ? pattern(b) : Buffer.alloc(BLOCK), `block ${b}`);
    assert.ok(log.reads.length > 0);
    for (const r of log.reads) {
      const first = r.offset / BLOCK;
      const end = first + r.bytes / BLOCK;
      assert.ok(runs.some(([lo, hi]) => first < hi && end > lo), `request for blocks ${first}..${end - 1} holds no data`);
    }
    const read = log.timesRead(BLOCK);
    for (let b = 0; b < 1024; b++) if (isData(b)) assert.ok(read.has(b), `data block ${b} was read`);
  });

  it('without holeAt the same reader reads the holes too (what the test above tells apart)', async () => {
    const path = sparseFile(256, [[0, 8]]);
    const log = new ReadLog(await Device.open(path));
    const vol = Volume.over(log, { cacheSize: 64 * BLOCK, readahead: 128 << 10 });
    volumes.track(vol);
    for (let b = 0; b < 256; b++) await vol.read(b);
    assert.ok(log.timesRead(BLOCK).has(200), 'block 200, a hole, was read');
  });

  for (const mode of ['ordered', 'journal', 'journal v2'] as const) {
    it(`${mode}: blocks written into holes, committed and evicted, read back as written, never as a hole's zeros`, async () => {
      const path = volumes.file();
      const options = { cacheSize: 64 * BLOCK, readahead: 128 << 10, size: 16 << 20 };
      const formats = mode === 'ordered' ? { journal: false } : { journal: true, format: true, logSize: 4 << 20, formatVersion: mode === 'journal' ? (1 as const) : (2 as const) };
      let vol = await open(path, { ...options, ...formats });
      volumes.track(vol);
      const written = new Set<number>();
      // Scattered runs and single blocks, each change committed: the cache (64 pages) evicts them before they are read.
      for (const [first, count] of [[10, 100], [400, 1], [402, 1], [700, 300], [1500, 64]]) {
        await vol.change(async (tx) => {
          for (let b = first; b < first + count; b++) {
            const view = await tx.write(b);
            assert.deepEqual(view, Buffer.alloc(BLOCK), `block ${b} was a hole`);
            pattern(b).copy(view);
            written.add(b);
          }
        });
        await vol.commit();
      }
      const check = async (when: string): Promise<void> => {
        for (let b = 0; b < Math.min(vol.blockCount, 1800); b++) {
          assert.deepEqual(await vol.read(b), written.has(b) ? pattern(b) : Buffer.alloc(BLOCK), `${when}: block ${b}`);
        }
      };
      await check('before reopening');
      await vol.close();
      vol = await open(path, { cacheSize: 64 * BLOCK, readahead: 128 << 10, journal: mode !== 'ordered' });
      volumes.track(vol);
      await check('after reopening');
    });
  }

  it('KnownData: what it covers is exactly the union of what it was told (property, against a model)', () => {
    const range = fc.tuple(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 40 })).map(([start, length]) => [start, start + length] as const);
    fc.assert(
      fc.property(fc.array(range, { maxLength: 30 }), fc.array(range, { minLength: 1, maxLength: 20 }), (adds, queries) => {
        const known = new KnownData();
        const model = new Array<boolean>(260).fill(false);
        for (const [start, end] of adds) {
          known.add(start, end);
          for (let i = start; i < end; i++) model[i] = true;
        }
        const ranges = known.ranges;
        for (let i = 0; i < ranges.length; i++) {
          assert.ok(ranges[i][0] < ranges[i][1], 'no empty range');
          if (i > 0) assert.ok(ranges[i - 1][1] < ranges[i][0], 'sorted, disjoint, adjacent ones merged');
        }
        for (let i = 0; i < 260; i++) assert.equal(ranges.some(([s, e]) => i >= s && i < e), model[i], `unit ${i}`);
        for (const [start, end] of queries) {
          if (end === start) continue;
          assert.equal(known.covers(start, end), model.slice(start, end).every(Boolean), `covers(${start}, ${end})`);
        }
      }),
    );
  });
});
