import { strict as assert } from 'node:assert';
import { crc32c } from '../src/journal/crc32c';
import { checkCommit, decodeDescriptor, decodeDescriptorHeader, DESCRIPTOR_MAGIC, descriptorBlocks, encodeCommit, encodeDescriptor, logBlocksFor, MAX_REDIRECTED, maxDeltaBlocks } from '../src/journal/log-record';
import { decodeSuperblock, encodeSuperblock, type Superblock } from '../src/journal/superblock';
import { planLayout } from '../src/journal/volume-format';

/**
 * Each check that keeps a wrong superblock or record out, one at a time:
 * a copy whose checksum is right but one field breaks the layout rules of
 * docs/FORMAT.md is refused, saying which; a record that is well formed but
 * not the one replay expects is not taken. (Found missing by the mutation
 * run: these checks could be deleted without a test failing.)
 */

const B = 4096;
const MiB = 1 << 20;
const GOOD: Superblock = {
  version: 1,
  sequence: 2,
  volumeId: 0x1234n,
  blockSize: B,
  sectorSize: 512,
  deviceSize: MiB,
  logStart: 2,
  logBlocks: 16,
  dataStart: 18,
  blockCount: MiB / B - 18,
  checkpointDelta: 0,
  replayPosition: 0,
  summaryBlocks: 0,
  mapBlocks: 0,
  physicalBlocks: 0,
};

function encoded(sb: Superblock, patch?: (bytes: Buffer) => void): Buffer {
  const bytes = Buffer.alloc(B);
  encodeSuperblock(sb, bytes);
  if (patch) {
    patch(bytes);
    bytes.writeUInt32LE(crc32c(bytes.subarray(0, 124)), 124);
  }
  return bytes;
}

