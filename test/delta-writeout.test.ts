import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { Cache } from '../src/cache/cache';
import type { Mapping } from '../src/cache/mapping';
import { Change } from '../src/delta/change';
import { slotCountFor } from '../src/delta/number';
import { Deltas } from '../src/delta/transition';
import type { DirtyBlock, DirtyBlockList, DirtyRun, JournalStage, MetadataDirty, WritePlan } from '../src/delta/writeout';
import { Device } from '../src/io/device';
import { FaultDevice } from './support/fault-device';
import { inChange } from './support/in-change';
import { TempDir } from './support/temp';
import { fileBytes, realVolumesPerTest, settles, until } from './support/volumes';

// The writeout of a closed delta (writeout.ts), in both modes, on a real
// Device (O_DIRECT on a temp file). Ordered mode runs under a Volume; the
// FaultDevice in front of the Device only counts and holds requests. With a
// journal, the stage the writeout talks to is a recorder: it keeps what the
// writeout asked of it, in order, and does the home writes on the real
// Device; its log can be held to catch a delta between its log and its home.

const BLOCK = 4096;

function pattern(value: number, size = BLOCK): Buffer {
  return Buffer.alloc(size, value);
}

describe('the writeout of a delta, ordered mode', () => {
  const volumes = realVolumesPerTest();

  it('sorts a delta\'s blocks by home before it writes: blocks of a file mapped in reverse go down as one run', async () => {
    const { vol, device, path } = await volumes.open(1 << 20, { readahead: 0 });
    // File block i lives at volume block 20 - i: dirtied in file order, the homes come descending.
    const file = vol.createMapping({ map: (block) => 20 - block, blockCount: 8 });
    await vol.change(async (tx) => {
      for (let b = 0; b < 4; b++) (await tx.overwrite(b, file)).fill(0x40 + b);
    });
    const writes = device.writes;
    const flushes = device.flushes;
    assert.equal(await vol.commit(), 1);
    assert.equal(device.writes - writes, 1, 'homes 17..20 are one contiguous run: one write request');
    assert.equal(device.flushes - flushes, 0, 'one run is written with RWF_DSYNC, no flush');
    for (let b = 0; b < 4; b++) assert.deepEqual(fileBytes(path, (20 - b) * BLOCK, BLOCK), pattern(0x40 + b), `file block ${b} at home ${20 - b}`);
  });

  it('refuses a delta in which two dirty blocks map to one home (ERR_BLOCK_ALIASED), and writes none of it', async () => {
    const { vol, path } = await volumes.open(1 << 20, { readahead: 0 });
    const file = vol.createMapping({ map: () => 7, blockCount: 4 });
    await vol.change(async (tx) => {
      (await tx.overwrite(3)).fill(3);
      (await tx.overwrite(0, file)).fill(0xa0);
      (await tx.overwrite(7)).fill(0x77);
    });
    await assert.rejects(vol.commit(), { code: 'ERR_BLOCK_ALIASED', message: /delta 1 map to physical block 7/ });
    assert.deepEqual(fileBytes(path, 7 * BLOCK, BLOCK), pattern(0), 'block 7 was not written');
    assert.deepEqual(fileBytes(path, 3 * BLOCK, BLOCK), pattern(0), 'nor the rest of the delta');
  });

  it('a dirty block its block map leaves a hole fails the delta (ERR_UNMAPPED_BLOCK) with the block and mapping named', async () => {
    const { vol } = await volumes.open(1 << 20, { readahead: 0 });
    let mapped = true;
    const file = vol.createMapping({ map: (block) => (mapped ? 30 + block : -1), blockCount: 4 });
    await vol.change(async (tx) => (await tx.overwrite(2, file)).fill(1));
    mapped = false;
    await assert.rejects(vol.commit(), { code: 'ERR_UNMAPPED_BLOCK', message: new RegExp(`block 2 of mapping ${file.id} is dirty`) });
  });

  for (const order of ['ascending', 'descending'] as const) {
    it(`a delta dirtied in ${order} order: every block at its home, runs cut at 1 MiB and at gaps, across slabs and partial pages`, async () => {
      const blockSize = 512;
      const { vol, device, path } = await volumes.open(8 << 20, { blockSize, readahead: 0 });
      // 5,000 consecutive blocks (2.5 MB: cut at 1 MiB; a slab of page memory is 2 MiB, so their
      // memory breaks where the run does not), then 1,000 with every 7th left out (runs of 6, pages half dirty).
      const blocks: number[] = [];
      for (let b = 0; b < 5000; b++) blocks.push(b);
      for (let b = 6000; b < 7000; b++) if (b % 7 !== 0) blocks.push(b);
      if (order === 'descending') blocks.reverse();
      const image = (b: number): Buffer => {
        const out = pattern(b & 0xff, blockSize);
        out.writeUInt32LE(b, 0);
        return out;
      };
      await vol.change(async (tx) => {
        for (const b of blocks) (await tx.overwrite(b)).set(image(b));
      });
      const writes = device.writes;
      assert.equal(await vol.commit(), 1);
      const runs = 3 + Math.ceil(1000 / 7);
      assert.equal(device.writes - writes, runs, 'one request per MiB of the long run, one per run of the gapped stretch');
      assert.equal(vol.stats().bytesWritten, blocks.length * blockSize);
      const file = fileBytes(path, 0, 7000 * blockSize);
      for (let b = 0; b < 7000; b++) {
        const expected = b < 5000 || (b >= 6000 && b % 7 !== 0) ? image(b) : pattern(0, blockSize);
        assert.deepEqual(file.subarray(b * blockSize, (b + 1) * blockSize), expected, `block ${b}`);
      }
    });
  }

  for (const blockSize of [1024, 512]) {
    it(`G1 with ${4096 / blockSize} blocks per page, on pages past the first: each delta writes its own image of each block at its own offset`, async () => {
      const { vol, device, path } = await volumes.open(1 << 20, { blockSize, readahead: 0 });
      const perPage = 4096 / blockSize;
      // Pages 0 to 3 cached and dirty in delta 1 (frames 0 to 3); one block of each.
      const blocks = [1, perPage + 2, 2 * perPage + 3, 3 * perPage + 1];
      await vol.change(async (tx) => {
        for (const [k, b] of blocks.entries()) (await tx.write(b)).fill(0x10 + k);
      });
      const release = device.hold();
      const first = vol.commit();
      await until(() => device.heldRequests() > 0, 'delta 1 writing');
      // Page 2 is under writeout: writing its block 3 and a neighbour forks it.
      const forked = 2 * perPage + 3;
      await vol.change(async (tx) => {
        (await tx.write(forked)).fill(0x21);
        (await tx.write(forked - 1)).fill(0x22);
      });
      assert.equal(vol.stats().forks, 1);
      release();
      assert.equal(await first, 1);
      for (const [k, b] of blocks.entries()) assert.deepEqual(fileBytes(path, b * blockSize, blockSize), pattern(0x10 + k, blockSize), `delta 1's block ${b}`);
      assert.deepEqual(fileBytes(path, (forked - 1) * blockSize, blockSize), pattern(0, blockSize), 'the neighbour is not in delta 1');
      const before = vol.stats().bytesWritten;
      assert.equal(await vol.commit(), 2);
      assert.equal(vol.stats().bytesWritten - before, 2 * blockSize, 'delta 2 is the forked block and its neighbour');
      assert.deepEqual(fileBytes(path, forked * blockSize, blockSize), pattern(0x21, blockSize));
      assert.deepEqual(fileBytes(path, (forked - 1) * blockSize, blockSize), pattern(0x22, blockSize));
      assert.deepEqual(await vol.read(forked), pattern(0x21, blockSize));
    });
  }
});

