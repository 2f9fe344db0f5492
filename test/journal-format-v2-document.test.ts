import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import { open } from '../src/index';
import { makeScratchDir, type ScratchDir } from './support/scratch-dir';
import { crc32c, u64 } from './support/format-document';

/**
 * docs/FORMAT.md pinned, version 2. A volume of version 2 is written by the
 * code (one delta: a long run, which is redirected, and a scattered block,
 * which is logged); every field of the superblock's version 2 part, the
 * layout, the descriptor's redirected entries, the map block and the
 * summary block is then read at the offset, size and byte order that the
 * document's tables give. As in journal-format-document.test.ts, offsets,
 * magics, the layout's arithmetic and the CRC are written out here from the
 * document by hand; no constant or decoder of src/journal is used.
 */

// FORMAT.md, "Layout" and the tables.
const SUPERBLOCK_MAGIC = [0x62, 0x6c, 0x6b, 0x66, 0x6f, 0x72, 0x6b, 0x00];
const DESCRIPTOR_MAGIC = [0x62, 0x66, 0x64, 0x65, 0x6c, 0x74, 0x61, 0x00];
const COMMIT_MAGIC = [0x62, 0x66, 0x63, 0x6f, 0x6d, 0x6d, 0x69, 0x74];
/** "bfmp" and "bfsm": the bytes, and the same four bytes read as a little-endian u32. */
const MAP_MAGIC = [0x62, 0x66, 0x6d, 0x70];
const SUMMARY_MAGIC = [0x62, 0x66, 0x73, 0x6d];
const MAP_MAGIC_U32 = 0x706d6662;
const SUMMARY_MAGIC_U32 = 0x6d736662;
const LOG_START = 2;
const MAP_HEADER = 16;


const BLOCK = 512;
const LOG_BLOCKS = 256;
const DEVICE_BYTES = 1 << 20;
/** Runs of at least 4 blocks are redirected (redirectMin), shorter ones logged. */
const REDIRECT_BLOCKS = 4;
/** The delta: a run of 8 consecutive blocks and one block on its own. */
const RUN = Array.from({ length: 8 }, (_, i) => 300 + i);
const SCATTERED = 5;


function pattern(block: number): Buffer {
  const out = Buffer.alloc(BLOCK);
  for (let i = 0; i < BLOCK; i++) out[i] = (block * 13 + i + (i >> 8) + 1) & 0xff;
  return out;
}

/** FORMAT.md, "Version 2, layout": the fixed point of planLayout, by hand. */
function layout(deviceBytes: number, logBlocks: number, reserve: number): { blockCount: number; S: number; M: number; P: number } {
  const home = Math.floor(deviceBytes / BLOCK) - 2 - logBlocks;
  const entries = (BLOCK - 16) / 4;
  const bits = (BLOCK - 16) * 8;
  let N = home - reserve;
  for (;;) {
    const M = Math.ceil(N / entries);
    const S = Math.ceil(M / bits);
    const fits = home - reserve - M - S;
    if (fits >= N) return { blockCount: N, S, M, P: N + reserve };
    N = fits;
  }
}

