import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { Device } from '../src/io/device';
import { systemError } from '../src/io/errors';
import type { BlockIo, IoRequest, IoResult } from '../src/io/request';
import type { Slab } from '../src/io/slab';
import { allocBlocks } from '../src/journal/block-memory';
import type { JournalBlock, JournalRun } from '../src/journal/home-area';
import { JournalWriter } from '../src/journal/journal-writer';
import { descriptorBlocks, logBlocksFor } from '../src/journal/log-record';
import { inspectJournal, replayInMemory, replayJournal } from '../src/journal/replay';
import { readSuperblock, type Superblock } from '../src/journal/superblock';
import { formatVolume } from '../src/journal/volume-format';

const SIZE = 256 * 1024;
const B = 512;

/** Home block contents of a model volume: home → image; absent homes are zeros. */
type Model = Map<number, Buffer>;

describe('journal: append and replay', () => {
  let dir: string;
  const open: BlockIo[] = [];
  const slabs: Slab[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blockfork-journal-replay-'));
  });
  afterEach(async () => {
    for (const d of open.splice(0)) await d.close();
    for (const s of slabs.splice(0)) s.release();
    await rm(dir, { recursive: true, force: true });
  });

  async function device(name = 'vol.img', options: { readOnly?: boolean } = {}): Promise<Device> {
    const d = await Device.open(join(dir, name), options.readOnly ? { readOnly: true } : { size: SIZE });
    open.push(d);
    return d;
  }

  async function closeDevice(d: BlockIo): Promise<void> {
    open.splice(open.indexOf(d), 1);
    await d.close();
  }

  /** Frozen images for one delta: each home's block filled with a pattern of (delta, home). */
  function images(delta: number, homes: number[]): JournalBlock[] {
    const slab = allocBlocks(B, Math.max(1, homes.length));
    slabs.push(slab);
    return [...homes].sort((a, b) => a - b).map((home, i) => {
      const image = slab.page(i);
      for (let j = 0; j < B; j += 4) image.writeUInt32LE((delta * 1_000_003 + home * 7919 + j) >>> 0, j);
      return { home, image };
    });
  }

  function apply(model: Model, blocks: JournalBlock[]): void {
    for (const b of blocks) model.set(b.home, Buffer.from(b.image));
  }

  async function dataArea(d: BlockIo, sb: Superblock): Promise<Buffer> {
    const slab = allocBlocks(sb.blockSize, sb.blockCount);
    slabs.push(slab);
    const all = Buffer.from(slab.memory, 0, sb.blockCount * sb.blockSize);
    await d.run([{ op: 'read', offset: sb.dataStart * sb.blockSize, buffers: [all] }]);
    return Buffer.from(all);
  }

  function expected(model: Model, sb: Superblock): Buffer {
    const all = Buffer.alloc(sb.blockCount * sb.blockSize);
    for (const [home, image] of model) image.copy(all, home * sb.blockSize);
    return all;
  }

  async function fileHash(name: string): Promise<string> {
    return createHash('sha256').update(await readFile(join(dir, name))).digest('hex');
  }

  /** Log byte offset of a log position. */
  function logOffset(sb: Superblock, position: number): number {
    return (sb.logStart + (position % sb.logBlocks)) * sb.blockSize;
  }

  async function patch(d: Device, offset: number, mutate: (bytes: Buffer) => void): Promise<void> {
    const slab = allocBlocks(B, 1);
    const bytes = slab.page(0);
    await d.run([{ op: 'read', offset, buffers: [bytes] }]);
    mutate(bytes);
    await d.run([{ op: 'write', offset, buffers: [bytes] }]);
    await d.flush();
    slab.release();
  }

  /** Formats, appends three deltas to the log (never home), closes: a volume that crashed right after three commits. */
  async function threeCommittedDeltas(logBlocks = 64): Promise<{ models: Model[]; sb: Superblock }> {
    const d = await device();
    const sb = await formatVolume(d, { blockSize: B, logBlocks });
    const { journal } = await JournalWriter.open(d);
    const models: Model[] = [new Map()];
    const homes = [[3, 4, 9], [4, 10], [0, 3, 200]];
    for (let i = 0; i < homes.length; i++) {
      const blocks = images(i + 1, homes[i]);
      await journal.appendDelta(i + 1, blocks);
      const m = new Map(models[i]);
      apply(m, blocks);
      models.push(m);
    }
    await journal.close();
    await closeDevice(d);
    return { models, sb };
  }

  it('G5: replay writes exactly the committed blocks home, then checkpoints; a second replay does nothing', async () => {
    const { models, sb } = await threeCommittedDeltas();
    const d = await device();
    assert.ok(!(await dataArea(d, sb)).equals(expected(models[3], sb)), 'nothing is home before replay');
    const { report, superblock } = await replayJournal(d);
    assert.deepEqual(report.deltas.map((x) => [x.delta, x.homes]), [[1, [3, 4, 9]], [2, [4, 10]], [3, [0, 3, 200]]]);
    assert.equal(report.stop.kind, 'end');
    assert.ok((await dataArea(d, sb)).equals(expected(models[3], sb)));
    assert.equal(superblock.checkpointDelta, 3);
    assert.equal(superblock.replayPosition, report.endPosition);
    assert.deepEqual((await readSuperblock(d)).superblock, superblock);
    const again = await replayJournal(d);
    assert.equal(again.report.deltas.length, 0);
    assert.deepEqual(again.superblock, superblock);
  });

  it('check (dry run) reports what replay would do and writes nothing', async () => {
    await threeCommittedDeltas();
    const before = await fileHash('vol.img');
    const d = await device();
    const report = await inspectJournal(d);
    assert.deepEqual(report.deltas.map((x) => x.delta), [1, 2, 3]);
    assert.equal(report.lastDelta, 3);
    await closeDevice(d);
    assert.equal(await fileHash('vol.img'), before);
  });

  it('a read-only open replays in memory: home → newest image, writing nothing', async () => {
    const { models } = await threeCommittedDeltas();
    const before = await fileHash('vol.img');
    const d = await device('vol.img', { readOnly: true });
    await assert.rejects(replayJournal(d), { code: 'ERR_READ_ONLY', message: /replay it in memory, or open it writable/ });
    const { report, blocks } = await replayInMemory(d);
    assert.equal(report.lastDelta, 3);
    assert.deepEqual([...blocks.keys()].sort((a, b) => a - b), [...models[3].keys()].sort((a, b) => a - b));
    for (const [home, image] of models[3]) assert.ok(Buffer.from(blocks.get(home)!).equals(image), `home ${home}`);
    await closeDevice(d);
    assert.equal(await fileHash('vol.img'), before);
  });

  describe('G5: a torn or damaged delta is not replayed, nor anything after it', () => {
    /** Where delta 2's records lie: descriptor at p, images at p+1.., commit after them. */
    async function delta2(): Promise<{ sb: Superblock; models: Model[]; p: number; count: number }> {
      const { models, sb } = await threeCommittedDeltas();
      const d = await device();
      const report = await inspectJournal(d);
      await closeDevice(d);
      const entry = report.deltas[1];
      assert.equal(descriptorBlocks(entry.homes.length, B), 1);
      return { sb, models, p: entry.position, count: entry.homes.length };
    }

    const cases: [string, (sb: Superblock, p: number, count: number) => [number, (b: Buffer) => void], RegExp][] = [
      ['descriptor without commit record', (sb, p, n) => [logOffset(sb, p + 1 + n), (b) => b.fill(0)], /commit record of delta 2 .* is missing/],
      ['a bit flipped in an image', (sb, p) => [logOffset(sb, p + 2), (b) => (b[300] ^= 0x20)], /image 1 \(home block 10\) of delta 2 .* fails its checksum/],
      ['a truncated image (its last sectors never written)', (sb, p) => [logOffset(sb, p + 1), (b) => b.fill(0, 256)], /image 0 \(home block 4\) of delta 2/],
      ['a bit flipped in the commit record', (sb, p, n) => [logOffset(sb, p + 1 + n), (b) => (b[26] ^= 1)], /commit record of delta 2 .* fails its checksum/],
      ['a bit flipped in the descriptor', (sb, p) => [logOffset(sb, p), (b) => (b[50] ^= 0x80)], /descriptor at log position \d+ fails its checksum/],
    ];
    for (const [name, where, reason] of cases) {
      it(name, async () => {
        const { sb, models, p, count } = await delta2();
        const d = await device();
        const [offset, mutate] = where(sb, p, count);
        await patch(d, offset, mutate);
        const { report, superblock } = await replayJournal(d);
        assert.deepEqual(report.deltas.map((x) => x.delta), [1]);
        assert.equal(report.stop.kind, 'torn');
        assert.equal(report.stop.position, p);
        assert.match(report.stop.reason, reason);
        assert.equal(superblock.checkpointDelta, 1);
        assert.ok((await dataArea(d, sb)).equals(expected(models[1], sb)), 'the volume holds the state after delta 1');
      });
    }
  });

  it('replay is idempotent: a crash after any number of home writes, then replay again, gives the same volume', async () => {
    const { models, sb } = await threeCommittedDeltas();
    const homeWrites = 7; // requests: {3,4} {9}, {4} {10}, {0} {3} {200}
    for (let k = 0; k <= homeWrites; k++) {
      const name = `crash-${k}.img`;
      await copyFile(join(dir, 'vol.img'), join(dir, name));
      const d = await device(name);
      const crashing = new CrashAfterWrites(d, sb.dataStart * B, k);
      if (k < homeWrites) await assert.rejects(replayJournal(crashing), /EIO/);
      else await replayJournal(crashing);
      const { report } = await replayJournal(d);
      assert.equal(report.lastDelta, 3);
      assert.ok((await dataArea(d, sb)).equals(expected(models[3], sb)), `crash after ${k} home writes`);
      await closeDevice(d);
    }
  });

  it('records of a history that replay cut short are never taken for new ones, even where the new history lines up with them', async () => {
    // Ten one-block deltas (three log blocks each) reach the log; then delta 4's image rots.
    const d = await device();
    const sb = await formatVolume(d, { blockSize: B, logBlocks: 64 });
    const first = await JournalWriter.open(d);
    for (let delta = 1; delta <= 10; delta++) await first.journal.appendDelta(delta, images(delta, [delta]));
    await first.journal.close();
    const imageOf4 = sb.replayPosition + 3 * 3 + 1;
    await patch(d, logOffset(sb, imageOf4), (bytes) => (bytes[7] ^= 0x01));

    // Replay stops at delta 4 (G5: nothing after a damaged delta). The volume goes on: two new
    // one-block deltas take the places of the old deltas 4 and 5, and it stops before a checkpoint.
    const second = await JournalWriter.open(d);
    assert.deepEqual(second.report.deltas.map((r) => r.delta), [1, 2, 3]);
    assert.equal(second.report.stop.kind, 'torn');
    const next = second.journal.lastDurableDelta + 1;
    await second.journal.appendDelta(next, images(next, [100]));
    await second.journal.appendDelta(next + 1, images(next + 1, [101]));
    await second.journal.close();

    // The next replay finds the two new deltas and stops there: the old deltas 6 to 10 that follow
    // in the log, intact and numbered above the new ones' predecessors, are not of this history.
    const report = await inspectJournal(d);
    assert.deepEqual(report.deltas.map((r) => r.delta), [next, next + 1]);
    assert.deepEqual(report.deltas.map((r) => r.homes), [[100], [101]]);
  });

  it('the ring wraps over many laps and records of earlier laps are never replayed', async () => {
    const d = await device();
    const sb = await formatVolume(d, { blockSize: B, logBlocks: 16 });
    const { journal } = await JournalWriter.open(d);
    const model: Model = new Map();
    // 2 images a delta: 4 log blocks, so every lap puts its records in the same ring blocks.
    for (let delta = 1; delta <= 40; delta++) {
      const blocks = images(delta, [delta % 7, 7 + (delta % 5)]);
      await journal.appendDelta(delta, blocks);
      apply(model, blocks);
      if (delta <= 38) {
        await journal.writeHome(blocks);
        await journal.checkpoint(delta);
      }
    }
    await journal.close();
    await closeDevice(d);
    const reopened = await device();
    const { report } = await replayJournal(reopened);
    assert.deepEqual(report.deltas.map((x) => x.delta), [39, 40], 'only the deltas after the checkpoint');
    assert.ok(report.deltas[0].position > 16 * 8, 'the ring went round more than eight times');
    assert.match(report.stop.reason, /stale one from position \d+ \(an earlier lap of the ring\)/);
    assert.ok((await dataArea(reopened, sb)).equals(expected(model, sb)));
  });

  it('G5 (property): any run of appends, home writes and checkpoints, stopped with deltas not yet at home, replays to its last committed delta', async () => {
    const step = fc.record({
      homes: fc.uniqueArray(fc.integer({ min: 0, max: 40 }), { maxLength: 9 }),
      home: fc.boolean(),
      checkpoint: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 25 }), fc.integer({ min: 12, max: 40 }), async (steps, logBlocks) => {
        const d = await Device.open(join(dir, 'prop.img'), { size: SIZE });
        try {
          const sb = await formatVolume(d, { blockSize: B, logBlocks, overwrite: true });
          await d.run([{ op: 'write', offset: sb.dataStart * B, buffers: [zeros(sb)] }]);
          const { journal } = await JournalWriter.open(d);
          const model: Model = new Map();
          let homeDone = 0;
          journal.onPressure = () => void journal.checkpoint(homeDone);
          const pending: JournalBlock[][] = [];
          const homeAll = async (upto: number): Promise<void> => {
            for (const p of pending.splice(0)) await journal.writeHome(p);
            homeDone = upto;
          };
          for (let i = 0; i < steps.length; i++) {
            const blocks = images(i + 1, steps[i].homes);
            // A pipeline that keeps up: when this delta must wait for space, every earlier one is at home, so a checkpoint frees it.
            if (journal.space().free < logBlocksFor(blocks.length, B)) await homeAll(i);
            await journal.appendDelta(i + 1, blocks);
            apply(model, blocks);
            pending.push(blocks);
            if (steps[i].home) {
              await homeAll(i + 1);
              if (steps[i].checkpoint) await journal.checkpoint(homeDone);
            }
          }
          await journal.close();
          const { report } = await replayJournal(d);
          assert.equal(report.lastDelta, steps.length);
          assert.ok((await dataArea(d, sb)).equals(expected(model, sb)));
          for (const s of slabs.splice(0)) s.release();
        } finally {
          await d.close();
        }
      }),
      { numRuns: 40 },
    );
  });

  describe('appendDelta', () => {
    async function fresh(logBlocks = 16): Promise<JournalWriter> {
      const d = await device();
      await formatVolume(d, { blockSize: B, logBlocks });
      return (await JournalWriter.open(d)).journal;
    }

    it('refuses a delta larger than the log, saying so, before any I/O', async () => {
      const journal = await fresh(16);
      assert.equal(journal.maxDeltaBlocks, 14);
      assert.throws(() => journal.checkDeltaSize(5, 15), {
        code: 'ERR_DELTA_TOO_LARGE',
        message: 'delta 5 has 15 blocks and needs 17 log blocks, but the log holds 16 (at most 14 blocks per delta): commit more often, or format the volume with a larger log',
      });
      await assert.rejects(journal.appendDelta(1, images(1, [...Array(15).keys()])), { code: 'ERR_DELTA_TOO_LARGE' });
      await journal.appendDelta(1, images(1, [...Array(14).keys()]));
    });

    it('refuses bad arguments with TypeError/RangeError', async () => {
      const journal = await fresh();
      const [a, b] = images(1, [1, 2]);
      await assert.rejects(journal.appendDelta(0, [a]), { name: 'RangeError', message: /delta must be an integer greater than 0/ });
      await assert.rejects(journal.appendDelta(1.5, [a]), { name: 'RangeError' });
      await assert.rejects(journal.appendDelta(1, [b, a]), { name: 'RangeError', message: /strictly ascending home: blocks\[1\]\.home 1 follows 2/ });
      await assert.rejects(journal.appendDelta(1, [{ home: 1e9, image: a.image }]), { name: 'RangeError', message: /home must be an integer from 0 to/ });
      await assert.rejects(journal.appendDelta(1, [{ home: 1, image: Buffer.alloc(100) }]), { name: 'TypeError', message: /image must be a Uint8Array of 512 bytes/ });
      await assert.rejects(journal.appendDelta(1, null as unknown as JournalBlock[]), { name: 'TypeError' });
      await assert.rejects(journal.checkpoint(3), { name: 'RangeError', message: /cannot checkpoint delta 3: the last delta appended is 0/ });
    });

    it('refuses bad redirected runs with TypeError/RangeError before any I/O, and runs on a version 1 volume', async () => {
      const v2 = await device('v2.img');
      await formatVolume(v2, { blockSize: B, logBlocks: 64, version: 2 });
      const journal = (await JournalWriter.open(v2)).journal;
      const [a, b, c] = images(1, [1, 2, 3]).map((x) => x.image);
      const p = journal.physicalStart;
      const bad: [unknown, string, RegExp][] = [
        [[null], 'TypeError', /redirected\[0\] must be \{ home, images \}/],
        [[{ home: p, images: [] }], 'TypeError', /redirected\[0\]\.images must be a non-empty array/],
        [[{ home: p - 1, images: [a] }], 'RangeError', /redirected\[0\] must lie in blocks/],
        [[{ home: journal.homeBlocks - 1, images: [a, b] }], 'RangeError', /redirected\[0\] must lie in blocks/],
        [[{ home: p + 4, images: [a, b] }, { home: p + 5, images: [c] }], 'RangeError', /sorted by home and apart: redirected\[1\] starts at/],
        [[{ home: p, images: [a, Buffer.alloc(100)] }], 'TypeError', /redirected\[0\]\.images\[1\] must be a Uint8Array of 512 bytes/],
        [[{ home: p, images: [Buffer.alloc(768)] }], 'TypeError', /redirected\[0\]\.images\[0\] must be a Uint8Array of 512 bytes \(or of whole blocks, joined\)/],
        [[{ home: journal.homeBlocks - 2, images: [Buffer.alloc(3 * B)] }], 'RangeError', /redirected\[0\] must lie in blocks .*: it has 3 block\(s\)/],
      ];
      for (const [runs, name, message] of bad) await assert.rejects(journal.appendDelta(1, [], runs as JournalRun[]), { name, message });
      // Nothing was appended: delta 1 is still the next one, and good runs go through.
      await journal.appendDelta(1, [], [{ home: p, images: [a, b] }, { home: p + 2, images: [c] }]);

      const d = await device('v1.img');
      await formatVolume(d, { blockSize: B, logBlocks: 64, version: 1 });
      const v1 = (await JournalWriter.open(d)).journal;
      await assert.rejects(v1.appendDelta(1, [], [{ home: 10, images: [a] }]), { name: 'RangeError', message: 'only a volume of version 2 redirects blocks' });
    });

    it('waits when the log is full, says so through onPressure, and goes on once a checkpoint frees space', async () => {
      const journal = await fresh(16);
      const pressure: unknown[] = [];
      journal.onPressure = (p) => pressure.push(p);
      const d1 = images(1, [1, 2, 3, 4]), d2 = images(2, [5, 6, 7, 8]), d3 = images(3, [9, 10, 11]);
      await journal.appendDelta(1, d1);
      await journal.appendDelta(2, d2);
      assert.deepEqual(journal.space(), { capacity: 16, used: 12, free: 4, wanted: 0 });
      let done = false;
      const third = journal.appendDelta(3, d3).then(() => (done = true));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(done, false, 'the append waits for log space');
      assert.deepEqual(pressure, [{ delta: 3, needed: 5, free: 4, checkpointable: 2 }]);
      assert.equal(journal.space().wanted, 5);
      await journal.writeHome(d1);
      await journal.checkpoint(1);
      await third;
      assert.deepEqual(journal.space(), { capacity: 16, used: 11, free: 5, wanted: 0 });
      assert.equal(journal.checkpointedDelta, 1);
      assert.equal(journal.lastDurableDelta, 3);
    });

    it('G6: a failed flush fails that delta with the system error, and every later one', async () => {
      const d = await Device.open(join(dir, 'flush.img'), { size: 2 << 20 });
      open.push(d);
      await formatVolume(d, { blockSize: B, logBlocks: 1100 });
      const failing = new FailingFlush(d);
      const journal = new JournalWriter(failing, (await readSuperblock(d)).superblock);
      // More buffers than one request takes: two requests and a flush (a one-request delta is
      // written with RWF_DSYNC instead, and a failure there is the write's). The images lie in
      // memory in reverse order, so that no two join into one buffer.
      const many = images(1, Array.from({ length: 1030 }, (_, i) => i));
      const scattered = many.map((block, i) => ({ home: block.home, image: many[many.length - 1 - i].image }));
      await assert.rejects(journal.appendDelta(1, scattered), { code: 'EIO', syscall: 'fdatasync' });
      await assert.rejects(journal.appendDelta(2, images(2, [1])), { code: 'ERR_JOURNAL_FAILED', message: /failed \(EIO: .*reopen the volume to replay/ });
      await assert.rejects(journal.checkpoint(1), { code: 'ERR_JOURNAL_FAILED' });
      assert.equal(journal.lastDurableDelta, 0);
      // Delta 1's writes completed (only the flush failed), so its records are in the file and the
      // walk finds it: never acknowledged, which G5 allows (D ≥ 0, the last acknowledged). Delta 2
      // was refused before any write, so nothing follows it.
      assert.equal((await inspectJournal(d)).lastDelta, 1);
    });
  });
});