interface StageCall {
  readonly call: 'checkDeltaSize' | 'plan' | 'log' | 'writeHome' | 'homeWritten';
  readonly delta?: number;
  readonly homes?: number[];
  readonly redirected?: number[];
}

/**
 * A JournalStage that records what the writeout asks of it. Its log keeps
 * copies of the images; its home writes go to the real device. `holdLog`
 * keeps the next log append from returning until it is let go. `split`, if
 * set, makes a plan: the blocks whose home it names are redirected.
 */
class RecordingStage implements JournalStage {
  readonly calls: StageCall[] = [];
  readonly logged = new Map<number, Buffer>();
  split: ((home: number) => boolean) | undefined;
  /** Called by the plan, in the delta being written (metadata). */
  onPlan: ((dirty: MetadataDirty) => Promise<void>) | undefined;
  private logGate: Promise<void> | undefined;

  constructor(private readonly device: Device, private readonly blockSize: number) {}

  holdLog(): () => void {
    let letGo!: () => void;
    this.logGate = new Promise<void>((resolve) => (letGo = resolve));
    return () => {
      this.logGate = undefined;
      letGo();
    };
  }

  checkDeltaSize(delta: number, count: number, redirected = 0): void {
    this.calls.push({ call: 'checkDeltaSize', delta, homes: [count, redirected] });
  }

