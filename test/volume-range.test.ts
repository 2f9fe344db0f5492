import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { Device } from '../src/io/device';
import { Volume } from '../src/volume';
import { ReadLog } from './support/read-log';
import { volumesPerTest } from './support/volumes';

const BLOCK = 4096;

describe('range calls: a run of blocks in one call (real Device, O_DIRECT temp file)', () => {
  const volumes = volumesPerTest();

  /** A volume of `blocks` blocks, block i filled with the byte i, its reads logged. */
  async function volume(blocks: number): Promise<{ vol: Volume; log: ReadLog; path: string }> {
    const path = volumes.file();
    const fd = fs.openSync(path, 'w');
    for (let i = 0; i < blocks; i++) fs.writeSync(fd, Buffer.alloc(BLOCK, i & 0xff), 0, BLOCK, i * BLOCK);
    fs.closeSync(fd);
    const log = new ReadLog(await Device.open(path, { direct: true }));
    const vol = Volume.over(log, { cacheSize: 4 << 20, readahead: 0 });
    volumes.track(vol);
    return { vol, log, path };
  }

  it('vol.readRange: one copy of the run, its misses read together in one request', async () => {
    const { vol, log } = await volume(256);
    await vol.read(10);
    const run = await vol.readRange(8, 40);
    assert.equal(run.length, 40 * BLOCK);
    for (let k = 0; k < 40; k++) assert.deepEqual(run.subarray(k * BLOCK, (k + 1) * BLOCK), Buffer.alloc(BLOCK, 8 + k), `block ${8 + k}`);
    assert.deepEqual(
      log.reads.slice(1).map((r) => [r.offset / BLOCK, r.bytes / BLOCK]),
      [
        [8, 2],
        [11, 37],
      ],
      'around the cached block, two requests',
    );
    run.fill(0);
    assert.deepEqual(await vol.read(9), Buffer.alloc(BLOCK, 9), 'a copy: writing it changes nothing');
  });

  it('tx.writeRange: writable views of the run, read first in one request, dirty in the change\'s delta', async () => {
    const { vol, log, path } = await volume(256);
    await vol.change(async (tx) => {
      const views = await tx.writeRange(100, 64);
      assert.equal(views.length, 64);
      assert.equal(log.reads.length, 1, 'one request for the run');
      for (let k = 0; k < 64; k++) {
        assert.equal(views[k][0], (100 + k) & 0xff, 'read before it is written');
        views[k][1] = 0xab;
      }
      assert.equal((await tx.write(130))[1], 0xab, 'the same memory as tx.write of the block');
    });
    await vol.commit();
    const bytes = fs.readFileSync(path);
    for (let k = 0; k < 64; k++) {
      assert.equal(bytes[(100 + k) * BLOCK], (100 + k) & 0xff);
      assert.equal(bytes[(100 + k) * BLOCK + 1], 0xab);
    }
  });

  it('tx.overwriteRange: zero-filled views, nothing read; tx.readRange: a copy', async () => {
    const { vol, log, path } = await volume(64);
    await vol.change(async (tx) => {
      const views = await tx.overwriteRange(0, 64);
      for (const [k, view] of views.entries()) {
        assert.deepEqual(view, Buffer.alloc(BLOCK));
        view.fill(0xc0 + (k % 16));
      }
      const copy = await tx.readRange(10, 2);
      assert.deepEqual(copy, Buffer.concat([Buffer.alloc(BLOCK, 0xc0 + 10), Buffer.alloc(BLOCK, 0xc0 + 11)]));
    });
    assert.equal(log.reads.length, 0);
    await vol.commit();
    const bytes = fs.readFileSync(path);
    for (let k = 0; k < 64; k++) assert.deepEqual(bytes.subarray(k * BLOCK, (k + 1) * BLOCK), Buffer.alloc(BLOCK, 0xc0 + (k % 16)));
  });

  it('a run larger than the cache\'s range step goes in steps, all of it landing in the one delta', async () => {
    const { vol, path } = await volume(2048);
    // cacheSize 4 MiB: 1024 pages, a step of 256.
    await vol.change(async (tx) => {
      const views = await tx.writeRange(0, 1500);
      for (const [k, view] of views.entries()) view.writeUInt16LE(k, 2);
    });
    await vol.commit();
    const bytes = fs.readFileSync(path);
    for (let k = 0; k < 1500; k++) {
      assert.equal(bytes[k * BLOCK], k & 0xff);
      assert.equal(bytes.readUInt16LE(k * BLOCK + 2), k);
    }
  });

  it('bad runs are RangeErrors or TypeErrors before any I/O: past the end, zero or negative counts, NaN, fractions', async () => {
    const { vol, log } = await volume(64);
    const calls: [string, (first: unknown, count: unknown) => Promise<unknown>][] = [
      ['vol.readRange', (f, c) => vol.readRange(f as number, c as number)],
    ];
    let tx!: Parameters<Parameters<Volume['change']>[0]>[0];
    const held = vol.change(async (t) => {
      tx = t;
      for (const [first, count, error, message] of [
        [60, 5, RangeError, /count must be an integer from 1 to 4 \(the blocks from 60 to the end\), got 5/],
        [0, 0, RangeError, /count must be an integer from 1 to 64/],
        [0, -3, RangeError, /got -3/],
        [0, Number.NaN, RangeError, /got NaN/],
        [0, 1.5, RangeError, /got 1.5/],
        [64, 1, RangeError, /block must be an integer from 0 to 63, got 64/],
        [Number.NaN, 1, RangeError, /block must be/],
        [0, '2', TypeError, /count must be a number/],
      ] as const) {
        for (const [name, call] of [
          ...calls,
          ['tx.readRange', (f: unknown, c: unknown) => tx.readRange(f as number, c as number)],
          ['tx.writeRange', (f: unknown, c: unknown) => tx.writeRange(f as number, c as number)],
          ['tx.overwriteRange', (f: unknown, c: unknown) => tx.overwriteRange(f as number, c as number)],
        ] as const) {
          await assert.rejects(call(first, count), (e: unknown) => e instanceof error && message.test((e as Error).message), `${name}(${String(first)}, ${String(count)})`);
        }
      }
    });
    await held;
    assert.equal(log.reads.length, 0, 'nothing was read');
    assert.equal(vol.stats().pagesDirty, 0, 'nothing was dirtied');
  });

  it('range views are valid as long as single-block views and no longer: the range calls of a change refuse once it has ended', async () => {
    const { vol } = await volume(64);
    let tx!: Parameters<Parameters<Volume['change']>[0]>[0];
    let views: Buffer[] = [];
    await vol.change(async (t) => {
      tx = t;
      views = await t.writeRange(0, 4);
      views[0][0] = 0x11;
      // Within the change, a later await leaves them where they were: same memory as the block's view.
      await new Promise((resolve) => setImmediate(resolve));
      const single = await t.write(0);
      assert.equal(single.buffer, views[0].buffer);
      assert.equal(single.byteOffset, views[0].byteOffset);
    });
    for (const call of [() => tx.writeRange(0, 2), () => tx.overwriteRange(0, 2), () => tx.readRange(0, 2), () => tx.write(0)]) {
      await assert.rejects(call(), (e: unknown) => e instanceof TypeError && (e as { code?: string }).code === 'ERR_CHANGE_ENDED');
    }
    // After the change, the next delta's write of the block forks it while the earlier delta is
    // written: the old view is then the earlier image, not the block (why it is valid no longer).
    const committed = vol.commit();
    await vol.change(async (t) => {
      const now = await t.write(0);
      assert.equal(now[0], 0x11);
    });
    await committed;
    assert.equal((await vol.read(0))[0], 0x11);
  });
});
