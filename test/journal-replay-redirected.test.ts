import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { joinAdjacent } from '../src/io/adjacent';
import { Device } from '../src/io/device';
import type { Slab } from '../src/io/slab';
import { allocBlocks } from '../src/journal/block-memory';
import { crc32c } from '../src/journal/crc32c';
import type { JournalBlock, JournalRun } from '../src/journal/home-area';
import { JournalWriter } from '../src/journal/journal-writer';
import { descriptorBlocks, encodeCommit, encodeDescriptor, logBlocksFor, maxDeltaBlocks } from '../src/journal/log-record';
import { LogRing } from '../src/journal/log-ring';
import { inspectJournal, replayInMemory, replayJournal } from '../src/journal/replay';
import { homeBlocks, type Superblock } from '../src/journal/superblock';
import { formatVolume } from '../src/journal/volume-format';

/**
 * Replay's own checks of what a delta's records name, past their checksums:
 * the redirected blocks of the last delta read back against the descriptor
 * (version 2: they are written beside the log records, and one that did
 * not reach the disk means the delta did not commit), every home inside
 * its area and in order, the log read no further than one lap from the
 * checkpoint.
 */

const B = 512;
const SIZE = 2 << 20;

describe('journal replay: redirected blocks and the homes a delta names', () => {
  let dir: string;
  const open: Device[] = [];
  const slabs: Slab[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blockfork-replay-redirected-'));
  });
  afterEach(async () => {
    for (const d of open.splice(0)) await d.close();
    for (const s of slabs.splice(0)) s.release();
    await rm(dir, { recursive: true, force: true });
  });

  async function device(): Promise<Device> {
    const d = await Device.open(join(dir, 'vol.img'), { size: SIZE });
    open.push(d);
    return d;
  }

  async function closeDevice(d: Device): Promise<void> {
    open.splice(open.indexOf(d), 1);
    await d.close();
  }

  /** Blocks at these homes, each filled with a pattern of (tag, home). */
  function images(tag: number, homes: readonly number[]): JournalBlock[] {
    const slab = allocBlocks(B, Math.max(1, homes.length));
    slabs.push(slab);
    return homes.map((home, i) => {
      const image = slab.page(i);
      for (let j = 0; j < B; j += 4) image.writeUInt32LE((tag * 1_000_003 + home * 7919 + j) >>> 0, j);
      return { home, image };
    });
  }

  /**
   * Blocks of consecutive homes as the runs an append takes for its
   * redirected blocks: a view per block in the first run made, the second's
   * joined where adjacent in memory (as a plan makes them), and so on
   * alternately.
   */
  let runsMade = 0;
  function runsOf(blocks: readonly JournalBlock[]): JournalRun[] {
    const runs: { home: number; images: Uint8Array[]; blocks: number }[] = [];
    for (const b of blocks) {
      const last = runs[runs.length - 1];
      if (last !== undefined && last.home + last.blocks === b.home) {
        last.images.push(b.image);
        last.blocks++;
      } else runs.push({ home: b.home, images: [b.image], blocks: 1 });
    }
    return runs.map(({ home, images }) => ({ home, images: runsMade++ % 2 === 1 ? joinAdjacent(images) : images }));
  }

  function range(from: number, count: number): number[] {
    return Array.from({ length: count }, (_, i) => from + i);
  }

  /** Home block (of the home area) of physical block p. */
  function physicalHome(sb: Superblock, p: number): number {
    return sb.summaryBlocks + sb.mapBlocks + p;
  }

  async function overwriteHome(d: Device, sb: Superblock, home: number): Promise<void> {
    const slab = allocBlocks(B, 1);
    slab.page(0).fill(0xee);
    await d.run([{ op: 'write', offset: (sb.dataStart + home) * B, buffers: [slab.page(0)] }]);
    await d.flush();
    slab.release();
  }

  /** Version 2, two deltas appended (never checkpointed), closed: a volume that crashed after two commits. */
  async function twoDeltas(redirectedOfLast: number): Promise<{ sb: Superblock; first: number[]; last: number[] }> {
    const d = await device();
    const sb = await formatVolume(d, { blockSize: B, logBlocks: 64, version: 2, reserveBlocks: 600 });
    const { journal } = await JournalWriter.open(d);
    const first = range(physicalHome(sb, 3000), 3);
    const last = range(physicalHome(sb, 3100), redirectedOfLast);
    await journal.appendDelta(1, images(1, [3, 4]), runsOf(images(1, first)));
    await journal.appendDelta(2, images(2, [5]), runsOf(images(2, last)));
    await journal.close();
    await closeDevice(d);
    return { sb, first, last };
  }

  it('reports each delta\'s logged homes and redirected blocks apart; replay takes only the logged images home', async () => {
    const { first, last } = await twoDeltas(2);
    const d = await device();
    const report = await inspectJournal(d);
    assert.deepEqual(
      report.deltas.map(({ delta, homes, redirected }) => ({ delta, homes, redirected })),
      [
        { delta: 1, homes: [3, 4], redirected: first },
        { delta: 2, homes: [5], redirected: last },
      ],
    );
    assert.equal(report.lastDelta, 2);
    const memory = await replayInMemory(d);
    assert.deepEqual([...memory.blocks.keys()].sort((a, b) => a - b), [3, 4, 5], 'redirected blocks are already in place: nothing of them to replay');
    assert.deepEqual(Buffer.from(memory.blocks.get(5) as Uint8Array), Buffer.from(images(2, [5])[0].image));
  });

  for (const [what, index] of [
    ['the first', 0],
    ['one in the second read of 256', 299],
    ['the last', 299 + 1],
  ] as const) {
    it(`a last delta whose redirected blocks did not all reach the disk is not replayed: ${what} fails its checksum`, async () => {
      const count = 301;
      const { sb, last } = await twoDeltas(count);
      const d = await device();
      await overwriteHome(d, sb, last[index]);
      const report = await inspectJournal(d);
      assert.deepEqual(report.deltas.map((x) => x.delta), [1], 'delta 2 did not commit');
      assert.equal(report.lastDelta, 1);
      const position = report.superblock.replayPosition + logBlocksFor(2, B, 3);
      assert.equal(report.stop.kind, 'torn');
      assert.equal(report.stop.position, position);
      assert.equal(report.endPosition, position);
      assert.equal(
        report.stop.reason,
        `redirected block ${index} (home block ${last[index]}) of delta 2 at log position ${position} fails its checksum: it did not reach the disk`,
      );
      const replayed = await replayJournal(d);
      assert.equal(replayed.superblock.checkpointDelta, 1, 'replay checkpoints delta 1, not 2');
      assert.equal(replayed.superblock.replayPosition, position);
    });
  }

  it('only the last delta\'s redirected blocks are read back: an earlier one\'s were durable before the next delta\'s records', async () => {
    const { sb, first } = await twoDeltas(2);
    const d = await device();
    await overwriteHome(d, sb, first[1]);
    const report = await inspectJournal(d);
    assert.deepEqual(report.deltas.map((x) => x.delta), [1, 2]);
    assert.equal(report.stop.kind, 'end');
  });

  /**
   * Writes one delta's records by hand at `position` (descriptor, images, commit), as the writer would but
   * without its checks: `homes` lists the logged images' homes (each image zeros), then `redirected` of
   * their redirected blocks (checksums of what the device holds there: zeros).
   */
  async function writeRecords(d: Device, sb: Superblock, position: number, delta: number, homes: readonly number[], redirected = 0): Promise<number> {
    const count = homes.length - redirected;
    const dBlocks = descriptorBlocks(count, B, redirected);
    const total = logBlocksFor(count, B, redirected);
    const slab = allocBlocks(B, total);
    try {
      const whole = Buffer.from(slab.memory, 0, total * B);
      whole.fill(0);
      const zero = crc32c(Buffer.alloc(B));
      const crc = encodeDescriptor({ volumeId: sb.volumeId, position, delta }, homes, homes.map(() => zero), B, whole.subarray(0, dBlocks * B), redirected);
      encodeCommit({ volumeId: sb.volumeId, position, delta, count, descriptorCrc: crc, totalBlocks: total }, whole.subarray((total - 1) * B));
      await d.run(new LogRing(sb.logStart, sb.logBlocks, B).requests('write', position, [whole]));
      await d.flush();
    } finally {
      slab.release();
    }
    return total;
  }

  async function formatted(): Promise<{ d: Device; sb: Superblock }> {
    const d = await device();
    const sb = await formatVolume(d, { blockSize: B, logBlocks: 64, version: 2, reserveBlocks: 600 });
    return { d, sb };
  }

  it('takes a delta whose homes reach the ends of their areas: the last home block, the first physical block for a redirected one', async () => {
    const { d, sb } = await formatted();
    const physicalStart = sb.summaryBlocks + sb.mapBlocks;
    // Logged homes may be anywhere in the home area; the redirected ones start their own ascending order.
    await writeRecords(d, sb, sb.replayPosition, 1, [7, homeBlocks(sb) - 1, physicalStart, physicalStart + 1], 2);
    const report = await inspectJournal(d);
    assert.deepEqual(report.deltas.map(({ homes, redirected }) => ({ homes, redirected })), [{ homes: [7, homeBlocks(sb) - 1], redirected: [physicalStart, physicalStart + 1] }]);
    assert.equal(report.stop.kind, 'end');
  });

  const P = (sb: Superblock): number => sb.summaryBlocks + sb.mapBlocks;
  const refused: [string, (sb: Superblock) => number[], number, (sb: Superblock) => number][] = [
    ['a logged home past the home area', (sb) => [7, homeBlocks(sb)], 0, (sb) => homeBlocks(sb)],
    ['a redirected home past the home area', (sb) => [7, homeBlocks(sb)], 1, (sb) => homeBlocks(sb)],
    ['logged homes out of order', () => [9, 8], 0, () => 8],
    ['a logged home twice', () => [9, 9], 0, () => 9],
    ['redirected homes out of order', (sb) => [7, P(sb) + 5, P(sb) + 4], 2, (sb) => P(sb) + 4],
    ['a redirected home twice', (sb) => [7, P(sb) + 5, P(sb) + 5], 2, (sb) => P(sb) + 5],
    ['a redirected home in the map, below the physical area', (sb) => [7, P(sb) - 1], 1, (sb) => P(sb) - 1],
    ['a first redirected home in the summary, after a logged one past it', (sb) => [100, sb.summaryBlocks], 1, (sb) => sb.summaryBlocks],
  ];
  for (const [what, homes, redirected, bad] of refused) {
    it(`refuses a delta whose records check but that names ${what}: replay stops before it`, async () => {
      const { d, sb } = await formatted();
      const length = await writeRecords(d, sb, sb.replayPosition, 1, [3], 0);
      const position = sb.replayPosition + length;
      await writeRecords(d, sb, position, 2, homes(sb), redirected);
      const report = await inspectJournal(d);
      assert.deepEqual(report.deltas.map((x) => x.delta), [1]);
      assert.deepEqual(report.stop, { kind: 'torn', reason: `delta 2 at log position ${position} names home block ${bad(sb)}, outside its area or out of order`, position });
    });
  }

  it('refuses a descriptor that would take more log blocks than the lap has left (its redirected entries counted)', async () => {
    const { d, sb } = await formatted();
    // The most images the log holds, and redirected entries enough to make the descriptor a block longer.
    const count = maxDeltaBlocks(sb.logBlocks, B);
    const redirected = 30;
    assert.equal(logBlocksFor(count, B), sb.logBlocks);
    assert.equal(logBlocksFor(count, B, redirected), sb.logBlocks + 1);
    const homes = [...range(0, count), ...range(sb.summaryBlocks + sb.mapBlocks, redirected)];
    const blocks = descriptorBlocks(count, B, redirected);
    const slab = allocBlocks(B, blocks);
    try {
      const bytes = Buffer.from(slab.memory, 0, blocks * B);
      encodeDescriptor({ volumeId: sb.volumeId, position: sb.replayPosition, delta: 1 }, homes, homes.map(() => 0), B, bytes, redirected);
      // Only the first block: replay must refuse the delta from its header, before reading the rest.
      await d.run(new LogRing(sb.logStart, sb.logBlocks, B).requests('write', sb.replayPosition, [bytes.subarray(0, B)]));
    } finally {
      slab.release();
    }
    const report = await inspectJournal(d);
    assert.deepEqual(report.deltas, []);
    const total = logBlocksFor(count, B, redirected);
    assert.deepEqual(report.stop, {
      kind: 'torn',
      reason: `delta 1 at log position ${sb.replayPosition} would take ${total} log blocks, more than the ${sb.logBlocks} left`,
      position: sb.replayPosition,
    });
  });

  it('stops at a log that is full: a lap of deltas from the checkpoint, and the records after it are the lap\'s own first ones', async () => {
    const d = await device();
    const sb = await formatVolume(d, { blockSize: B, logBlocks: 64, version: 1 });
    const { journal } = await JournalWriter.open(d);
    // Eight deltas of six images: eight log blocks each, the whole log.
    for (let delta = 1; delta <= 8; delta++) await journal.appendDelta(delta, images(delta, range(delta * 10, 6)));
    await journal.close();
    await closeDevice(d);
    const again = await device();
    const report = await inspectJournal(again);
    assert.deepEqual(report.deltas.map((x) => x.delta), [1, 2, 3, 4, 5, 6, 7, 8]);
    const end = report.superblock.replayPosition + sb.logBlocks;
    assert.deepEqual(report.stop, { kind: 'end', reason: `the log is full up to position ${end}`, position: end });
  });
});