  get plan(): JournalStage['plan'] {
    if (this.split === undefined) return undefined;
    const split = this.split;
    return async (delta: number, list: DirtyBlockList, dirty: MetadataDirty): Promise<WritePlan> => {
      // The list's images, one view per block and joined, must name the same memory.
      const blocks = Array.from({ length: list.length }, (_, i) => ({ home: list.home(i), image: list.image(i) }));
      assert.deepEqual(
        list.images(0, list.length).flatMap((v) => Array.from({ length: v.byteLength / this.blockSize }, (_, k) => v.byteOffset + k * this.blockSize)),
        blocks.map((b) => b.image.byteOffset),
      );
      this.calls.push({ call: 'plan', delta, homes: blocks.map((b) => b.home) });
      if (this.onPlan) await this.onPlan(dirty);
      // Each redirected block a run of its own: the writeout must count runs' blocks, not runs.
      const redirected = blocks.filter((b) => split(b.home)).map((b) => ({ home: b.home, images: [b.image] }));
      return { logged: blocks.filter((b) => !split(b.home)), redirected };
    };
  }

  async log(delta: number, blocks: readonly DirtyBlock[], redirected: readonly DirtyRun[] = []): Promise<void> {
    // A run's images may be joined (several blocks in one view): one entry per block.
    const runBlocks = redirected.flatMap((run) => {
      const out: DirtyBlock[] = [];
      let home = run.home;
      for (const image of run.images) {
        for (let at = 0; at < image.byteLength; at += this.blockSize) out.push({ home: home++, image: image.subarray(at, at + this.blockSize) });
      }
      return out;
    });
    this.calls.push({ call: 'log', delta, homes: blocks.map((b) => b.home), redirected: runBlocks.map((b) => b.home) });
    for (const b of [...blocks, ...runBlocks]) this.logged.set(b.home, Buffer.from(b.image));
    const gate = this.logGate;
    if (gate) await gate;
  }

  async writeHome(blocks: readonly DirtyBlock[]): Promise<void> {
    this.calls.push({ call: 'writeHome', homes: blocks.map((b) => b.home) });
    await this.device.run(blocks.map((b) => ({ op: 'write' as const, offset: b.home * this.blockSize, buffers: [b.image] })));
  }

  homeWritten(delta: number): void {
    this.calls.push({ call: 'homeWritten', delta });
  }
}

