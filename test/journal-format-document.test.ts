import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { open } from '../src/index';
import { makeScratchDir, type ScratchDir } from './support/scratch-dir';
import { crc32c, u64 } from './support/format-document';

/**
 * docs/FORMAT.md pinned. A volume is written by the code; every field of
 * the superblock, the descriptor and the commit record is then read at the
 * offset, size and byte order that the document's tables give. Offsets,
 * magics and the CRC are written out here from the document by hand, and no
 * constant or decoder of src/journal is used: a code that agrees with itself
 * but not with the document fails.
 */

// FORMAT.md, "Layout" and the tables.
const SUPERBLOCK_MAGIC = [0x62, 0x6c, 0x6b, 0x66, 0x6f, 0x72, 0x6b, 0x00];
const DESCRIPTOR_MAGIC = [0x62, 0x66, 0x64, 0x65, 0x6c, 0x74, 0x61, 0x00];
const COMMIT_MAGIC = [0x62, 0x66, 0x63, 0x6f, 0x6d, 0x6d, 0x69, 0x74];
const LOG_START = 2;


const BLOCK = 512;
const LOG_BLOCKS = 256;
const DEVICE_BYTES = 1 << 20;


/** Each block is written once, so its contents name it. */
function pattern(block: number): Buffer {
  const out = Buffer.alloc(BLOCK);
  for (let i = 0; i < BLOCK; i++) out[i] = (block * 7 + i + (i >> 8)) & 0xff;
  return out;
}