describe('docs/FORMAT.md, version 2: the bytes a redirect-on-write volume holds, field by field', () => {
  let scratch: ScratchDir;
  before(() => {
    scratch = makeScratchDir('format-v2-document');
  });
  after(() => scratch.remove());

  it('superblock v2 fields, layout, descriptor with redirected entries, map and summary blocks are where and what the document says', async () => {
    const path = scratch.file('volume.img');
    const vol = await open(path, {
      size: DEVICE_BYTES,
      blockSize: BLOCK,
      journal: true,
      logSize: LOG_BLOCKS * BLOCK,
      formatVersion: 2,
      redirectMin: REDIRECT_BLOCKS * BLOCK,
    });
    await vol.change(async (tx) => {
      for (const b of [...RUN, SCATTERED].reverse()) (await tx.write(b)).set(pattern(b));
    });
    const delta = await vol.commit();
    const volumeBlocks = vol.blockCount;
    await vol.close();

    const disk = fs.readFileSync(path);
    const block = (i: number) => disk.subarray(i * BLOCK, (i + 1) * BLOCK);
    assert.equal(disk.length, DEVICE_BYTES);

    // The layout by the document's arithmetic: the default reserve is the log's size.
    const reserve = LOG_BLOCKS;
    const { blockCount, S, M, P } = layout(DEVICE_BYTES, LOG_BLOCKS, reserve);
    assert.equal(blockCount, volumeBlocks, "blockCount is the volume's");
    const dataStart = LOG_START + LOG_BLOCKS;
    assert.ok(dataStart + S + M + P <= DEVICE_BYTES / BLOCK, 'the home area fits the device');
    assert.equal(dataStart + S + M + P, DEVICE_BYTES / BLOCK, 'here the fixed point uses every block');

    // Superblock copies: version 2 and its fields at 100, 104 and 108.
    const copies = [block(0), block(1)].map((sb, copy) => {
      const at = `superblock copy ${copy}`;
      assert.deepEqual([...sb.subarray(0, 8)], SUPERBLOCK_MAGIC, `${at}: magic at 0..7`);
      assert.equal(sb.readUInt32LE(8), 2, `${at}: version (u32 at 8)`);
      assert.equal(sb.readUInt32LE(12), 128, `${at}: headerBytes (u32 at 12)`);
      assert.equal(u64(sb, 16) % 2, copy, `${at}: sequence has the copy's parity`);
      assert.equal(sb.readUInt32LE(32), BLOCK, `${at}: blockSize (u32 at 32)`);
      assert.equal(u64(sb, 40), DEVICE_BYTES, `${at}: deviceSize (u64 at 40)`);
      assert.equal(u64(sb, 48), LOG_START, `${at}: logStart (u64 at 48)`);
      assert.equal(u64(sb, 56), LOG_BLOCKS, `${at}: logBlocks (u64 at 56)`);
      assert.equal(u64(sb, 64), dataStart, `${at}: dataStart (u64 at 64): the home area`);
      assert.equal(u64(sb, 72), blockCount, `${at}: blockCount (u64 at 72): volume blocks`);
      assert.equal(sb.readUInt32LE(96), 0, `${at}: flags (u32 at 96)`);
      assert.equal(sb.readUInt32LE(100), S, `${at}: summaryBlocks (u32 at 100)`);
      assert.equal(sb.readUInt32LE(104), M, `${at}: mapBlocks (u32 at 104)`);
      assert.equal(u64(sb, 108), P, `${at}: physicalBlocks (u64 at 108) = blockCount + reserve`);
      assert.ok(sb.subarray(116, 124).every((b) => b === 0), `${at}: reserved bytes 116..123 are zero`);
      assert.equal(sb.readUInt32LE(124), crc32c(sb.subarray(0, 124)), `${at}: crc32c (u32 at 124) of bytes 0..123`);
      assert.ok(sb.subarray(128).every((b) => b === 0), `${at}: the rest of the block is zero`);
      return { sequence: u64(sb, 16), volumeId: sb.readBigUInt64LE(24), checkpointDelta: u64(sb, 80) };
    });
    assert.equal(copies[0].volumeId, copies[1].volumeId);
    const inForce = copies[0].sequence > copies[1].sequence ? copies[0] : copies[1];
    assert.equal(inForce.checkpointDelta, delta, 'after close the delta is checkpointed');
    const volumeId = inForce.volumeId;

    // Home-area block h is device block dataStart + h: summary 0 .. S−1, map S .. S+M−1, physical block p at S + M + p.
    const home = (h: number) => block(dataStart + h);
    const physicalStart = S + M;

    // The log: the one descriptor.
    const ring = (p: number) => block(LOG_START + (p % LOG_BLOCKS));
    const descriptors: number[] = [];
    for (let r = 0; r < LOG_BLOCKS; r++) if (DESCRIPTOR_MAGIC.every((b, i) => block(LOG_START + r)[i] === b)) descriptors.push(r);
    assert.equal(descriptors.length, 1, 'one delta was logged');
    const first = ring(descriptors[0]);
    const at = 'descriptor';
    assert.equal(first.readBigUInt64LE(8), volumeId, `${at}: volumeId (u64 at 8)`);
    const position = u64(first, 16);
    assert.equal(u64(first, 24), delta, `${at}: delta (u64 at 24)`);
    const n = first.readUInt32LE(32);
    const r = first.readUInt32LE(40);
    assert.equal(r, RUN.length, `${at}: redirected (u32 at 40) is the long run's length`);
    // Logged: the summary block, the map block, and the scattered block.
    assert.equal(n, 3, `${at}: count (u32 at 32): summary block, map block and the scattered block are logged images`);
    const d = Math.ceil((48 + 12 * (n + r)) / BLOCK);
    assert.equal(first.readUInt32LE(36), d, `${at}: blocks (u32 at 36) = ceil((48 + 12(n + r)) / blockSize)`);
    const descriptor = Buffer.concat(Array.from({ length: d }, (_, i) => ring(position + i)));
    const entries = descriptor.subarray(48, 48 + 12 * (n + r));
    const descriptorCrc = first.readUInt32LE(44);
    assert.equal(descriptorCrc, crc32c(descriptor.subarray(0, 44), entries), `${at}: crc32c (u32 at 44) of bytes 0..43 continued over the n + r entries`);
    assert.ok(descriptor.subarray(48 + 12 * (n + r)).every((b) => b === 0), `${at}: the unused tail is zero`);
    const homes = Array.from({ length: n + r }, (_, i) => u64(descriptor, 48 + 12 * i));
    const crcs = Array.from({ length: n + r }, (_, i) => descriptor.readUInt32LE(56 + 12 * i));

    // The n logged images first, ascending by home: summary block 0, the run's map block k, the scattered block at its identity place.
    const E = (BLOCK - 16) / 4;
    const bits = (BLOCK - 16) * 8;
    const k = Math.floor(RUN[0] / E);
    assert.deepEqual(homes.slice(0, n), [0, S + k, physicalStart + SCATTERED], `${at}: logged homes are the summary block, the map block and the scattered block's`);
    for (let i = 0; i < n; i++) {
      const image = ring(position + d + i);
      assert.equal(crcs[i], crc32c(image), `${at}: imageCrc[${i}] of the image at p+d+${i}`);
      assert.deepEqual(image, home(homes[i]), `${at}: image ${i} went home to home-area block ${homes[i]}`);
    }
    assert.deepEqual(ring(position + d + 2), pattern(SCATTERED), 'the scattered block is logged whole');

    // Then the r redirected blocks: homes in the physical area, ascending, each CRC the CRC of the bytes at that home.
    const redirectedHomes = homes.slice(n);
    for (let i = 0; i < r; i++) {
      const h = redirectedHomes[i];
      assert.ok(h >= physicalStart && h < physicalStart + P, `${at}: redirected home ${h} is in the physical area`);
      if (i > 0) assert.ok(h > redirectedHomes[i - 1], `${at}: redirected homes ascend`);
      assert.equal(crcs[n + i], crc32c(home(h)), `${at}: crc of redirected entry ${i} is the CRC of home-area block ${h}`);
      assert.deepEqual(home(h), pattern(RUN[i]), `${at}: home-area block ${h} holds volume block ${RUN[i]}`);
    }
    // Fresh space: the free part of the physical area starts after the volume's blocks, at physical blockCount.
    assert.deepEqual(redirectedHomes, RUN.map((_, i) => physicalStart + blockCount + i), 'the run landed contiguously in the reserve');

    // The commit record: totalBlocks = d + n + 1 (the redirected blocks are not in the log).
    const commit = ring(position + d + n);
    assert.deepEqual([...commit.subarray(0, 8)], COMMIT_MAGIC, 'commit: magic at p+d+n');
    assert.equal(u64(commit, 24), delta, 'commit: delta');
    assert.equal(commit.readUInt32LE(32), n, 'commit: count (u32 at 32) is n');
    assert.equal(commit.readUInt32LE(36), descriptorCrc, 'commit: descriptorCrc');
    assert.equal(commit.readUInt32LE(40), d + n + 1, 'commit: totalBlocks (u32 at 40) = d + n + 1');
    assert.equal(commit.readUInt32LE(44), crc32c(commit.subarray(0, 44)), 'commit: crc32c of bytes 0..43');

    // The map block of the run (k = floor(300 / E)) and its header.
    assert.equal(Math.floor(RUN[RUN.length - 1] / E), k, 'the run lies in one map block');
    assert.equal(Math.floor(SCATTERED / E), 0, 'the scattered block lies in map block 0');
    const mapBlock = home(S + k);
    assert.deepEqual([...mapBlock.subarray(0, 4)], MAP_MAGIC, 'map block: magic "bfmp" at 0..3');
    assert.equal(mapBlock.readUInt32LE(0), MAP_MAGIC_U32, 'map block: magic as u32 LE');
    assert.equal(mapBlock.readUInt32LE(4), crc32c(mapBlock.subarray(8)), 'map block: crc32c (u32 at 4) of bytes 8..end');
    assert.equal(mapBlock.readBigUInt64LE(8), volumeId, 'map block: volumeId (u64 at 8)');
    for (let e = 0; e < E; e++) {
      const volumeBlock = k * E + e;
      const value = mapBlock.readUInt32LE(MAP_HEADER + 4 * e);
      const i = RUN.indexOf(volumeBlock);
      if (i >= 0) {
        assert.equal(value, redirectedHomes[i] - physicalStart + 1, `map entry of volume block ${volumeBlock} is its physical block + 1`);
      } else {
        assert.equal(value, 0, `map entry of volume block ${volumeBlock} is 0: identity`);
      }
    }
    assert.deepEqual(home(homes[1]), mapBlock, 'the logged map image is the map block at home');
    // The scattered block is at its identity place: physical 5, home S + M + 5.
    assert.deepEqual(home(physicalStart + SCATTERED), pattern(SCATTERED), 'the scattered block at its identity place');
    // Map blocks never written hold no header (all identity).
    for (let m = 0; m < M; m++) {
      if (m !== k) assert.notDeepEqual([...home(S + m).subarray(0, 4)], MAP_MAGIC, `map block ${m} was never written`);
    }

    // The summary block: header, and bit b of byte 16 + i is map block 8i + b.
    const summary = home(0);
    assert.deepEqual([...summary.subarray(0, 4)], SUMMARY_MAGIC, 'summary block: magic "bfsm" at 0..3');
    assert.equal(summary.readUInt32LE(0), SUMMARY_MAGIC_U32, 'summary block: magic as u32 LE');
    assert.equal(summary.readUInt32LE(4), crc32c(summary.subarray(8)), 'summary block: crc32c (u32 at 4) of bytes 8..end');
    assert.equal(summary.readBigUInt64LE(8), volumeId, 'summary block: volumeId (u64 at 8)');
    for (let m = 0; m < Math.min(M, bits); m++) {
      const bit = (summary[MAP_HEADER + (m >> 3)] >> (m & 7)) & 1;
      assert.equal(bit, m === k ? 1 : 0, `summary bit of map block ${m}`);
    }
    assert.ok(summary.subarray(MAP_HEADER + Math.ceil(M / 8)).every((b) => b === 0), 'bits past the map are clear');

    // Every volume block of the delta reads back, through the map, as written.
    const again = await open(path, { journal: true, blockSize: BLOCK });
    try {
      for (const b of [...RUN, SCATTERED]) assert.deepEqual(Buffer.from(await again.read(b)), pattern(b), `volume block ${b} through the map`);
    } finally {
      await again.close();
    }
  });
});
