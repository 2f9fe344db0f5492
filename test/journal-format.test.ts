import { strict as assert } from 'node:assert';
import { mkdtemp, rm, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Device } from '../src/io/device';
import { Slab } from '../src/io/slab';
import { allocBlocks } from '../src/journal/block-memory';
import { crc32c } from '../src/journal/crc32c';
import { JournalWriter } from '../src/journal/journal-writer';
import {
  decodeSuperblock,
  encodeSuperblock,
  FORMAT_VERSION,
  readSuperblock,
  SUPERBLOCK_BYTES,
  type Superblock,
} from '../src/journal/superblock';
import { formatVolume, planLayout } from '../src/journal/volume-format';

const SIZE = 1 << 20;

describe('journal: superblock and format', () => {
  let dir: string;
  const open: Device[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blockfork-journal-format-'));
  });
  afterEach(async () => {
    for (const d of open.splice(0)) await d.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function device(name = 'vol.img', size = SIZE): Promise<Device> {
    const d = await Device.open(join(dir, name), { size });
    open.push(d);
    return d;
  }

  /** Reads `length` bytes at a sector-aligned offset, lets `mutate` change them, writes them back. */
  async function patch(d: Device, offset: number, length: number, mutate: (bytes: Buffer) => void): Promise<void> {
    const slab = Slab.alloc(4096, Math.ceil(length / 4096));
    const bytes = Buffer.from(slab.memory, 0, length);
    await d.run([{ op: 'read', offset, buffers: [bytes] }]);
    mutate(bytes);
    await d.run([{ op: 'write', offset, buffers: [bytes] }]);
    await d.flush();
    slab.release();
  }

  describe('CRC32C', () => {
    it('gives the check value of the Castagnoli polynomial and chains across ranges', () => {
      assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
      const a = Buffer.from('hello, '), b = Buffer.from('world');
      assert.equal(crc32c(b, crc32c(a)), crc32c(Buffer.concat([a, b])));
    });

    it('agrees with a table-driven reference on random data', () => {
      const table = new Uint32Array(256).map((_, n) => {
        let c = n;
        for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
        return c >>> 0;
      });
      const reference = (data: Uint8Array): number => {
        let c = 0xffffffff;
        for (const byte of data) c = table[(c ^ byte) & 0xff] ^ (c >>> 8);
        return (c ^ 0xffffffff) >>> 0;
      };
      fc.assert(fc.property(fc.uint8Array({ maxLength: 5000 }), (data) => crc32c(data) === reference(data)));
    });
  });

  describe('superblock encoding', () => {
    const superblockArb = fc
      .record({
        sequence: fc.nat({ max: 2 ** 40 }),
        volumeId: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        blockShift: fc.integer({ min: 9, max: 16 }),
        logBlocks: fc.integer({ min: 8, max: 1 << 20 }),
        blockCount: fc.integer({ min: 1, max: 1 << 30 }),
        checkpointDelta: fc.nat({ max: 2 ** 50 }),
        replayPosition: fc.nat({ max: 2 ** 50 }),
      })
      .map(({ blockShift, ...f }): Superblock => {
        const blockSize = 2 ** blockShift;
        return {
          version: FORMAT_VERSION,
          sectorSize: 512,
          blockSize,
          logStart: 2,
          dataStart: 2 + f.logBlocks,
          deviceSize: (2 + f.logBlocks + f.blockCount) * blockSize,
          summaryBlocks: 0,
          mapBlocks: 0,
          physicalBlocks: 0,
          ...f,
        };
      });

    it('round-trips every field (property)', () => {
      fc.assert(
        fc.property(superblockArb, (sb) => {
          const bytes = new Uint8Array(512);
          encodeSuperblock(sb, bytes);
          assert.deepEqual(decodeSuperblock(bytes, (sb.sequence % 2) as 0 | 1), sb);
        }),
      );
    });

    it('rejects any single flipped bit in the header, naming the checksum (property)', () => {
      fc.assert(
        fc.property(superblockArb, fc.integer({ min: 8 * 8, max: SUPERBLOCK_BYTES * 8 - 1 }), (sb, bit) => {
          const bytes = new Uint8Array(512);
          encodeSuperblock(sb, bytes);
          bytes[bit >> 3] ^= 1 << (bit & 7);
          assert.throws(() => decodeSuperblock(bytes, (sb.sequence % 2) as 0 | 1), { code: 'ERR_SUPERBLOCK_CORRUPT' });
        }),
      );
    });

    it('refuses a format version it does not know, by number', () => {
      const sb: Superblock = {
        version: 3, sequence: 2, volumeId: 1n, blockSize: 512, sectorSize: 512, deviceSize: SIZE,
        logStart: 2, logBlocks: 8, dataStart: 10, blockCount: 100, checkpointDelta: 0, replayPosition: 0,
        summaryBlocks: 0, mapBlocks: 0, physicalBlocks: 0,
      };
      const bytes = new Uint8Array(512);
      encodeSuperblock(sb, bytes);
      assert.throws(() => decodeSuperblock(bytes, 0), { code: 'ERR_SUPERBLOCK_CORRUPT', message: /format version 3; this blockfork reads versions 1 and 2/ });
    });
  });

  describe('format', () => {
    for (const blockSize of [512, 4096]) {
      it(`writes two superblock copies that read back as the volume (block size ${blockSize})`, async () => {
        const d = await device();
        const formatted = await formatVolume(d, { blockSize, logBlocks: 32 });
        const { superblock, copies } = await readSuperblock(d);
        assert.deepEqual(superblock, formatted);
        assert.equal(superblock.blockSize, blockSize);
        assert.equal(superblock.logStart, 2);
        assert.equal(superblock.logBlocks, 32);
        assert.equal(superblock.dataStart, 34);
        assert.equal(superblock.blockCount, SIZE / blockSize - 34, 'blockCount excludes the superblocks and the log');
        assert.equal(superblock.checkpointDelta, 0);
        assert.equal(superblock.replayPosition, 0);
        assert.equal(copies.length, 2);
        assert.equal(copies[0].superblock?.sequence, 2);
        assert.equal(copies[1].superblock?.sequence, 1);
        assert.equal(copies[1].offset, blockSize);
      });
    }

    it('picks a default log of an eighth of the device, and refuses a device too small', () => {
      assert.deepEqual(planLayout(SIZE, 4096), {
        version: 1, logStart: 2, logBlocks: 32, dataStart: 34, blockCount: 222, summaryBlocks: 0, mapBlocks: 0, physicalBlocks: 0,
      });
      assert.throws(() => planLayout(5120, 512), /has 10 blocks of 512: too few for 2 superblocks, a log of 8 blocks and any data/);
      assert.throws(() => planLayout(SIZE, 512, 3), { name: 'RangeError', message: /logBlocks must be an integer of at least 8/ });
    });

    it('refuses bad arguments before any I/O', async () => {
      const d = await device();
      await assert.rejects(formatVolume(d, { blockSize: 1000 }), { name: 'RangeError', message: /blockSize must be a power of two/ });
      await assert.rejects(formatVolume(d, { blockSize: 512, overwrite: 'yes' as unknown as boolean }), { name: 'TypeError' });
      await assert.rejects(readSuperblock(d), { code: 'ERR_NOT_A_VOLUME' });
    });

    it('never formats an existing volume silently: ERR_VOLUME_EXISTS unless overwrite', async () => {
      const d = await device();
      const first = await formatVolume(d, { blockSize: 512 });
      await assert.rejects(formatVolume(d, { blockSize: 4096 }), {
        code: 'ERR_VOLUME_EXISTS',
        message: /already holds a blockfork volume \(block size 512, \d+ data blocks\); pass overwrite: true/,
      });
      const second = await formatVolume(d, { blockSize: 4096, overwrite: true });
      assert.notEqual(second.volumeId, first.volumeId);
      assert.equal((await readSuperblock(d)).superblock.blockSize, 4096);
    });
  });

  describe('two copies', () => {
    it('a corrupt copy 0 falls back to copy 1, and says why', async () => {
      const d = await device();
      await formatVolume(d, { blockSize: 512 });
      await patch(d, 0, 512, (b) => (b[41] ^= 0x10));
      const { superblock, copies } = await readSuperblock(d);
      assert.equal(superblock.sequence, 1);
      assert.match(copies[0].error!, /checksum mismatch .*torn or damaged/);
    });

    it('a corrupt copy 1 leaves copy 0 in force', async () => {
      const d = await device();
      await formatVolume(d, { blockSize: 512 });
      await patch(d, 512, 512, (b) => (b[100] ^= 1));
      const { superblock, copies } = await readSuperblock(d);
      assert.equal(superblock.sequence, 2);
      assert.match(copies[1].error!, /checksum mismatch/);
    });

    it('copy 0 overwritten by garbage: copy 1 is found by probing block sizes', async () => {
      const d = await device();
      await formatVolume(d, { blockSize: 4096 });
      await patch(d, 0, 4096, (b) => b.fill(0xa5));
      const { superblock, copies } = await readSuperblock(d);
      assert.equal(superblock.blockSize, 4096);
      assert.equal(copies[1].offset, 4096);
      assert.match(copies[0].error!, /no superblock magic/);
    });

    it('a torn checkpoint write loses only that checkpoint: the previous one is in force', async () => {
      const d = await device();
      await formatVolume(d, { blockSize: 512, logBlocks: 16 });
      const { journal } = await JournalWriter.open(d);
      const slab = allocBlocks(512, 1);
      await journal.appendDelta(1, [{ home: 0, image: slab.page(0).fill(1) }]);
      await journal.writeHome([{ home: 0, image: slab.page(0) }]);
      await journal.checkpoint(1);
      await journal.close();
      const after = await readSuperblock(d);
      const { sequence } = after.superblock;
      assert.equal(after.superblock.checkpointDelta, 1);
      // Tear it: keep the first sector of the copy it went to half-new, half-old.
      await patch(d, (sequence % 2) * 512, 512, (b) => b.fill(0, 64));
      const torn = await readSuperblock(d);
      assert.equal(torn.superblock.sequence, sequence - 1);
      assert.equal(torn.superblock.checkpointDelta, 0);
      slab.release();
    });

    it('both copies damaged: the open fails, naming each copy and what is wrong', async () => {
      const d = await device();
      await formatVolume(d, { blockSize: 512 });
      await patch(d, 0, 1024, (b) => {
        b[20] ^= 4;
        b[512 + 90] ^= 8;
      });
      await assert.rejects(readSuperblock(d), {
        code: 'ERR_SUPERBLOCK_CORRUPT',
        message: /no valid superblock \(copy 0 \(byte 0\): checksum mismatch.*; copy 1 \(byte 512\): checksum mismatch/,
      });
    });

    it('garbage where the superblocks should be: not a volume', async () => {
      const d = await device();
      await patch(d, 0, 128 * 1024, (b) => {
        for (let i = 0; i < b.length; i++) b[i] = (i * 7919) & 0xff;
      });
      await assert.rejects(readSuperblock(d), {
        code: 'ERR_NOT_A_VOLUME',
        message: /holds no blockfork volume \(copy 0 \(byte 0\): no superblock magic.*copy 1: no superblock magic "blkfork" at any block-1 offset/,
      });
    });

    it('a volume on a device shorter than it was formatted for is refused by size', async () => {
      const d = await device('short.img');
      await formatVolume(d, { blockSize: 512 });
      await d.close();
      await truncate(join(dir, 'short.img'), SIZE / 2);
      const reopened = await Device.open(join(dir, 'short.img'));
      open.push(reopened);
      await assert.rejects(readSuperblock(reopened), { code: 'ERR_GEOMETRY', message: /needs 1048576 bytes but the device has 524288 \(truncated\?\)/ });
    });
  });
});