function zeros(sb: Superblock): Uint8Array {
  const slab = allocBlocks(sb.blockSize, sb.blockCount);
  return Buffer.from(slab.memory, 0, sb.blockCount * sb.blockSize);
}

/** Lets `allowed` write requests at or past `from` (the data area) through, then fails the rest with EIO: a crash mid-replay. */
class CrashAfterWrites implements BlockIo {
  private left: number;
  constructor(private readonly inner: BlockIo, private readonly from: number, allowed: number) {
    this.left = allowed;
  }
  get path(): string { return this.inner.path; }
  get geometry() { return this.inner.geometry; }
  submit(requests: readonly IoRequest[]): Promise<IoResult[]> {
    return this.inner.submit(requests);
  }
  async run(requests: readonly IoRequest[]): Promise<void> {
    for (const r of requests) {
      if (r.op === 'write' && r.offset >= this.from) {
        if (this.left <= 0) throw systemError(-5, 'pwritev', this.inner.path, 'crash');
        this.left--;
      }
      await this.inner.run([r]);
    }
  }
  flush(): Promise<void> { return this.inner.flush(); }
  close(): Promise<void> { return this.inner.close(); }
}

/** A device whose flush fails with EIO. */
class FailingFlush implements BlockIo {
  constructor(private readonly inner: BlockIo) {}
  get path(): string { return this.inner.path; }
  get geometry() { return this.inner.geometry; }
  submit(requests: readonly IoRequest[]): Promise<IoResult[]> { return this.inner.submit(requests); }
  run(requests: readonly IoRequest[]): Promise<void> { return this.inner.run(requests); }
  flush(): Promise<void> { return Promise.reject(systemError(-5, 'fdatasync', this.inner.path)); }
  close(): Promise<void> { return this.inner.close(); }
}
