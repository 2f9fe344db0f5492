import assert from 'node:assert/strict';
import { closeSync, copyFileSync, openSync, readSync, writeSync } from 'node:fs';
import fc from 'fast-check';
import { Device } from '../src/io/device';
import { open, Volume } from '../src/index';
import { Allocator } from '../src/journal/allocator';
import { decodeSuperblock, type Superblock } from '../src/journal/superblock';
import { FaultDevice } from './support/fault-device';
import { ReadLog } from './support/read-log';
import { fileBytes, until, volumesPerTest } from './support/volumes';

const B = 4096;
/** Entries per map block at 4 KiB blocks (docs/FORMAT.md: (blockSize − 16) / 4). */
const E = (B - 16) / 4;
const KiB = 1024;
const MiB = 1 << 20;

/** A block whose bytes say which volume block and which write it is. */
function stamp(view: Buffer, block: number, version: number): void {
  view.writeUInt32LE(block, 0);
  view.writeUInt32LE(version, 4);
  view.writeUInt32LE(0xb10cf0c5, B - 4);
}

/** The superblock in force, read past the volume (which may be open and hold the device's lock). */
function superblockOf(path: string): Superblock {
  const fd = openSync(path, 'r');
  try {
    const copies: Superblock[] = [];
    for (const copy of [0, 1] as const) {
      const bytes = Buffer.alloc(B);
      readSync(fd, bytes, 0, B, copy * B);
      try {
        copies.push(decodeSuperblock(bytes, copy));
      } catch {
        // the other copy is in force
      }
    }
    return copies.reduce((a, b) => (a.sequence > b.sequence ? a : b));
  } finally {
    closeSync(fd);
  }
}

/** Where (physical block) each stamped volume block sits in the physical area of the file, read past the cache. */
function physicalPlaces(path: string, sb: Superblock, blocks: readonly number[], version: number): Map<number, number> {
  const wanted = new Set(blocks);
  const places = new Map<number, number>();
  const physicalStart = sb.dataStart + sb.summaryBlocks + sb.mapBlocks;
  const fd = openSync(path, 'r');
  try {
    const block = Buffer.alloc(B);
    for (let p = 0; p < sb.physicalBlocks; p++) {
      readSync(fd, block, 0, B, (physicalStart + p) * B);
      const volumeBlock = block.readUInt32LE(0);
      if (block.readUInt32LE(B - 4) === 0xb10cf0c5 && block.readUInt32LE(4) === version && wanted.has(volumeBlock)) places.set(volumeBlock, p);
    }
  } finally {
    closeSync(fd);
  }
  return places;
}

