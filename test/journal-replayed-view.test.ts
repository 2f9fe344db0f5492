import assert from 'node:assert/strict';
import { truncateSync } from 'node:fs';
import { Device } from '../src/io/device';
import { Slab } from '../src/io/slab';
import { ReplayedView } from '../src/journal/replayed-view';
import { fileBytes } from './support/volumes';
import { TempDir } from './support/temp';

/**
 * The read-only view of a journaled volume's data area as replay would leave
 * it: reads from the real device (an O_DIRECT temp file), with the blocks
 * the log holds newer images of patched over from memory. Every block of the
 * file holds its own number in each byte (block b is all b), every image all
 * 0xA0 + b, so a byte read says where it came from.
 */
const B = 4096;
const BLOCKS = 16;

describe('ReplayedView: the data area as replay would leave it, read-only', () => {
  let temp: TempDir;
  let device: Device;
  let slab: Slab;
  const images = new Map<number, Uint8Array>([2, 5, 6, 15].map((b) => [b, new Uint8Array(B).fill(0xa0 + b)]));

  beforeEach(async () => {
    temp = new TempDir();
    device = await Device.open(temp.file(), { size: BLOCKS * B, direct: true });
    slab = Slab.alloc(B, BLOCKS);
    for (let b = 0; b < BLOCKS; b++) slab.page(b).fill(b);
    await device.run([{ op: 'write', offset: 0, buffers: [Buffer.from(slab.memory, 0, BLOCKS * B)] }]);
    await device.flush();
    for (let b = 0; b < BLOCKS; b++) slab.page(b).fill(0xff);
  });
  afterEach(async () => {
    await device.close();
    slab.release();
    temp.remove();
  });

  /** What each block of the view should read as: its image if replay has one, else the device's bytes. */
  const expected = (b: number): number => (images.has(b) ? 0xa0 + b : b);

  /** The byte values of `bytes`, one entry per run of equal bytes of `unit` length. */
  function units(bytes: Uint8Array, unit: number): number[] {
    const out: number[] = [];
    for (let at = 0; at < bytes.byteLength; at += unit) {
      const first = bytes[at];
      assert.ok(bytes.subarray(at, at + unit).every((x) => x === first), `bytes ${at} .. ${at + unit - 1} are one value`);
      out.push(first);
    }
    return out;
  }

  it('submit: a read of the whole area gets the device\'s blocks with the replayed images over theirs', async () => {
    const view = new ReplayedView(device, B, images);
    const all = Buffer.from(slab.memory, 0, BLOCKS * B);
    const [result] = await view.submit([{ op: 'read', offset: 0, buffers: [all] }]);
    assert.equal(result.error, undefined);
    assert.equal(result.bytes, BLOCKS * B);
    assert.deepEqual(units(all, B), Array.from({ length: BLOCKS }, (_, b) => expected(b)));
  });

  it('run: a read scattered over several buffers patches each at its own offset, in a batch of several requests', async () => {
    const view = new ReplayedView(device, B, images);
    // Request 1: blocks 1..7 into buffers of 2, 1 and 4 blocks; request 2: blocks 14..15.
    const buffers = [Buffer.from(slab.memory, 0, 2 * B), Buffer.from(slab.memory, 2 * B, B), Buffer.from(slab.memory, 3 * B, 4 * B)];
    const tail = Buffer.from(slab.memory, 8 * B, 2 * B);
    await view.run([
      { op: 'read', offset: 1 * B, buffers },
      { op: 'read', offset: 14 * B, buffers: [tail] },
    ]);
    assert.deepEqual(units(Buffer.from(slab.memory, 0, 7 * B), B), [1, 2, 3, 4, 5, 6, 7].map(expected));
    assert.deepEqual(units(tail, B), [14, 15].map(expected));
  });

  it('a read that starts or ends inside a block is patched in part: only the bytes of the image that it covers', async () => {
    const view = new ReplayedView(device, B, images);
    const sector = device.geometry.logicalSectorSize;
    assert.ok(sector < B, `the file's sector (${sector} bytes) is smaller than a block`);
    // From the middle of block 1 to the middle of block 2, then from a sector into block 5 to a sector before the end of block 6.
    const half = Buffer.from(slab.memory, 0, B);
    const inner = Buffer.from(slab.memory, B, 2 * B - 2 * sector);
    await view.run([{ op: 'read', offset: B + B / 2, buffers: [half] }]);
    await view.run([{ op: 'read', offset: 5 * B + sector, buffers: [inner] }]);
    assert.deepEqual(units(half, B / 2), [1, expected(2)]);
    assert.deepEqual(units(inner, B - sector), [expected(5), expected(6)]);
    // The image's bytes are taken at the offsets the read covers: number them to see which.
    const numbered = new Uint8Array(B).map((_, i) => (i / sector) | 0);
    const part = Buffer.from(slab.memory, 4 * B, 2 * sector);
    await new ReplayedView(device, B, new Map([[3, numbered]])).run([{ op: 'read', offset: 3 * B + 2 * sector, buffers: [part] }]);
    assert.deepEqual(units(part, sector), [2, 3]);
  });

  it('a short read (the file cut short under it) patches only the bytes it brought in, in no later buffer', async () => {
    // The file loses its last two blocks after the device opened it: a read of blocks 13..14 brings in block 13 only.
    truncateSync(device.path, 14 * B);
    const view = new ReplayedView(device, B, new Map([13, 14].map((b) => [b, new Uint8Array(B).fill(0xa0 + b)])));
    const first = Buffer.from(slab.memory, 0, B);
    const past = Buffer.from(slab.memory, B, B);
    const [result] = await view.submit([{ op: 'read', offset: 13 * B, buffers: [first, past] }]);
    assert.equal(result.bytes, B, 'the device read one block of the two');
    assert.deepEqual(units(first, B), [0xa0 + 13]);
    // What the device itself leaves past a short read, read the same way without the view.
    const own = Buffer.from(slab.memory, 4 * B, 2 * B);
    const [ownResult] = await device.submit([{ op: 'read', offset: 13 * B, buffers: [own] }]);
    assert.equal(ownResult.bytes, B);
    const left = Buffer.from(own.subarray(B));
    assert.ok(left.every((x) => x !== 0xa0 + 14), 'the device does not hold the image');
    assert.deepEqual(past, left, 'the buffer past what was read is as the device left it, not patched');
    // Likewise a short read that stops inside a buffer.
    const both = Buffer.from(slab.memory, 2 * B, 2 * B);
    const [short] = await view.submit([{ op: 'read', offset: 13 * B, buffers: [both] }]);
    assert.equal(short.bytes, B);
    assert.deepEqual(units(both.subarray(0, B), B), [0xa0 + 13]);
    assert.deepEqual(Buffer.from(both.subarray(B)), left);
  });

  it('refuses writes, alone or in a batch with reads, through submit and run, and writes nothing', async () => {
    const view = new ReplayedView(device, B, images);
    const block = slab.page(0).fill(0x77);
    const write = { op: 'write' as const, offset: 3 * B, buffers: [block] };
    const read = { op: 'read' as const, offset: 0, buffers: [slab.page(1)] };
    for (const batch of [[write], [read, write], [write, read]]) {
      await assert.rejects(view.submit(batch), { code: 'ERR_READ_ONLY', message: /is open read-only/ });
      await assert.rejects(view.run(batch), { code: 'ERR_READ_ONLY', message: /is open read-only/ });
    }
    await device.flush();
    assert.ok(fileBytes(device.path, 3 * B, B).every((x) => x === 3), 'block 3 on the file is as it was');
    assert.equal(view.path, device.path);
    assert.equal(view.geometry, device.geometry);
  });
});