describe('docs/FORMAT.md: the bytes a journaled volume holds, field by field', () => {
  let scratch: ScratchDir;
  before(() => {
    scratch = makeScratchDir('format-document');
  });
  after(() => scratch.remove());

  it('CRC32C as the document defines it gives its check value', () => {
    assert.equal(crc32c(Buffer.from('123456789')), 0xe3069283);
  });

  it('superblock copies, descriptors (one spanning two blocks), images, commit records and the data area are where and what the document says', async () => {
    const path = scratch.file('volume.img');
    // Delta sizes: a small one, one whose descriptor spans two blocks (48 + 12·40 > 512), and one block.
    const plan = [[3, 9, 10], Array.from({ length: 40 }, (_, i) => 100 + i), [7]];
    const vol = await open(path, { size: DEVICE_BYTES, blockSize: BLOCK, journal: true, logSize: LOG_BLOCKS * BLOCK });
    const committed: { delta: number; blocks: number[] }[] = [];
    for (const blocks of plan) {
      await vol.change(async (tx) => {
        // Written out of order: the descriptor must list them ascending.
        for (const b of [...blocks].reverse()) (await tx.write(b)).set(pattern(b));
      });
      committed.push({ delta: await vol.commit(), blocks: [...blocks].sort((a, b) => a - b) });
    }
    const blockCount = vol.blockCount;
    await vol.close();

    const disk = fs.readFileSync(path);
    const block = (i: number) => disk.subarray(i * BLOCK, (i + 1) * BLOCK);
    assert.equal(disk.length, DEVICE_BYTES);

    // Superblock copies: blocks 0 and 1.
    const copies = [block(0), block(1)].map((sb, copy) => {
      const at = `superblock copy ${copy}`;
      assert.deepEqual([...sb.subarray(0, 8)], SUPERBLOCK_MAGIC, `${at}: magic at 0..7`);
      assert.equal(sb.readUInt32LE(8), 1, `${at}: version (u32 at 8)`);
      assert.equal(sb.readUInt32LE(12), 128, `${at}: headerBytes (u32 at 12)`);
      const sequence = u64(sb, 16);
      assert.equal(sequence % 2, copy, `${at}: sequence (u64 at 16) has the copy's parity`);
      assert.equal(sb.readUInt32LE(32), BLOCK, `${at}: blockSize (u32 at 32)`);
      const sectorSize = sb.readUInt32LE(36);
      assert.ok(sectorSize >= 512 && sectorSize <= BLOCK && (sectorSize & (sectorSize - 1)) === 0, `${at}: sectorSize (u32 at 36) is a sector size, got ${sectorSize}`);
      assert.equal(u64(sb, 40), DEVICE_BYTES, `${at}: deviceSize (u64 at 40)`);
      assert.equal(u64(sb, 48), LOG_START, `${at}: logStart (u64 at 48)`);
      assert.equal(u64(sb, 56), LOG_BLOCKS, `${at}: logBlocks (u64 at 56)`);
      assert.equal(u64(sb, 64), LOG_START + LOG_BLOCKS, `${at}: dataStart (u64 at 64)`);
      assert.equal(u64(sb, 72), DEVICE_BYTES / BLOCK - 2 - LOG_BLOCKS, `${at}: blockCount (u64 at 72)`);
      assert.equal(u64(sb, 72), blockCount, `${at}: blockCount is the volume's`);
      assert.equal(sb.readUInt32LE(96), 0, `${at}: flags (u32 at 96)`);
      assert.ok(sb.subarray(100, 124).every((b) => b === 0), `${at}: reserved bytes 100..123 are zero`);
      assert.equal(sb.readUInt32LE(124), crc32c(sb.subarray(0, 124)), `${at}: crc32c (u32 at 124) of bytes 0..123`);
      assert.ok(sb.subarray(128).every((b) => b === 0), `${at}: the rest of the block is zero`);
      return { sequence, volumeId: sb.readBigUInt64LE(24), checkpointDelta: u64(sb, 80), replayPosition: u64(sb, 88) };
    });
    assert.equal(copies[0].volumeId, copies[1].volumeId, 'volumeId (u64 at 24): one per volume');
    assert.notEqual(copies[0].volumeId, 0n, 'volumeId is random, not zero');
    const inForce = copies[0].sequence > copies[1].sequence ? copies[0] : copies[1];

    // The log ring: find each descriptor by its magic, then read the delta as the document lays it out.
    const ring = (p: number) => block(LOG_START + (p % LOG_BLOCKS));
    const found = new Map<number, { position: number; total: number }>();
    for (let r = 0; r < LOG_BLOCKS; r++) {
      const first = block(LOG_START + r);
      if (!DESCRIPTOR_MAGIC.every((b, i) => first[i] === b)) continue;
      const at = `descriptor in ring block ${r}`;
      assert.equal(first.readBigUInt64LE(8), inForce.volumeId, `${at}: volumeId (u64 at 8)`);
      const position = u64(first, 16);
      assert.equal(position % LOG_BLOCKS, r, `${at}: position (u64 at 16) is the position it is stored at`);
      const delta = u64(first, 24);
      const expected = committed.find((c) => c.delta === delta);
      assert.ok(expected, `${at}: delta (u64 at 24) ${delta} is one that was committed (${committed.map((c) => c.delta)})`);
      const n = first.readUInt32LE(32);
      assert.equal(n, expected.blocks.length, `${at}: count (u32 at 32)`);
      const d = Math.ceil((48 + 12 * n) / BLOCK);
      assert.equal(first.readUInt32LE(36), d, `${at}: blocks (u32 at 36) = ceil((48 + 12n) / blockSize)`);
      assert.equal(first.readUInt32LE(40), 0, `${at}: flags (u32 at 40)`);
      const descriptor = Buffer.concat(Array.from({ length: d }, (_, i) => ring(position + i)));
      const entries = descriptor.subarray(48, 48 + 12 * n);
      const descriptorCrc = first.readUInt32LE(44);
      assert.equal(descriptorCrc, crc32c(descriptor.subarray(0, 44), entries), `${at}: crc32c (u32 at 44) of bytes 0..43 continued over the entries`);
      assert.ok(descriptor.subarray(48 + 12 * n).every((b) => b === 0), `${at}: the unused tail is zero`);
      expected.blocks.forEach((home, i) => {
        assert.equal(u64(descriptor, 48 + 12 * i), home, `${at}: home[${i}] (u64 at ${48 + 12 * i}), ascending`);
        const image = ring(position + d + i);
        assert.deepEqual(image, pattern(home), `${at}: image ${i} at position p+d+${i} holds block ${home} as it was written`);
        assert.equal(descriptor.readUInt32LE(56 + 12 * i), crc32c(image), `${at}: imageCrc[${i}] (u32 at ${56 + 12 * i})`);
      });

      const commit = ring(position + d + n);
      const cat = `commit record of delta ${delta}`;
      assert.deepEqual([...commit.subarray(0, 8)], COMMIT_MAGIC, `${cat}: magic at 0..7, at position p+d+n`);
      assert.equal(commit.readBigUInt64LE(8), inForce.volumeId, `${cat}: volumeId (u64 at 8)`);
      assert.equal(u64(commit, 16), position, `${cat}: position (u64 at 16)`);
      assert.equal(u64(commit, 24), delta, `${cat}: delta (u64 at 24)`);
      assert.equal(commit.readUInt32LE(32), n, `${cat}: count (u32 at 32)`);
      assert.equal(commit.readUInt32LE(36), descriptorCrc, `${cat}: descriptorCrc (u32 at 36)`);
      assert.equal(commit.readUInt32LE(40), d + n + 1, `${cat}: totalBlocks (u32 at 40)`);
      assert.equal(commit.readUInt32LE(44), crc32c(commit.subarray(0, 44)), `${cat}: crc32c (u32 at 44) of bytes 0..43`);
      assert.ok(commit.subarray(48).every((b) => b === 0), `${cat}: the unused tail is zero`);
      found.set(delta, { position, total: d + n + 1 });
    }
    assert.deepEqual([...found.keys()].sort((a, b) => a - b), committed.map((c) => c.delta), 'every committed delta is in the log');
    for (let i = 1; i < committed.length; i++) {
      const prev = found.get(committed[i - 1].delta)!;
      assert.equal(found.get(committed[i].delta)!.position, prev.position + prev.total, 'the next delta starts at p + d + n + 1');
    }

    // After close every delta is home: the checkpoint in force names the last, and replay would start after it.
    const last = found.get(committed[committed.length - 1].delta)!;
    assert.equal(inForce.checkpointDelta, committed[committed.length - 1].delta, 'checkpointDelta (u64 at 80) is the last delta at home');
    assert.equal(inForce.replayPosition, last.position + last.total, 'replayPosition (u64 at 88) is the position after its commit record');

    // The data area: volume block i is device block 2 + L + i.
    for (const { blocks } of committed) {
      for (const b of blocks) assert.deepEqual(block(LOG_START + LOG_BLOCKS + b), pattern(b), `volume block ${b} at device block 2 + L + ${b}`);
    }
  });
});