describe('journal: the checks that keep a wrong superblock or record out', () => {
  describe('superblock layout (FORMAT.md), with a valid checksum', () => {
    it('accepts the layout at each limit', () => {
      assert.equal(decodeSuperblock(encoded(GOOD), 0).blockCount, GOOD.blockCount);
      assert.equal(decodeSuperblock(encoded({ ...GOOD, logBlocks: 3, dataStart: 5, blockCount: MiB / B - 5 }), 0).logBlocks, 3, 'a log of 3 blocks holds a delta of one block');
      assert.equal(decodeSuperblock(encoded({ ...GOOD, blockCount: 1 }), 0).blockCount, 1);
      for (const blockSize of [512, 65536]) {
        const size = 4 * MiB;
        assert.equal(decodeSuperblock(encoded({ ...GOOD, blockSize, deviceSize: size, blockCount: size / blockSize - 18 }), 0).blockSize, blockSize);
      }
    });

    const refused: [string, Partial<Superblock> | ((b: Buffer) => void), RegExp][] = [
      ['a block size not a power of two', { blockSize: 3000 }, /block size 3000 is not a power of two from 512 to 65536/],
      ['a block size below 512', { blockSize: 256 }, /block size 256 is not a power of two/],
      ['a block size above 64 KiB', { blockSize: 131072 }, /block size 131072 is not a power of two/],
      ['a log that does not start at block 2', { logStart: 3, dataStart: 19 }, /log starts at block 3, expected 2/],
      ['a log of 2 blocks', { logBlocks: 2, dataStart: 4 }, /log of 2 blocks cannot hold a delta/],
      ['a data area not right after the log', { dataStart: 19 }, /data area starts at block 19/],
      ['an empty data area', { blockCount: 0 }, /data area is empty/],
      ['a data area past the device', { blockCount: MiB / B - 17 }, /data area ends at byte 1052672, past the device/],
      ['unknown flags', (b) => b.writeUInt32LE(1, 96), /unknown flags 0x00000001/],
      ['a header size other than 128', (b) => b.writeUInt32LE(64, 12), /header size 64, expected 128/],
      ['a u64 above 2^53', (b) => b.writeBigUInt64LE(2n ** 60n, 40), /deviceSize \d+ exceeds 2\^53/],
    ];
    for (const [what, change, message] of refused) {
      it(`refuses ${what}`, () => {
        const bytes = typeof change === 'function' ? encoded(GOOD, change) : encoded({ ...GOOD, ...change });
        assert.throws(() => decodeSuperblock(bytes, 0), { code: 'ERR_SUPERBLOCK_CORRUPT', message });
      });
    }

    describe('version 2: the map, its summary and the physical area', () => {
      const layout = planLayout(MiB, B, 16, 2, 8);
      const GOOD2: Superblock = { ...GOOD, ...layout };
      it('accepts the layout format makes, and a physical area of exactly the volume\'s blocks', () => {
        assert.ok(GOOD2.summaryBlocks === 1 && GOOD2.mapBlocks === 1 && GOOD2.physicalBlocks === GOOD2.blockCount + 8);
        assert.deepEqual(decodeSuperblock(encoded(GOOD2), 0), GOOD2);
        assert.equal(decodeSuperblock(encoded({ ...GOOD2, physicalBlocks: GOOD2.blockCount }), 0).physicalBlocks, GOOD2.blockCount);
      });
      const refused2: [string, Partial<Superblock>, RegExp][] = [
        ['a map too small for its volume', { mapBlocks: 0 }, new RegExp(`^block map of 0 blocks, but ${GOOD2.blockCount} volume blocks need 1`)],
        ['a map too large for its volume', { mapBlocks: 2 }, /block map of 2 blocks, but \d+ volume blocks need 1/],
        ['a summary of the wrong size', { summaryBlocks: 2 }, /map summary of 2 blocks, but 1 map blocks need 1/],
        ['a physical area smaller than the volume', { physicalBlocks: GOOD2.blockCount - 1 }, new RegExp(`physical area of ${GOOD2.blockCount - 1} blocks is smaller than the ${GOOD2.blockCount} volume blocks`)],
        ['a physical area past what a map entry names', { physicalBlocks: 0xffff_ffff }, /physical area of 4294967295 blocks exceeds the 4294967294 a map entry can name/],
        ['a physical area of the most a map entry names, past the device', { physicalBlocks: 0xffff_fffe }, /data area ends at byte \d+, past the device size 1048576/],
        ['a physical area past the device', { physicalBlocks: GOOD2.physicalBlocks + 1 }, /data area ends at byte 1052672, past the device size 1048576/],
      ];
      for (const [what, change, message] of refused2) {
        it(`refuses ${what}`, () => {
          assert.throws(() => decodeSuperblock(encoded({ ...GOOD2, ...change }), 0), { code: 'ERR_SUPERBLOCK_CORRUPT', message });
        });
      }
    });

    it('refuses a sequence found in the other copy (a copy is sequence mod 2)', () => {
      assert.throws(() => decodeSuperblock(encoded({ ...GOOD, sequence: 3 }), 0), { message: /sequence 3 belongs in copy 1, found in copy 0/ });
      assert.equal(decodeSuperblock(encoded({ ...GOOD, sequence: 3 }), 1).sequence, 3);
    });

    it('refuses a target too small to hold a superblock, before writing', () => {
      assert.throws(() => encodeSuperblock(GOOD, Buffer.alloc(64)), RangeError);
      assert.throws(() => decodeSuperblock(Buffer.alloc(64), 0), { message: /only 64 bytes, a superblock has 128/ });
    });
  });

  describe('descriptor and commit record', () => {
    it('the most images a log of N blocks holds: descriptor, images and commit record fill it, one more would not fit', () => {
      for (const [logBlocks, blockSize, most] of [[64, 512, 61], [16, 4096, 14], [3, 4096, 1], [2, 4096, 0], [1, 4096, 0], [0, 4096, 0]] as const) {
        assert.equal(maxDeltaBlocks(logBlocks, blockSize), most, `${logBlocks} blocks of ${blockSize}`);
        if (most > 0) assert.ok(logBlocksFor(most, blockSize) <= logBlocks && logBlocksFor(most + 1, blockSize) > logBlocks);
      }
    });

    it('a version 2 header may list up to 2^24 redirected blocks, not one more', () => {
      function header(count: number, redirected: number): Buffer {
        const bytes = Buffer.alloc(B);
        DESCRIPTOR_MAGIC.copy(bytes, 0);
        bytes.writeBigUInt64LE(0x77n, 8);
        bytes.writeBigUInt64LE(40n, 16);
        bytes.writeBigUInt64LE(5n, 24);
        bytes.writeUInt32LE(count, 32);
        bytes.writeUInt32LE(descriptorBlocks(count, B, redirected), 36);
        bytes.writeUInt32LE(redirected, 40);
        return bytes;
      }
      const v2 = { volumeId: 0x77n, position: 40, after: 4, redirects: true };
      const most = decodeDescriptorHeader(header(2, MAX_REDIRECTED), B, 100, v2);
      assert.ok(most.ok && most.value.redirected === MAX_REDIRECTED);
      const over = decodeDescriptorHeader(header(2, MAX_REDIRECTED + 1), B, 100, v2);
      assert.deepEqual(over, { ok: false, kind: 'torn', reason: `descriptor at log position 40 is damaged: 2 images and ${MAX_REDIRECTED + 1} redirected blocks in ${descriptorBlocks(2, B, MAX_REDIRECTED + 1)} blocks cannot be` });
      // Version 1 reads that field as flags: not a count of redirected blocks, whatever it holds.
      const v1 = decodeDescriptorHeader(header(2, 400), B, 100, { ...v2, redirects: false });
      assert.deepEqual(v1, { ok: false, kind: 'torn', reason: `descriptor at log position 40 is damaged: 2 images in ${descriptorBlocks(2, B, 400)} blocks cannot be` });
    });

    const expected = { volumeId: 0x77n, position: 40, after: 4 };
    const images = [Buffer.alloc(B, 1), Buffer.alloc(B, 2)];
    function descriptorBytes(delta = 5, patch?: (b: Buffer) => void): Buffer {
      const bytes = Buffer.alloc(B);
      encodeDescriptor({ volumeId: expected.volumeId, position: expected.position, delta }, [3, 9], images.map((i) => crc32c(i)), B, bytes);
      if (patch) {
        patch(bytes);
        bytes.writeUInt32LE(crc32c(bytes.subarray(48, 48 + 24), crc32c(bytes.subarray(0, 44))), 44);
      }
      return bytes;
    }
    function decoded(bytes: Buffer, maxCount = 100, after = expected.after) {
      const header = decodeDescriptorHeader(bytes, B, maxCount, { ...expected, after });
      if (!header.ok) return header;
      return decodeDescriptor(bytes, header.value, { ...expected, after });
    }

    it('takes the descriptor replay expects, for a delta just after the last', () => {
      const d = decoded(descriptorBytes(5));
      assert.ok(d.ok, d.ok ? '' : d.reason);
      assert.deepEqual(d.value.homes, [3, 9]);
    });

    it('refuses a descriptor of another format, of too many images, with unknown flags, or for a delta not after the last', () => {
      const foreign = decodeDescriptorHeader(descriptorBytes(), B, 100, { ...expected, volumeId: 0x78n });
      assert.deepEqual([foreign.ok, !foreign.ok && foreign.kind], [false, 'end']);
      assert.match(!foreign.ok ? foreign.reason : '', /another format of this device/);
      const tooMany = decoded(descriptorBytes(), 1);
      assert.match(!tooMany.ok ? `${tooMany.kind}: ${tooMany.reason}` : 'taken', /^torn: .*damaged: 2 images in 1 blocks/);
      const flags = decoded(descriptorBytes(5, (b) => b.writeUInt32LE(1, 40)));
      assert.match(!flags.ok ? `${flags.kind}: ${flags.reason}` : 'taken', /^torn: .*unknown flags/);
      const old = decoded(descriptorBytes(4));
      assert.match(!old.ok ? `${old.kind}: ${old.reason}` : 'taken', /^torn: .*for delta 4, not after delta 4/);
    });

    it('refuses a commit record that differs from its descriptor in any field', () => {
      const d = decoded(descriptorBytes(5));
      assert.ok(d.ok);
      const descriptor = d.value;
      const record = { volumeId: descriptor.volumeId, position: descriptor.position, delta: 5, count: 2, descriptorCrc: descriptor.crc, totalBlocks: 1 + 2 + 1 };
      const bytes = Buffer.alloc(B);
      encodeCommit(record, bytes);
      assert.ok(checkCommit(bytes, descriptor, B).ok, 'the matching record is taken');
      const fields: [string, Partial<typeof record>][] = [
        ['volumeId', { volumeId: 0x78n }],
        ['position', { position: 41 }],
        ['delta', { delta: 6 }],
        ['count', { count: 3 }],
        ['descriptorCrc', { descriptorCrc: (descriptor.crc ^ 1) >>> 0 }],
        ['totalBlocks', { totalBlocks: 5 }],
      ];
      for (const [field, change] of fields) {
        encodeCommit({ ...record, ...change }, bytes);
        const result = checkCommit(bytes, descriptor, B);
        assert.match(!result.ok ? `${result.kind}: ${result.reason}` : 'taken', /^torn: .*belongs to another delta/, field);
      }
    });
  });
});
