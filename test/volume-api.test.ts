import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { open, type Change, type OpenOptions } from '../src/index';
import { Volume } from '../src/volume';
import { Device } from '../src/io/device';
import { MemoryDevice } from './support/memory-device';
import { PowerLossDevice } from './support/power-loss-device';
import { TempDir } from './support/temp';
import { fileBytes, realVolume } from './support/volumes';

const MiB = 1 << 20;

describe('Volume: the public face (real Device, O_DIRECT temp file)', () => {
  let temp: TempDir;

  beforeEach(() => {
    temp = new TempDir();
  });

  afterEach(() => temp.remove());

  it('read() and readRange() of a small block give memory of their own: its ArrayBuffer transfers to a worker and takes no other copy with it', async () => {
    // Below 4 KiB, Buffer.from and Buffer.allocUnsafe cut Node's shared pool: a transfer would detach every copy in it.
    const vol = await open(temp.file(), { size: MiB, blockSize: 512, pageSize: 4096 });
    try {
      await vol.change(async (tx) => {
        (await tx.overwrite(1)).fill(1);
        (await tx.overwrite(2)).fill(2);
      });
      const pairs = [
        await Promise.all([vol.read(1), vol.read(2)]),
        await vol.change((tx) => Promise.all([tx.read(1), tx.read(2)])),
        await Promise.all([vol.readRange(1, 1), vol.readRange(2, 1)]),
        await vol.change((tx) => Promise.all([tx.readRange(1, 1), tx.readRange(2, 1)])),
      ];
      for (const [a, b] of pairs) {
        assert.equal(a.buffer.byteLength, 512, 'the copy is its ArrayBuffer whole');
        assert.equal(a.byteOffset, 0);
        const { port1, port2 } = new MessageChannel();
        port1.postMessage(a.buffer, [a.buffer as ArrayBuffer]);
        port1.close();
        port2.close();
        assert.equal(a.byteLength, 0, 'transferred: this copy is detached');
        assert.deepEqual(b, Buffer.alloc(512, 2), 'the other copy is untouched');
      }
    } finally {
      await vol.close();
    }
  });

  it('opens a new sparse file, changes, reads, commits, closes, and reopens what was committed', async () => {
    const path = temp.file();
    const vol = await open(path, { size: 4 * MiB, blockSize: 4096 });
    assert.equal(vol.blockSize, 4096);
    assert.equal(vol.blockCount, 1024);
    const result = await vol.change(async (tx) => {
      const a = await tx.write(7);
      a.writeUInt32LE(42, 0);
      const b = await tx.read(9);
      assert.deepEqual(b, Buffer.alloc(4096));
      assert.equal((await tx.read(7)).readUInt32LE(0), 42, 'a change reads its own writes');
      return 'done';
    });
    assert.equal(result, 'done', 'change() resolves with what its callback returns');
    const copy = await vol.read(7);
    assert.equal(copy.readUInt32LE(0), 42);
    copy.writeUInt32LE(0, 0);
    assert.equal((await vol.read(7)).readUInt32LE(0), 42, 'read() gives a copy');
    assert.equal(await vol.commit(), 1);
    // On the file (through the page cache, which an O_DIRECT write reaches with or without a flush); G3 is below.
    assert.equal(fileBytes(path, 7 * 4096, 4).readUInt32LE(0), 42, 'written to the file');
    await vol.change(async (tx) => (await tx.write(1023)).fill(0xff));
    await vol.close();

    const again = await open(path);
    assert.equal(again.blockCount, 1024);
    assert.equal((await again.read(7)).readUInt32LE(0), 42);
    assert.deepEqual(await again.read(1023), Buffer.alloc(4096, 0xff), 'close() committed what was pending');
    await again.close();
  });

  it('G3: what commit() acknowledged survives a power cut right then, which keeps only what a flush or a dsync write made durable', async () => {
    const path = temp.file();
    const recorder = await PowerLossDevice.wrap(await Device.open(path, { size: MiB, direct: true }));
    const vol = Volume.over(recorder, {});
    try {
      for (let d = 1; d <= 4; d++) {
        // Two runs (not contiguous), then one block: plain writes and a flush, and a lone dsync write.
        await vol.change(async (tx) => {
          for (const b of d % 2 ? [d, 100 + d] : [d]) (await tx.write(b)).fill(d);
        });
        const delta = await vol.commit();
        const image = recorder.durableImage();
        for (const b of d % 2 ? [d, 100 + d] : [d]) {
          assert.deepEqual(image.subarray(b * 4096, (b + 1) * 4096), Buffer.alloc(4096, d), `block ${b} of delta ${delta} is durable when its commit resolves`);
        }
      }
    } finally {
      await vol.close();
    }
  });

  it('numbers deltas from 1 upwards and reports stats', async () => {
    const { vol } = await realVolume(temp, MiB);
    assert.equal(await vol.commit(), 0, 'nothing to commit: the delta before the first, and no delta spent');
    await vol.change(async (tx) => (await tx.write(0)).fill(1));
    assert.equal(vol.stats().pagesDirty, 1);
    assert.equal(await vol.commit(), 1);
    const stats = vol.stats();
    assert.equal(stats.delta, 2);
    assert.equal(stats.durableDelta, 1);
    assert.equal(stats.deltasCommitted, 1);
    assert.equal(stats.emptyCommits, 1);
    assert.equal(stats.bytesWritten, 4096);
    assert.equal(stats.pagesDirty, 0);
    assert.ok(stats.writeoutMs > 0);
    await vol.close();
  });

  it('a second close is harmless; use after close is a clear error', async () => {
    const { vol, device } = await realVolume(temp, MiB);
    await vol.close();
    await vol.close();
    assert.equal(vol.closed, true);
    const closed = { name: 'BlockforkError', code: 'ERR_VOLUME_CLOSED' };
    await assert.rejects(vol.change(async () => undefined), closed);
    await assert.rejects(vol.read(0), closed);
    await assert.rejects(vol.commit(), closed);
    await assert.rejects(vol.bread(0), closed);
    assert.throws(() => vol.createMapping({ map: (b) => b }), closed);
    assert.equal(device.writes + device.reads, 0);
  });

  it('a read-only volume reads and refuses changes', async () => {
    const path = temp.file();
    const vol = await open(path, { size: MiB });
    await vol.change(async (tx) => (await tx.write(2)).fill(2));
    await vol.close();
    const readOnly = await open(path, { readOnly: true });
    assert.deepEqual(await readOnly.read(2), Buffer.alloc(4096, 2));
    await assert.rejects(readOnly.change(async () => undefined), { name: 'BlockforkError', code: 'ERR_READ_ONLY' });
    await readOnly.close();
  });

  it('a tx used after its change ended is a TypeError', async () => {
    const { vol } = await realVolume(temp, MiB);
    let saved: Change | undefined;
    await vol.change((tx) => {
      saved = tx;
    });
    const ended = { name: 'TypeError', code: 'ERR_CHANGE_ENDED' };
    await assert.rejects((saved as Change).write(0), ended);
    await assert.rejects((saved as Change).overwrite(0), ended);
    await assert.rejects((saved as Change).read(0), ended);
    await vol.close();
  });

  it('a write the callback did not await rejects when the change ends, and dirties nothing', async () => {
    const { vol, device } = await realVolume(temp, MiB);
    const release = device.hold('read');
    let pending: Promise<Buffer> | undefined;
    await vol.change((tx) => {
      pending = tx.write(5);
    });
    release();
    await assert.rejects(pending as Promise<Buffer>, { name: 'TypeError', code: 'ERR_CHANGE_ENDED' });
    assert.equal(vol.stats().pagesDirty, 0);
    await vol.close();
  });

  describe('bad input: TypeError or RangeError with a clear message, before any I/O', () => {
    const cases: [string, OpenOptions, RegExp, string][] = [
      ['blockSize not a power of two', { blockSize: 3000 }, /blockSize must be a power of two/, 'RangeError'],
      ['blockSize below 512', { blockSize: 256 }, /blockSize must be an integer from 512/, 'RangeError'],
      ['blockSize above pageSize', { blockSize: 8192, pageSize: 4096 }, /blockSize \(8192\) must not exceed pageSize \(4096\)/, 'RangeError'],
      ['blockSize a string', { blockSize: '4096' as unknown as number }, /blockSize must be a number, got "4096"/, 'TypeError'],
      ['cacheSize negative', { cacheSize: -1 }, /cacheSize must be an integer/, 'RangeError'],
      ['cacheSize NaN', { cacheSize: NaN }, /cacheSize must be an integer .* got NaN/, 'RangeError'],
      ['maxDeltas zero', { maxDeltas: 0 }, /maxDeltas must be an integer from 1 to 64/, 'RangeError'],
      ['maxDeltas fractional', { maxDeltas: 1.5 }, /maxDeltas must be an integer/, 'RangeError'],
      ['fork not a boolean', { fork: 'yes' as unknown as boolean }, /fork must be a boolean/, 'TypeError'],
      ['size negative', { size: -4096 }, /size must be a positive integer/, 'RangeError'],
      ['engine unknown', { engine: 'aio' as unknown as 'auto' }, /engine must be/, 'TypeError'],
    ];
    for (const [what, options, message, name] of cases) {
      it(`open(): ${what}`, async () => {
        const path = temp.file();
        await assert.rejects(open(path, { size: MiB, ...options }), (error: Error) => {
          assert.equal(error.name, name);
          assert.match(error.message, message);
          return true;
        });
        assert.equal(fs.existsSync(path), false, 'nothing was created');
      });
    }

    it('open(): options not an object, journal or format not a boolean, logSize out of range', async () => {
      const path = temp.file();
      await assert.rejects(open(path, null as unknown as OpenOptions), { name: 'TypeError', message: /options must be an object/ });
      await assert.rejects(open(path, { size: MiB, journal: 1 as unknown as boolean }), { name: 'TypeError', message: /journal must be a boolean/ });
      await assert.rejects(open(path, { size: MiB, format: 'yes' as unknown as boolean }), { name: 'TypeError', message: /format must be a boolean/ });
      await assert.rejects(open(path, { size: MiB, journal: true, logSize: 4096 }), { name: 'RangeError', message: /logSize must be an integer from 32768/ });
      assert.equal(fs.existsSync(path), false, 'nothing was created');
    });

    it('a blockSize below the device sector size', () => {
      const device = new MemoryDevice({ size: MiB, sectorSize: 4096 });
      assert.throws(() => Volume.over(device, { blockSize: 512 }), {
        name: 'RangeError',
        message: "blockSize (512) must be at least the device's logical sector size (4096)",
      });
    });

    it('block indexes out of range, negative, non-integer, or not numbers; a foreign mapping', async () => {
      const { vol, device } = await realVolume(temp, MiB);
      const other = Volume.over(new MemoryDevice({ size: MiB })).createMapping({ map: (b) => b });
      const range = /block must be an integer from 0 to 255/;
      await vol.change(async (tx) => {
        for (const bad of [-1, 256, 1.5, NaN, Infinity, 2 ** 53]) {
          await assert.rejects(tx.write(bad), { name: 'RangeError', message: range });
          await assert.rejects(tx.overwrite(bad), { name: 'RangeError', message: range });
          await assert.rejects(tx.read(bad), { name: 'RangeError', message: range });
          await assert.rejects(vol.read(bad), { name: 'RangeError', message: range });
        }
        for (const bad of ['1', null, undefined, {}, 1n]) {
          await assert.rejects(tx.write(bad as number), { name: 'TypeError', message: /block must be a number/ });
          await assert.rejects(vol.read(bad as number), { name: 'TypeError', message: /block must be a number/ });
        }
        await assert.rejects(tx.write(0, other), { name: 'TypeError', message: /mapping must be a Mapping of this volume/ });
        await assert.rejects(tx.write(0, {} as never), { name: 'TypeError', message: /mapping must be a Mapping/ });
        await assert.rejects(tx.blockdirty({} as never), { name: 'TypeError', message: /handle must be a BlockHandle/ });
      });
      await assert.rejects(vol.change('nope' as never), { name: 'TypeError', message: /change\(\) takes a function/ });
      assert.throws(() => vol.createMapping({ map: 'x' as never }), { name: 'TypeError', message: /map must be a function/ });
      assert.throws(() => vol.createMapping({ map: (b) => b, blockCount: 0 }), { name: 'RangeError' });
      assert.equal(device.reads + device.writes, 0, 'no I/O');
      assert.equal(vol.stats().pagesCached, 0);
      await vol.close();
    });
  });
});