describe('journal format version 2: redirect-on-write', function () {
  this.timeout(120_000);
  const volumes = volumesPerTest();

  async function openV2(path: string, options: Record<string, unknown> = {}): Promise<Volume> {
    const vol = await open(path, { size: 16 * MiB, journal: true, formatVersion: 2, cacheSize: 2 * MiB, redirectMin: 16 * KiB, ...options });
    volumes.track(vol);
    return vol;
  }

  it('writes a long run once, contiguously, to new physical blocks, and logs the short runs and the map', async () => {
    const path = volumes.file();
    const vol = await openV2(path);
    const run = Array.from({ length: 64 }, (_, i) => 1000 + i);
    const scattered = [7, 300, 2222];
    await vol.change(async (tx) => {
      for (const b of [...run, ...scattered]) stamp(await tx.overwrite(b), b, 1);
    });
    await vol.commit();
    const redirect = vol.stats().journal?.redirect;
    assert.ok(redirect, 'a version 2 volume reports its redirects');
    assert.equal(redirect.redirectedBlocks, 64, 'the run of 64 blocks (256 KiB) was redirected');
    assert.equal(redirect.loggedBlocks, 3, 'the three lone blocks were logged whole');
    assert.ok(redirect.mapBlocksLogged >= 1, 'the map blocks that changed were logged');
    // The log held the descriptor, 3 images, the map and summary blocks, the commit record: not the run.
    const logUsed = vol.stats().journal?.logBlocksUsed ?? 0;
    assert.ok(logUsed < 3 + redirect.mapBlocksLogged + 4, `the run did not go through the log (log blocks used: ${logUsed})`);
    await vol.close();

    const sb = superblockOf(path);
    assert.equal(sb.version, 2);
    const places = physicalPlaces(path, sb, run, 1);
    assert.equal(places.size, run.length, 'every block of the run is in the physical area');
    const first = places.get(run[0]) as number;
    assert.ok(first >= sb.blockCount, `the run went to the reserve (physical ${first}), not over its old place`);
    run.forEach((b, i) => assert.equal(places.get(b), first + i, `block ${b} follows the run contiguously`));

    const again = await openV2(path);
    for (const b of [...run, ...scattered]) {
      const data = await again.read(b);
      assert.deepEqual([data.readUInt32LE(0), data.readUInt32LE(4)], [b, 1], `block ${b} reads back through the map`);
    }
    assert.equal((await again.read(1064)).readUInt32LE(4), 0, 'a block never written reads as zeros');
  });

  it('cuts a stream into deltas of a 1/maxDeltas share of the reserve (the larger of it and a third of the log): the next delta\'s copies fit beside the one in flight', async () => {
    const blocks = 2048;
    for (const maxDeltas of [2, 4]) {
      const path = volumes.file();
      const vol = await openV2(path, { size: 64 * MiB, logSize: 64 * B, reserveSize: 512 * B, cacheSize: 8 * MiB, maxDeltas });
      for (let first = 0; first < blocks; first += 16) {
        await vol.change(async (tx) => {
          for (let b = first; b < first + 16; b++) stamp(await tx.overwrite(b), b, maxDeltas);
        });
      }
      await vol.commit();
      const stats = vol.stats();
      // The high-water mark (cacheSize / 2 = 1024 pages) is above the share: the share cuts the stream.
      const share = 512 / maxDeltas;
      assert.equal(stats.journal?.redirect?.redirectedBlocks, blocks, 'the whole stream was redirected');
      assert.ok(stats.deltasCommitted >= blocks / (share + 16) && stats.deltasCommitted <= blocks / share + 1, `maxDeltas ${maxDeltas}: ${stats.deltasCommitted} deltas of about ${share} blocks`);
      for (let b = 0; b < blocks; b += 61) assert.deepEqual((await vol.read(b)).readUInt32LE(4), maxDeltas, `block ${b}`);
      await vol.close();
    }
  });

  it('reads the map blocks a plan needs and the cache does not hold in one request before the plan, not one after another', async () => {
    const path = volumes.file();
    // A redirected run in each of four map blocks' ranges: the four are written and flagged.
    const runs = [0, 1, 2, 3].map((k) => Array.from({ length: 16 }, (_, i) => k * E + i));
    const first = await openV2(path, { size: 64 * MiB });
    assert.ok(first.blockCount > 4 * E, `room for four map blocks' ranges (${first.blockCount} blocks)`);
    await first.change(async (tx) => {
      for (const run of runs) for (const b of run) stamp(await tx.overwrite(b), b, 1);
    });
    await first.close();
    // Reopened, the cache holds no map block (mount reads the map past the cache, to rebuild the free space).
    const log = new ReadLog(await Device.open(path, { direct: true }));
    const vol = await Volume.mount(log, { journal: true, redirectMin: 16 * KiB, readahead: 0 });
    volumes.track(vol);
    const from = log.reads.length;
    await vol.change(async (tx) => {
      for (const run of runs) for (const b of run) stamp(await tx.overwrite(b), b, 2);
    });
    await vol.commit();
    assert.equal(vol.stats().journal?.redirect?.redirectedBlocks, 64, 'all four runs were redirected');
    const sb = superblockOf(path);
    const mapStart = sb.dataStart + sb.summaryBlocks;
    const mapReads = log.reads.slice(from).filter((r) => r.offset / B >= mapStart && r.offset / B < mapStart + sb.mapBlocks);
    assert.deepEqual(
      mapReads.map((r) => [r.offset / B - mapStart, r.bytes / B]),
      [[0, 4]],
      'map blocks 0 to 3, read as one request of four blocks',
    );
    for (const run of runs) for (const b of run) assert.equal((await vol.read(b)).readUInt32LE(4), 2, `block ${b} reads back its second write`);
  });

  it('rewrites a run many times the reserve: each delta reuses the space the one before freed once it is durable, nothing fails, every block reads back', async () => {
    const path = volumes.file();
    // A reserve of 128 blocks; 40 deltas of a 64-block run allocate 2560.
    const vol = await openV2(path, { reserveSize: 128 * B });
    const run = Array.from({ length: 64 }, (_, i) => 500 + i);
    for (let version = 1; version <= 40; version++) {
      await vol.change(async (tx) => {
        for (const b of run) stamp(await tx.overwrite(b), b, version);
        stamp(await tx.overwrite(3000 + version), 3000 + version, version);
      });
      await vol.commit();
    }
    const stats = vol.stats().journal;
    assert.ok(stats?.redirect);
    // Every run was redirected: the reserve never ran short, though 20 times its size was allocated.
    assert.equal(stats.redirect.redirectedBlocks, 64 * 40);
    assert.equal(stats.redirect.loggedBlocks, 40, 'only the lone blocks were logged');
    await vol.close();

    const again = await openV2(path);
    for (const b of run) assert.deepEqual([(await again.read(b)).readUInt32LE(0), (await again.read(b)).readUInt32LE(4)], [b, 40]);
    for (let version = 1; version <= 40; version++) assert.equal((await again.read(3000 + version)).readUInt32LE(4), version);
    const redirect = again.stats().journal?.redirect;
    assert.ok(redirect);
    // Rebuilt at open from the map: the physical area holds exactly the volume's blocks and the reserve.
    assert.equal(redirect.freeBlocks, 128, 'every block freed is free again');
    assert.equal(redirect.pendingFreeBlocks, 0);
  });

  // Between the logged images and the run that moves their blocks: nothing, or small deltas that log elsewhere
  // (the pins of every delta since the checkpoint count, not the last one's alone).
  for (const between of [0, 4]) {
    const when = between === 0 ? 'in the delta before' : `${between} small deltas before`;
    it(`holds the free of a block a logged image still targets until a checkpoint covers it, the image logged ${when} (replay would write it over the block's next owner)`, async () => {
      const path = volumes.file();
      const vol = await openV2(path, { reserveSize: 128 * B });
      // Delta 1: a short run (3 blocks, under redirectMin's 4), logged whole: its images target blocks 500..502 at their identity places.
      await vol.change(async (tx) => {
        for (let b = 500; b < 503; b++) stamp(await tx.overwrite(b), b, 1);
      });
      await vol.commit();
      // Awaited one-block commits elsewhere, each pinning its own place.
      for (let k = 0; k < between; k++) {
        await vol.change(async (tx) => stamp(await tx.overwrite(2000 + k), 2000 + k, 1));
        await vol.commit();
      }
      // Then a long run over them: redirected, so 500..563 leave their places.
      await vol.change(async (tx) => {
        for (let b = 500; b < 564; b++) stamp(await tx.overwrite(b), b, 2);
      });
      await vol.commit();
      const redirect = vol.stats().journal?.redirect;
      assert.ok(redirect);
      assert.equal(redirect.redirectedBlocks, 64);
      assert.equal(vol.stats().journal?.checkpointedDelta, 0, 'no checkpoint yet');
      // 61 old places are free since the run's delta is durable; the 3 that delta 1's logged images target wait.
      assert.equal(redirect.pendingFreeBlocks, 3, 'the pinned blocks are held');
      assert.equal(redirect.freeBlocks, 128 - 64 + 61);
      await vol.close();
      const again = await openV2(path);
      assert.equal(again.stats().journal?.redirect?.freeBlocks, 128, 'the checkpoint at close released them');
      for (const b of [500, 502, 563]) assert.equal((await again.read(b)).readUInt32LE(4), 2);
      for (let k = 0; k < between; k++) assert.equal((await again.read(2000 + k)).readUInt32LE(4), 1);
    });
  }

  it('opens a version 1 volume as before, and refuses version 2 options that cannot apply', async () => {
    const path = volumes.file();
    const v1 = await open(path, { size: 8 * MiB, journal: true });
    volumes.track(v1);
    assert.equal(v1.stats().journal?.redirect, undefined, 'version 1 logs every block');
    await v1.change(async (tx) => stamp(await tx.overwrite(5), 5, 1));
    await v1.close();
    assert.equal((superblockOf(path)).version, 1);
    const reopened = await open(path, { formatVersion: 2 });
    volumes.track(reopened);
    assert.equal((await reopened.read(5)).readUInt32LE(4), 1, 'an existing volume keeps its version');
    await assert.rejects(open(volumes.file(), { size: 8 * MiB, journal: true, reserveSize: 100 }), { name: 'RangeError', message: /reserveSize must be/ });
    await assert.rejects(open(volumes.file(), { size: 8 * MiB, journal: true, reserveSize: 8 * B }), { name: 'RangeError', message: /formatVersion: 2/ });
    await assert.rejects(open(volumes.file(), { size: 8 * MiB, journal: true, formatVersion: 3 as 2 }), { name: 'RangeError', message: /formatVersion must be 1 or 2/ });
  });

  it('pages the map of a sparse 1 TiB volume through a small cache: scattered blocks write and read back within the memory bound', async function () {
    const path = volumes.file();
    const cacheSize = 4 * MiB;
    const vol = await openV2(path, { size: 2 ** 40, cacheSize, readahead: 0 });
    const sb = superblockOf(path);
    assert.ok(sb.mapBlocks > 200_000, `the map spans ${sb.mapBlocks} blocks (about a GiB): far more than the cache`);
    const rssBefore = process.memoryUsage().rss;
    const random = fc.sample(fc.integer({ min: 0, max: vol.blockCount - 64 }), { numRuns: 300, seed: 42 });
    const runs = random.slice(0, 20);
    const lone = random.slice(20);
    for (let round = 0; round < 5; round++) {
      await vol.change(async (tx) => {
        for (const start of runs.slice(round * 4, round * 4 + 4)) for (let b = start; b < start + 32; b++) stamp(await tx.overwrite(b), b, 1);
        for (const b of lone.slice(round * 56, round * 56 + 56)) stamp(await tx.overwrite(b), b, 1);
      });
      await vol.commit();
    }
    const redirect = vol.stats().journal?.redirect;
    assert.ok(redirect && redirect.redirectedBlocks > 0, 'the runs were redirected through map blocks far apart');
    assert.ok(vol.stats().cacheBytes <= cacheSize * 2, `page memory stays near cacheSize (${vol.stats().cacheBytes} bytes)`);
    await vol.close();
    const again = await openV2(path, { cacheSize, readahead: 0 });
    for (const start of runs) for (const b of [start, start + 31]) assert.equal((await again.read(b)).readUInt32LE(0), b, `run block ${b}`);
    for (const b of lone) assert.equal((await again.read(b)).readUInt32LE(0), b, `block ${b}`);
    const grown = process.memoryUsage().rss - rssBefore;
    // The bound: the cache, the summary (1 bit per map block, 32 KiB here), the free extents; not 4 bytes per block (1 GiB).
    assert.ok(grown < 128 * MiB, `RSS grew by ${(grown / MiB).toFixed(1)} MiB over two opens of a 1 TiB volume`);
  });

  it('reads a copy whose log still holds redirected deltas: read-only replays in memory through the logged map, writable replays it home', async () => {
    const path = volumes.file();
    const vol = await openV2(path);
    for (let version = 1; version <= 3; version++) {
      await vol.change(async (tx) => {
        for (let b = 100; b < 164; b++) stamp(await tx.overwrite(b), b, version);
        stamp(await tx.overwrite(9 + version), 9 + version, version);
      });
      await vol.commit();
    }
    assert.equal(vol.stats().journal?.checkpointedDelta, 0, 'nothing checkpointed: the map changes are only in the log');
    // A copy of a volume whose commits resolved (not a crash: every write completed), with its log full of them.
    const copy = `${path}.copy`;
    copyFileSync(path, copy);
    const readOnly = await open(copy, { readOnly: true });
    volumes.track(readOnly);
    assert.equal(readOnly.replayedDeltas, 3);
    for (const b of [100, 163]) assert.equal((await readOnly.read(b)).readUInt32LE(4), 3, `read-only block ${b} through the replayed map`);
    for (const v of [1, 2, 3]) assert.equal((await readOnly.read(9 + v)).readUInt32LE(4), v);
    await readOnly.close();
    const writable = await openV2(copy);
    assert.equal(writable.replayedDeltas, 3);
    for (const b of [100, 131, 163]) assert.equal((await writable.read(b)).readUInt32LE(4), 3, `block ${b} after replay`);
    assert.equal(writable.stats().journal?.redirect?.freeBlocks, superblockOf(copy).physicalBlocks - superblockOf(copy).blockCount);
  });

  it('redirects the runs of a logical mapping too: its blocks reach the device through its map and then the volume\'s', async () => {
    const path = volumes.file();
    const vol = await openV2(path);
    // A file whose block i is volume block 2000 + i.
    const file = vol.createMapping({ map: (block) => 2000 + block, blockCount: 256 });
    await vol.change(async (tx) => {
      for (let b = 0; b < 64; b++) stamp(await tx.overwrite(b, file), 2000 + b, 7);
    });
    await vol.commit();
    assert.equal(vol.stats().journal?.redirect?.redirectedBlocks, 64);
    await vol.close();
    const places = physicalPlaces(path, superblockOf(path), Array.from({ length: 64 }, (_, i) => 2000 + i), 7);
    assert.equal(places.size, 64);
    const again = await openV2(path);
    const reopened = again.createMapping({ map: (block) => 2000 + block, blockCount: 256 });
    for (const b of [0, 63]) assert.equal((await again.read(b, reopened)).readUInt32LE(0), 2000 + b);
    assert.equal((await again.read(2030)).readUInt32LE(4), 7, 'the volume mapping sees the same blocks');
  });

  it('redirects even short runs of a delta whose logged blocks would not fit the log (version 1 refuses it)', async () => {
    const scattered = Array.from({ length: 24 }, (_, i) => 37 * i + 5);
    const write = async (vol: Volume) =>
      vol.change(async (tx) => {
        for (const b of scattered) stamp(await tx.overwrite(b), b, 1);
      });
    const v1 = await open(volumes.file(), { size: 8 * MiB, journal: true, logSize: 16 * B, cacheSize: 2 * MiB });
    volumes.track(v1);
    await write(v1);
    await assert.rejects(v1.commit(), { code: 'ERR_DELTA_TOO_LARGE' });
    const path = volumes.file();
    const v2 = await openV2(path, { size: 8 * MiB, logSize: 16 * B, reserveSize: 64 * B });
    await write(v2);
    await v2.commit();
    assert.equal(v2.stats().journal?.redirect?.redirectedBlocks, scattered.length, 'every block went to the reserve');
    await v2.close();
    const again = await openV2(path);
    for (const b of scattered) assert.equal((await again.read(b)).readUInt32LE(0), b);
  });

  it('refuses to open a volume whose summary block is damaged (it would read every redirected block from its old place)', async () => {
    const path = volumes.file();
    const vol = await openV2(path);
    await vol.change(async (tx) => {
      for (let b = 100; b < 164; b++) stamp(await tx.overwrite(b), b, 1);
    });
    await vol.close();
    const sb = superblockOf(path);
    for (const damage of ['zeroed', 'magic'] as const) {
      const copy = `${path}.${damage}`;
      copyFileSync(path, copy);
      const fd = openSync(copy, 'r+');
      try {
        const block = Buffer.alloc(B);
        readSync(fd, block, 0, B, sb.dataStart * B);
        if (damage === 'zeroed') block.fill(0);
        else block[0] ^= 0xff;
        writeSync(fd, block, 0, B, sb.dataStart * B);
      } finally {
        closeSync(fd);
      }
      await assert.rejects(open(copy, {}), { code: 'ERR_MAP_CORRUPT', message: /summary block 0/ }, damage);
    }
  });

  /** Changes the bytes of file block `block` in place (past the volume, which must be closed). */
  function damageBlock(path: string, block: number, change: (bytes: Buffer) => void): void {
    const fd = openSync(path, 'r+');
    try {
      const bytes = Buffer.alloc(B);
      readSync(fd, bytes, 0, B, block * B);
      change(bytes);
      writeSync(fd, bytes, 0, B, block * B);
    } finally {
      closeSync(fd);
    }
  }

  it('open rebuilds the free space from every flagged map block (more than one read\'s worth, in runs and alone): later runs never land on blocks the map still uses', async () => {
    const path = volumes.file();
    const vol = await openV2(path, { size: 400 * MiB });
    const mapBlocks = Math.ceil(vol.blockCount / E);
    assert.ok(mapBlocks >= 70, `the volume spans ${mapBlocks} map blocks: more than the 64 open reads at once`);
    // A 4-block run (redirected) in map blocks 0 .. 66 and 69 .. 70: two runs of flagged map blocks, the first longer than 64.
    const flagged = Array.from({ length: mapBlocks }, (_, k) => k).filter((k) => k <= 66 || k === 69 || k === 70);
    const firstRound = flagged.flatMap((k) => [0, 1, 2, 3].map((i) => k * E + 10 + i));
    await vol.change(async (tx) => {
      for (const b of firstRound) stamp(await tx.overwrite(b), b, 1);
    });
    await vol.commit();
    assert.equal(vol.stats().journal?.redirect?.redirectedBlocks, firstRound.length);
    await vol.close();
    const sb = superblockOf(path);
    const places = physicalPlaces(path, sb, firstRound, 1);
    assert.equal(places.size, firstRound.length);
    assert.ok([...places.values()].every((p) => p >= sb.blockCount), 'the first round lives in the reserve');

    // Reopened, the allocator knows only what the map says: a second round of runs must take other blocks.
    const again = await openV2(path);
    assert.equal(again.stats().journal?.redirect?.freeBlocks, sb.physicalBlocks - sb.blockCount);
    const secondRound = flagged.flatMap((k) => [0, 1, 2, 3].map((i) => k * E + 500 + i));
    await again.change(async (tx) => {
      for (const b of secondRound) stamp(await tx.overwrite(b), b, 2);
    });
    await again.commit();
    assert.equal(again.stats().journal?.redirect?.redirectedBlocks, secondRound.length);
    await again.close();
    const third = await openV2(path);
    for (const b of firstRound) assert.deepEqual([(await third.read(b)).readUInt32LE(0), (await third.read(b)).readUInt32LE(4)], [b, 1], `first-round block ${b}`);
    for (const b of secondRound) assert.deepEqual([(await third.read(b)).readUInt32LE(0), (await third.read(b)).readUInt32LE(4)], [b, 2], `second-round block ${b}`);
  });

  it('refuses to open a volume whose map is damaged: a summary block\'s checksum, a flagged map block never written or failing its checksum', async () => {
    const path = volumes.file();
    const vol = await openV2(path);
    // Map block 1 changes (volume blocks E .. 2E − 1): a run at E + 100.
    await vol.change(async (tx) => {
      for (let b = E + 100; b < E + 164; b++) stamp(await tx.overwrite(b), b, 1);
    });
    await vol.close();
    const sb = superblockOf(path);
    const home = (block: number) => sb.dataStart + block;
    const cases: [string, number, (bytes: Buffer) => void, RegExp][] = [
      ['summary bit flipped', home(0), (bytes) => void (bytes[16] ^= 0x04), /summary block 0 \(home block 0\): checksum mismatch/],
      ['map block zeroed', home(sb.summaryBlocks + 1), (bytes) => void bytes.fill(0), /map block 1 is flagged in the summary but was never written/],
      ['map entry changed', home(sb.summaryBlocks + 1), (bytes) => void (bytes[16 + 4 * 100] ^= 0x01), new RegExp(`map block 1 \\(home block ${sb.summaryBlocks + 1}\\): checksum mismatch`)],
    ];
    for (const [name, block, change, message] of cases) {
      const copy = `${path}.${name.replace(/ /g, '-')}`;
      copyFileSync(path, copy);
      damageBlock(copy, block, change);
      await assert.rejects(open(copy, {}), { code: 'ERR_MAP_CORRUPT', message }, name);
    }
    // The undamaged volume opens and reads through map block 1.
    const intact = await openV2(path);
    assert.equal((await intact.read(E + 163)).readUInt32LE(4), 1);
  });

  it('names the summary block that is damaged past the first (a sparse 1 TiB volume has several)', async () => {
    const path = volumes.file();
    const vol = await openV2(path, { size: 2 ** 40, cacheSize: 4 * MiB, readahead: 0 });
    // docs/FORMAT.md: summary block j, bit b of byte 16 + i is map block (j·(blockSize − 16) + i)·8 + b. Map block
    // k = (1·4080 + 3)·8 + 5 is bit 5 of byte 19 of summary block 1; a run in it sets that bit.
    const k = (1 * (B - 16) + 3) * 8 + 5;
    await vol.change(async (tx) => {
      for (let b = k * E; b < k * E + 8; b++) stamp(await tx.overwrite(b), b, 1);
    });
    await vol.close();
    const sb = superblockOf(path);
    assert.equal(sb.mapBlocks, Math.ceil(sb.blockCount / E), 'map blocks: one per (blockSize − 16) / 4 volume blocks');
    assert.equal(sb.summaryBlocks, Math.ceil(sb.mapBlocks / ((B - 16) * 8)), 'summary blocks: one bit per map block after a 16-byte header');
    assert.ok(sb.summaryBlocks >= 3, `${sb.summaryBlocks} summary blocks`);
    const summary1 = fileBytes(path, (sb.dataStart + 1) * B, B);
    assert.equal(summary1[16 + 3], 1 << 5, 'the bit of map block k, and no other in its byte');
    assert.ok(summary1.subarray(16).every((x, i) => i === 3 || x === 0), 'no other bit of summary block 1 is set');
    assert.ok(fileBytes(path, sb.dataStart * B, B).subarray(16).every((x) => x === 0), 'nor of summary block 0');
    // Damaged in place, one way then the other (a copy of a sparse 1 TiB file would not be sparse).
    const original = Buffer.alloc(B);
    damageBlock(path, sb.dataStart + 2, (bytes) => {
      bytes.copy(original);
      bytes[8] ^= 0xff;
    });
    await assert.rejects(open(path, {}), { code: 'ERR_MAP_CORRUPT', message: /summary block 2 \(home block 2\) is not this volume's/ });
    damageBlock(path, sb.dataStart + 2, (bytes) => {
      original.copy(bytes);
      bytes[100] ^= 0x01;
    });
    await assert.rejects(open(path, {}), { code: 'ERR_MAP_CORRUPT', message: /summary block 2 \(home block 2\): checksum mismatch/ });
    damageBlock(path, sb.dataStart + 2, (bytes) => void original.copy(bytes));
    volumes.track(await open(path, {}));
  });

  it('a map block whose summary bit is clear is identity whatever it holds: a volume formatted anew over a redirected one reads its own blocks', async () => {
    const path = volumes.file();
    const vol = await openV2(path);
    const run = Array.from({ length: 64 }, (_, i) => 1000 + i);
    await vol.change(async (tx) => {
      for (const b of run) stamp(await tx.overwrite(b), b, 1);
    });
    await vol.close();
    const old = superblockOf(path);
    const places = physicalPlaces(path, old, run, 1);
    assert.equal(places.size, run.length);
    // Format writes the summary (all clear) and leaves the old map blocks, entries and all, in place.
    const fresh = await openV2(path, { format: true });
    assert.notEqual(superblockOf(path).volumeId, old.volumeId);
    for (const b of [1000, 1031, 1063]) assert.equal((await fresh.read(b)).readUInt32LE(4), 0, `block ${b} reads from its identity place (never written), not the old volume's redirect`);
    // And a run written now goes through a map block started anew: the old entries do not come back.
    await fresh.change(async (tx) => {
      for (let b = 1000; b < 1004; b++) stamp(await tx.overwrite(b), b, 2);
    });
    await fresh.close();
    const reopened = await openV2(path);
    assert.equal((await reopened.read(1001)).readUInt32LE(4), 2);
    for (const b of [1004, 1063]) assert.equal((await reopened.read(b)).readUInt32LE(4), 0, `block ${b} is still identity`);
  });

  it('blocks smaller than the cache page (1 KiB blocks, four map blocks a page): runs across map blocks read back before and after reopening', async () => {
    const path = volumes.file();
    const small = 1024;
    const entries = (small - 16) / 4;
    const options = { size: 16 * MiB, blockSize: small, cacheSize: 2 * MiB, redirectMin: 8 * KiB };
    const vol = await openV2(path, options);
    assert.equal(vol.stats().journal?.redirect !== undefined, true);
    // Runs of 12 blocks straddling the boundaries of map blocks 1 .. 6 (pages hold map blocks 0..3 and 4..7).
    const runs = [1, 2, 3, 4, 5, 6].map((k) => k * entries - 6);
    const tag = (view: Buffer, b: number, version: number) => {
      view.writeUInt32LE(b, 0);
      view.writeUInt32LE(version, 4);
    };
    for (let version = 1; version <= 2; version++) {
      await vol.change(async (tx) => {
        for (const start of runs) for (let b = start; b < start + 12; b++) tag(await tx.overwrite(b), b, version);
      });
      await vol.commit();
    }
    assert.equal(vol.stats().journal?.redirect?.redirectedBlocks, 2 * 12 * runs.length);
    const check = async (v: Volume, when: string) => {
      for (const start of runs) {
        for (let b = start - 1; b <= start + 12; b++) {
          const data = await v.read(b);
          const written = b >= start && b < start + 12;
          assert.deepEqual([data.readUInt32LE(0), data.readUInt32LE(4)], written ? [b, 2] : [0, 0], `${when}: block ${b}`);
        }
      }
    };
    await check(vol, 'open');
    await vol.close();
    const again = await openV2(path, { cacheSize: 2 * MiB });
    await check(again, 'reopened');
    assert.equal(again.stats().journal?.redirect?.freeBlocks, superblockOf(path).physicalBlocks - superblockOf(path).blockCount);
  });

  it('frees held for a checkpoint: a plan that needs them waits for the checkpoint it asks for, the checkpoint drops the pins, and later frees of those blocks are not held', async () => {
    const path = volumes.file();
    const R = 128;
    const vol = await openV2(path, { reserveSize: R * B });
    const redirect = () => {
      const r = vol.stats().journal?.redirect;
      assert.ok(r);
      return r;
    };
    // Delta 1: every other block of 0..127, each a run of one: logged whole, so their identity places are pinned.
    await vol.change(async (tx) => {
      for (let b = 0; b < R; b += 2) stamp(await tx.overwrite(b), b, 1);
    });
    await vol.commit();
    assert.equal(redirect().loggedBlocks, R / 2);
    await until(() => vol.stats().deltasInFlight === 0, 'delta 1 at home (before delta 2 holds frees, or its home writes would ask for a checkpoint)');
    // Delta 2: 0..127 as one run, redirected into the whole reserve; of the places it leaves, the pinned half is held.
    await vol.change(async (tx) => {
      for (let b = 0; b < R; b++) stamp(await tx.overwrite(b), b, 2);
    });
    await vol.commit();
    assert.equal(redirect().redirectedBlocks, R);
    // Half the reserve free (the unpinned half of the old places), frees held, no plan waiting: not yet a reason to checkpoint.
    await until(() => vol.stats().deltasInFlight === 0, 'delta 2 at home');
    assert.equal(redirect().freeBlocks, R / 2);
    assert.equal(vol.stats().journal?.checkpoints, 0, 'no checkpoint at half the reserve');
    // Delta 3: another run of the reserve's size. Free is at most the unpinned half until a checkpoint releases the rest:
    // the plan waits for it rather than logging part of the run.
    await vol.change(async (tx) => {
      for (let b = 1000; b < 1000 + R; b++) stamp(await tx.overwrite(b), b, 3);
    });
    await vol.commit();
    assert.equal(redirect().redirectedBlocks, 2 * R, 'the whole run was redirected');
    assert.equal(redirect().loggedBlocks, R / 2, 'nothing of it was logged');
    assert.ok((vol.stats().journal?.checkpoints ?? 0) >= 1, 'a checkpoint released the held frees');
    assert.ok((vol.stats().journal?.checkpointedDelta ?? 0) >= 2);
    await until(() => redirect().pendingFreeBlocks === 0, 'delta 3 durable: its frees are free');
    assert.equal(redirect().freeBlocks, R, 'every block freed is free again');
    // Delta 4 rewrites 1000.. again: delta 3 put it on the blocks delta 2 left (0..127, no longer pinned since the
    // checkpoint covered delta 1), so its frees are released once it is durable, not held.
    await vol.change(async (tx) => {
      for (let b = 1000; b < 1000 + R; b++) stamp(await tx.overwrite(b), b, 4);
    });
    await vol.commit();
    await until(() => redirect().pendingFreeBlocks === 0, 'delta 4 durable: nothing of its frees held');
    assert.equal(redirect().freeBlocks, R);
    assert.equal(redirect().redirectedBlocks, 3 * R);
    await vol.close();
    // Reopened, the map blocks are not cached: a rewrite of the run looks its old places up from the device first.
    const again = await openV2(path, { reserveSize: R * B });
    await again.change(async (tx) => {
      for (let b = 1000; b < 1000 + R; b++) stamp(await tx.overwrite(b), b, 5);
    });
    await again.commit();
    await until(() => again.stats().journal?.redirect?.pendingFreeBlocks === 0, 'the rewrite durable: its old places freed');
    assert.equal(again.stats().journal?.redirect?.freeBlocks, R, 'every old place the map named is free again');
    for (const b of [0, 1, 126, 127]) assert.deepEqual([(await again.read(b)).readUInt32LE(0), (await again.read(b)).readUInt32LE(4)], [b, 2]);
    for (const b of [1000, 1001, 1000 + R - 1]) assert.deepEqual([(await again.read(b)).readUInt32LE(0), (await again.read(b)).readUInt32LE(4)], [b, 5]);
  });

  it('a checkpoint drops the pins of the deltas it covers, and only those: a block a later delta logged again stays pinned, one the checkpointed delta logged last does not', async () => {
    const R = 64;
    const X = 2000;
    const Y = 3000;
    const path = volumes.file();
    const device = new FaultDevice(await Device.open(path, { size: 16 * MiB, direct: true }));
    const vol = await Volume.mount(device, { journal: true, format: true, formatVersion: 2, reserveSize: R * B, redirectMin: 16 * KiB, logSize: 2 * MiB, maxDeltas: 4, cacheSize: 2 * MiB });
    volumes.track(vol);
    const redirect = () => {
      const r = vol.stats().journal?.redirect;
      assert.ok(r);
      return r;
    };
    const sb = superblockOf(path);
    const homeOfX = (sb.dataStart + sb.summaryBlocks + sb.mapBlocks + X) * B;
    // Delta 1: runs of three blocks over 0..R-1 (under redirectMin's four), logged whole: their identity places are pinned.
    await vol.change(async (tx) => {
      for (let block = 0; block < R; block++) if (block % 4 !== 3) stamp(await tx.overwrite(block), block, 1);
    });
    await vol.commit();
    await until(() => vol.stats().deltasInFlight === 0, 'delta 1 at home');
    assert.equal(redirect().loggedBlocks, (3 * R) / 4);
    // Delta B's home write of X (the image stamped 3) is held throughout: B is never at home, so no checkpoint covers it.
    const releaseB = device.holdWhere('write', (request) => request.offset === homeOfX && Buffer.from(request.buffers[0].buffer, request.buffers[0].byteOffset, 8).readUInt32LE(4) === 3);
    try {
      // Every write held while A and B are planned: B pins X before the checkpoint of A is asked, let alone done.
      const releaseAll = device.hold();
      let a: Promise<unknown> = Promise.resolve();
      let b: Promise<unknown> = Promise.resolve();
      try {
        // Delta A: 0..R-1 as one run, into the whole reserve (the three quarters of its old places that delta 1 pinned
        // are held), and X and Y alone, logged: A pins their places.
        await vol.change(async (tx) => {
          for (let block = 0; block < R; block++) stamp(await tx.overwrite(block), block, 2);
          stamp(await tx.overwrite(X), X, 2);
          stamp(await tx.overwrite(Y), Y, 2);
        });
        a = vol.commit();
        await until(() => redirect().redirectedBlocks === R, 'delta A planned');
        // Delta B logs X again: the newest image that targets X's place is B's.
        await vol.change(async (tx) => stamp(await tx.overwrite(X), X, 3));
        b = vol.commit();
        await until(() => redirect().loggedBlocks === (3 * R) / 4 + 3, 'delta B planned');
        assert.equal(redirect().pendingFreeBlocks, R, 'A not durable yet: its old places pending, the three quarters delta 1 pinned held');
      } finally {
        releaseAll();
      }
      await a;
      await b;
      // A at home, with frees held and under half the reserve free: a checkpoint names A.
      await until(() => redirect().pendingFreeBlocks === 0, 'the checkpoint of A released the held frees');
      const checkpointed = vol.stats().journal?.checkpointedDelta;
      assert.equal(vol.stats().journal?.checkpoints, 1, 'one checkpoint');
      assert.equal(redirect().freeBlocks, R);
      // Delta C redirects a run over X and one over Y. X's place is still the target of B's logged image, which replay
      // would write again after a crash until a checkpoint covers B: its free is held. Y's place was pinned by A only,
      // which the checkpoint covers: free once C is durable, like the other six.
      await vol.change(async (tx) => {
        for (let block = X; block < X + 4; block++) stamp(await tx.overwrite(block), block, 4);
        for (let block = Y; block < Y + 4; block++) stamp(await tx.overwrite(block), block, 4);
      });
      await vol.commit();
      assert.equal(redirect().redirectedBlocks, R + 8);
      assert.equal(vol.stats().journal?.checkpointedDelta, checkpointed, 'no checkpoint since');
      assert.equal(redirect().pendingFreeBlocks, 1, 'X\'s old place is held, Y\'s is not');
      assert.equal(redirect().freeBlocks, R - 8 + 7);
    } finally {
      releaseB();
    }
    await vol.close();
    const again = await openV2(path);
    assert.equal(again.stats().journal?.redirect?.freeBlocks, R, 'the checkpoint at close released it');
    for (const block of [X, X + 3, Y, Y + 3]) assert.deepEqual([(await again.read(block)).readUInt32LE(0), (await again.read(block)).readUInt32LE(4)], [block, 4]);
    for (const block of [0, R - 1]) assert.equal((await again.read(block)).readUInt32LE(4), 2);
  });

  it('a delta whose short runs fit the log only without the map blocks its long runs change is redirected whole, whatever its mix', async () => {
    // A 16-block log; L lone blocks (logged, in map block 1) and one long run (redirected, in map block 2): the first
    // map block the delta touches is not map block 0.
    for (let L = 1; L <= 14; L++) {
      const path = volumes.file();
      const vol = await openV2(path, { size: 16 * MiB, logSize: 16 * B, reserveSize: 64 * B });
      const lone = Array.from({ length: L }, (_, i) => E + 3 * i + 1);
      const run = Array.from({ length: 8 }, (_, i) => 2 * E + 50 + i);
      await vol.change(async (tx) => {
        for (const b of [...lone, ...run]) stamp(await tx.overwrite(b), b, L);
      });
      await vol.commit();
      const redirect = vol.stats().journal?.redirect;
      assert.ok(redirect);
      assert.equal(redirect.redirectedBlocks + redirect.loggedBlocks, L + 8, `L ${L}: every block went somewhere`);
      await vol.close();
      const again = await openV2(path);
      for (const b of [...lone, ...run]) assert.deepEqual([(await again.read(b)).readUInt32LE(0), (await again.read(b)).readUInt32LE(4)], [b, L], `L ${L}: block ${b}`);
      await again.close();
    }
  });

  it('a run longer than the free reserve with no frees on their way: what fits is redirected, the rest logged whole', async () => {
    const path = volumes.file();
    const vol = await openV2(path, { reserveSize: 16 * B });
    await vol.change(async (tx) => {
      for (let b = 200; b < 264; b++) stamp(await tx.overwrite(b), b, 1);
    });
    await vol.commit();
    const redirect = vol.stats().journal?.redirect;
    assert.ok(redirect);
    assert.equal(redirect.redirectedBlocks, 16, 'the whole reserve');
    assert.equal(redirect.loggedBlocks, 48, 'the rest of the run');
    await vol.close();
    const again = await openV2(path);
    for (const b of [200, 215, 216, 263]) assert.deepEqual([(await again.read(b)).readUInt32LE(0), (await again.read(b)).readUInt32LE(4)], [b, 1]);
  });

  it('deltas queued back to back, each a run the size of the reserve: each plan waits for the frees of the one before, no block is logged', async () => {
    const path = volumes.file();
    const R = 64;
    const vol = await openV2(path, { reserveSize: R * B, maxDeltas: 4 });
    const commits: Promise<unknown>[] = [];
    for (let version = 1; version <= 8; version++) {
      await vol.change(async (tx) => {
        for (let b = 300; b < 300 + R; b++) stamp(await tx.overwrite(b), b, version);
      });
      commits.push(vol.commit());
    }
    await Promise.all(commits);
    await vol.commit();
    const redirect = vol.stats().journal?.redirect;
    assert.ok(redirect);
    // Commits may group (a delta that closes while the one before is in flight takes the next change too): whole runs either way.
    assert.equal(redirect.loggedBlocks, 0, 'no block of any run was logged for want of reserve');
    assert.equal(vol.stats().journal?.checkpoints, 0, 'no frees held: the reserve running low is no reason to checkpoint');
    assert.ok(redirect.redirectedBlocks >= 2 * R && redirect.redirectedBlocks % R === 0, `whole runs redirected (${redirect.redirectedBlocks} blocks)`);
    await vol.close();
    const again = await openV2(path);
    for (const b of [300, 300 + R - 1]) assert.deepEqual([(await again.read(b)).readUInt32LE(0), (await again.read(b)).readUInt32LE(4)], [b, 8]);
  });

  it('rebuilds the same free space from a map with few entries as from a bitmap (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 64, max: 4096 }), fc.array(fc.nat(), { maxLength: 60 }), (P, picks) => {
        const N = Math.floor(P * 0.75);
        // A sound map: a random permutation step per pick (logical l moves to a free physical block).
        const placeOf = new Map<number, number>();
        const used = new Set<number>(Array.from({ length: N }, (_, i) => i));
        for (const pick of picks) {
          const logical = pick % N;
          const free = [];
          for (let p = 0; p < P && free.length < 8; p++) if (!used.has((p + pick) % P)) free.push((p + pick) % P);
          if (free.length === 0) continue;
          const old = placeOf.get(logical) ?? logical;
          used.delete(old);
          used.add(free[0]);
          placeOf.set(logical, free[0]);
        }
        const entries = [...placeOf];
        const sparse = Allocator.fromMap(P, N, entries);
        const dense = Allocator.fromMap(P, N, (function* () {
          yield* entries;
        })());
        assert.deepEqual(sparse.extents(), dense.extents());
        assert.equal(sparse.free, P - N);
      }),
    );
  });
});