describe('the writeout of a delta, with a journal (the stage it talks to recorded)', () => {
  let temp: TempDir;
  let device: Device;
  let cache: Cache;
  const opened: { cache: Cache; deltas: Deltas }[] = [];
  beforeEach(() => {
    temp = new TempDir();
  });
  afterEach(async () => {
    for (const o of opened.splice(0)) {
      await o.deltas.drained();
      o.cache.release();
    }
    await device?.close().catch(() => undefined);
    temp.remove();
  });

  async function setup(maxDeltas = 2): Promise<{ deltas: Deltas; stage: RecordingStage; path: string; change: (fn: (tx: Change) => Promise<void>) => Promise<void> }> {
    const path = temp.file();
    device = await Device.open(path, { size: 1 << 20, direct: true });
    const stage = new RecordingStage(device, BLOCK);
    cache = new Cache({ device, pageSize: BLOCK, blockSize: BLOCK, cacheSize: 64 * BLOCK, slotCount: slotCountFor(maxDeltas), whenFull: () => deltas.whenWritten() });
    const deltas: Deltas = new Deltas({ cache, maxDeltas, fork: true, highWater: 1 << 20, firstDelta: 1, journal: stage });
    opened.push({ cache, deltas });
    const change = (fn: (tx: Change) => Promise<void>): Promise<void> => inChange(deltas, fn);
    return { deltas, stage, path, change };
  }

  it('a delta goes to the log sorted by home, commit resolves once it is logged, and its home writes come after; the counters count it once', async () => {
    const { deltas, stage, path, change } = await setup();
    await change(async (tx) => {
      for (const b of [9, 3, 5]) (await tx.write(b)).fill(b);
    });
    const release = stage.holdLog();
    const started = performance.now();
    const committed = deltas.commit();
    await until(() => stage.calls.some((c) => c.call === 'log'), 'delta 1 logging');
    assert.equal(await settles(committed), false, 'not durable before its log append returns');
    assert.equal(deltas.counters.deltasCommitted, 0);
    assert.deepEqual(fileBytes(path, 3 * BLOCK, BLOCK), pattern(0), 'no home write before the log');
    release();
    assert.equal(await committed, 1);
    await deltas.drained();
    const elapsed = performance.now() - started;
    assert.deepEqual(stage.calls, [
      { call: 'checkDeltaSize', delta: 1, homes: [3, 0] },
      { call: 'log', delta: 1, homes: [3, 5, 9], redirected: [] },
      { call: 'writeHome', homes: [3, 5, 9] },
      { call: 'homeWritten', delta: 1 },
    ]);
    for (const b of [3, 5, 9]) {
      assert.deepEqual(stage.logged.get(b), pattern(b), `the log holds block ${b}'s image`);
      assert.deepEqual(fileBytes(path, b * BLOCK, BLOCK), pattern(b), `block ${b} is home`);
    }
    assert.equal(deltas.counters.deltasCommitted, 1);
    assert.equal(deltas.counters.bytesWritten, 3 * BLOCK, 'counted once, at home');
    assert.ok(deltas.counters.writeoutMs >= 0 && deltas.counters.writeoutMs <= elapsed, `writeoutMs ${deltas.counters.writeoutMs} is part of the ${elapsed} ms the commit took`);
    assert.equal(cache.pagesDirty, 0, 'its blocks are clean once home');
  });

  it('the plan splits a delta: redirected blocks go to the log call beside the logged ones and never home; a delta all redirected writes nothing home', async () => {
    const { deltas, stage, path, change } = await setup();
    stage.split = (home) => home >= 10;
    await change(async (tx) => {
      for (const b of [12, 2, 11, 4, 10]) (await tx.write(b)).fill(b);
    });
    assert.equal(await deltas.commit(), 1);
    await deltas.drained();
    assert.deepEqual(stage.calls, [
      { call: 'plan', delta: 1, homes: [2, 4, 10, 11, 12] },
      { call: 'checkDeltaSize', delta: 1, homes: [2, 3] },
      { call: 'log', delta: 1, homes: [2, 4], redirected: [10, 11, 12] },
      { call: 'writeHome', homes: [2, 4] },
      { call: 'homeWritten', delta: 1 },
    ]);
    assert.equal(deltas.counters.bytesWritten, 5 * BLOCK, 'each block counted once, logged or redirected');
    assert.deepEqual(fileBytes(path, 11 * BLOCK, BLOCK), pattern(0), 'a redirected block is not written at its old home');

    stage.calls.length = 0;
    await change(async (tx) => {
      for (const b of [20, 21]) (await tx.write(b)).fill(b);
    });
    assert.equal(await deltas.commit(), 2);
    await deltas.drained();
    assert.deepEqual(stage.calls, [
      { call: 'plan', delta: 2, homes: [20, 21] },
      { call: 'checkDeltaSize', delta: 2, homes: [0, 2] },
      { call: 'log', delta: 2, homes: [], redirected: [20, 21] },
      { call: 'homeWritten', delta: 2 },
    ]);
    assert.equal(deltas.counters.bytesWritten, 7 * BLOCK);
    assert.equal(deltas.counters.deltasCommitted, 2);
  });

  it('a delta dirtied in ascending order reaches the plan as its dirty list: forked pages, gaps and an internal mapping beside it, every block logged or redirected with its own delta\'s image', async () => {
    const { deltas, stage, path, change } = await setup();
    const meta: Mapping = cache.createMapping(undefined, 64, true);
    stage.split = (home) => home % 2 === 0;
    stage.onPlan = async (dirty) => void (await dirty(meta, 7, true)).fill(0xee);
    const ascending = [1, 2, 3, 5, 6, 9, 12, 13];
    await change(async (tx) => {
      for (const b of ascending) (await tx.write(b)).fill(b);
    });
    const release = stage.holdLog();
    const first = deltas.commit();
    await until(() => stage.calls.some((c) => c.call === 'log'), 'delta 1 logging');
    // Delta 1's pages are being written: rewriting them forks them, and delta 2's list holds the copies.
    await change(async (tx) => {
      for (const b of [2, 3, 6, 13]) (await tx.write(b)).fill(b + 100);
    });
    const second = deltas.commit();
    release();
    assert.equal(await first, 1);
    assert.equal(await second, 2);
    await deltas.drained();
    assert.deepEqual(
      stage.calls.filter((c) => c.call === 'plan' || c.call === 'log'),
      [
        { call: 'plan', delta: 1, homes: ascending },
        { call: 'log', delta: 1, homes: [1, 3, 5, 9, 13], redirected: [2, 6, 12] },
        { call: 'plan', delta: 2, homes: [2, 3, 6, 13] },
        { call: 'log', delta: 2, homes: [3, 13], redirected: [2, 6] },
      ],
    );
    assert.ok(deltas.counters.forks >= 4, `the rewrites forked (${deltas.counters.forks})`);
    for (const b of [3, 13]) assert.deepEqual(fileBytes(path, b * BLOCK, BLOCK), pattern(b + 100), `block ${b} is home with delta 2's image`);
    for (const b of [1, 5, 9]) assert.deepEqual(fileBytes(path, b * BLOCK, BLOCK), pattern(b), `block ${b} is home with delta 1's image`);
    assert.deepEqual(stage.logged.get(2), pattern(102), 'the redirected block carries the later image');
  });

  it('a block the plan dirties in an internal mapping joins the delta being written, is not collected as data, and is clean once the delta is home', async () => {
    const { deltas, stage, change } = await setup();
    const meta: Mapping = cache.createMapping(undefined, 64, true);
    stage.split = () => false;
    stage.onPlan = async (dirty) => {
      const view = await dirty(meta, 40, true);
      view.fill(0xee);
    };
    await change(async (tx) => void (await tx.write(1)).fill(1));
    assert.equal(await deltas.commit(), 1);
    await deltas.drained();
    assert.deepEqual(
      stage.calls.filter((c) => c.call === 'plan' || c.call === 'log'),
      [
        { call: 'plan', delta: 1, homes: [1] },
        { call: 'log', delta: 1, homes: [1], redirected: [] },
      ],
      'the metadata block is the plan\'s to log, not collected with the data',
    );
    assert.equal(cache.pagesDirty, 0, 'the metadata block is clean with the rest of delta 1');
    assert.deepEqual(await cache.copyOut(meta, 40), pattern(0xee), 'and holds what the plan wrote');
    // Delta 2 does not collect it again.
    stage.onPlan = undefined;
    stage.calls.length = 0;
    await change(async (tx) => void (await tx.write(2)).fill(2));
    assert.equal(await deltas.commit(), 2);
    assert.deepEqual(stage.calls.find((c) => c.call === 'log'), { call: 'log', delta: 2, homes: [2], redirected: [] });
  });

  it('delta 2 logs while delta 1 is still logging, but resolves after it, and goes home after delta 1\'s home writes', async () => {
    const { deltas, stage, change } = await setup(2);
    await change(async (tx) => void (await tx.write(1)).fill(1));
    const release = stage.holdLog();
    const first = deltas.commit();
    await until(() => stage.calls.some((c) => c.call === 'log' && c.delta === 1), 'delta 1 logging');
    await change(async (tx) => void (await tx.write(2)).fill(2));
    const second = deltas.commit();
    await until(() => stage.calls.some((c) => c.call === 'log' && c.delta === 2), 'delta 2 logging beside it');
    assert.equal(await settles(second), false, 'delta 2 is logged, delta 1 is not: commit 2 waits');
    assert.equal(deltas.counters.deltasCommitted, 0);
    assert.equal(stage.calls.filter((c) => c.call === 'writeHome').length, 0, 'no home write before delta 1 is logged');
    release();
    assert.deepEqual(await Promise.all([first, second]), [1, 2]);
    await deltas.drained();
    assert.deepEqual(
      stage.calls.filter((c) => c.call !== 'checkDeltaSize' && c.call !== 'log'),
      [
        { call: 'writeHome', homes: [1] },
        { call: 'homeWritten', delta: 1 },
        { call: 'writeHome', homes: [2] },
        { call: 'homeWritten', delta: 2 },
      ],
    );
  });
});
