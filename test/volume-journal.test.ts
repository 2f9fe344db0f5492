import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { Device } from '../src/io/device';
import { systemError } from '../src/io/errors';
import type { BlockIo, IoRequest, IoResult } from '../src/io/request';
import { open, Volume } from '../src/volume';
import { PowerLossDevice } from './support/power-loss-device';
import { seeded } from './support/random';
import { TempDir } from './support/temp';
import { settles, until } from './support/volumes';

/**
 * Journal mode through the public API: formatting and what open refuses,
 * replay on open (in place, and in memory when read-only), commit at log
 * durability with home writes after it, the log's bounds (a delta too large,
 * backpressure), and G5 under power loss for the whole pipeline, forks
 * included.
 */

const MiB = 1 << 20;
const B = 4096;

/** Fills a block with a pattern of (delta, block): every delta's version of every block differs. */
function pattern(buffer: Buffer, delta: number, block: number): void {
  for (let i = 0; i < buffer.length; i += 4) buffer.writeUInt32LE((delta * 2_654_435_761 + block * 40_503 + i) >>> 0, i);
}

async function writeDelta(vol: Volume, delta: number, blocks: readonly number[]): Promise<void> {
  await vol.change(async (tx) => {
    for (const b of blocks) pattern(await tx.write(b), delta, b);
  });
}

function expected(delta: number, block: number): Buffer {
  const b = Buffer.alloc(B);
  pattern(b, delta, block);
  return b;
}

function sha(path: string): string {
  return createHash('sha256').update(fs.readFileSync(path)).digest('hex');
}

/** Holds the writes at or past `from` bytes (the data area: home writes) until released. */
class HomeWriteGate implements BlockIo {
  private gate: Promise<void> | undefined;
  private open_: (() => void) | undefined;
  held = 0;
  constructor(
    readonly inner: BlockIo,
    private readonly from: number,
  ) {}
  get path(): string {
    return this.inner.path;
  }
  get geometry(): BlockIo['geometry'] {
    return this.inner.geometry;
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  flush(): Promise<void> {
    return this.inner.flush();
  }
  hold(): () => void {
    this.gate = new Promise<void>((resolve) => (this.open_ = resolve));
    return () => {
      this.gate = undefined;
      this.open_?.();
    };
  }
  async submit(requests: readonly IoRequest[]): Promise<IoResult[]> {
    if (this.gate && requests.some((r) => r.op === 'write' && r.offset >= this.from)) {
      this.held++;
      await this.gate;
      this.held--;
    }
    return this.inner.submit(requests);
  }
  async run(requests: readonly IoRequest[]): Promise<void> {
    const results = await this.submit(requests);
    for (const r of results) if (r.error) throw r.error;
  }
}

describe('journal mode through the volume', function () {
  this.timeout(120_000);
  let temp: TempDir;
  before(() => (temp = new TempDir()));
  after(() => temp.remove());

  describe('formatting and opening', () => {
    it('formats a new file, keeps its data across close and open, and goes on counting deltas', async () => {
      const path = temp.file();
      let vol = await open(path, { size: 8 * MiB, journal: true });
      assert.equal(vol.journaled, true);
      const log = vol.stats().journal;
      assert.ok(log && log.logBlocks >= 8, 'journal stats present');
      // The data area excludes 2 superblocks and the log.
      assert.equal(vol.blockCount, (8 * MiB) / B - 2 - log.logBlocks);
      await writeDelta(vol, 1, [0, 5, vol.blockCount - 1]);
      const first = await vol.commit();
      await writeDelta(vol, 2, [5]);
      const second = await vol.commit();
      assert.equal(second, first + 1);
      await vol.close();

      vol = await open(path); // journal unset: taken from the superblock
      try {
        assert.equal(vol.journaled, true);
        assert.equal(vol.replayedDeltas, 0, 'close checkpointed everything');
        assert.deepEqual(await vol.read(0), expected(1, 0));
        assert.deepEqual(await vol.read(5), expected(2, 5));
        assert.deepEqual(await vol.read(vol.blockCount - 1), expected(1, vol.blockCount - 1));
        assert.ok(vol.stats().delta > second, `delta numbers go on after ${second}: now ${vol.stats().delta}`);
        await writeDelta(vol, 3, [1]);
        assert.ok((await vol.commit()) > second);
      } finally {
        await vol.close();
      }
    });

    it('the home of block i is past the superblocks and the log: block 0 of the data area is not byte 0', async () => {
      const path = temp.file();
      const vol = await open(path, { size: 4 * MiB, journal: true, logSize: 64 * B });
      await writeDelta(vol, 7, [0]);
      await vol.commit();
      await vol.close();
      const bytes = fs.readFileSync(path);
      assert.equal(bytes.subarray(0, 8).toString('latin1'), 'blkfork\0', 'superblock at byte 0');
      const dataStart = (2 + 64) * B;
      assert.deepEqual(bytes.subarray(dataStart, dataStart + B), expected(7, 0));
    });

    it('refuses options that contradict the volume, naming what it is', async () => {
      const path = temp.file();
      await (await open(path, { size: 4 * MiB, journal: true, blockSize: 4096 })).close();
      await assert.rejects(open(path, { journal: false }), (e: NodeJS.ErrnoException) => {
        assert.equal(e.code, 'ERR_VOLUME_MISMATCH');
        assert.match(e.message, /is a journaled blockfork volume \(block size 4096, \d+ data blocks, a log of \d+ blocks\)/);
        return true;
      });
      await assert.rejects(open(path, { journal: true, blockSize: 512 }), {
        code: 'ERR_VOLUME_MISMATCH',
        message: /block size 4096.*blockSize 512 contradicts it/,
      });
      await assert.rejects(open(path, { format: true, journal: false }), RangeError);
      await assert.rejects(open(path, { journal: true, logSize: 4097 }), RangeError);
      await assert.rejects(open(path, { journal: true, format: 'yes' as unknown as boolean }), TypeError);
    });

    it('never formats an existing file silently: it must be asked with format: true', async () => {
      const path = temp.file();
      fs.writeFileSync(path, Buffer.alloc(4 * MiB, 0xab));
      const before = sha(path);
      await assert.rejects(open(path, { journal: true }), {
        code: 'ERR_NOT_A_VOLUME',
        message: /holds no blockfork volume: open it with format: true/,
      });
      assert.equal(sha(path), before, 'the refused open wrote nothing');
      const vol = await open(path, { journal: true, format: true });
      await writeDelta(vol, 1, [3]);
      await vol.commit();
      await vol.close();
      const again = await open(path, { journal: true });
      assert.deepEqual(await again.read(3), expected(1, 3));
      await again.close();
    });

    it('a read-only open of a file that holds no volume cannot format it', async () => {
      const path = temp.file();
      fs.writeFileSync(path, Buffer.alloc(MiB));
      await assert.rejects(open(path, { journal: true, format: true, readOnly: true }), { code: 'ERR_READ_ONLY' });
    });
  });

  describe('commit and home writes', () => {
    it('commit() resolves once the delta is in the log, before its home writes; a write meanwhile forks', async () => {
      const path = temp.file();
      const first = await open(path, { size: 4 * MiB, journal: true, logSize: 64 * B });
      await first.close();
      const gate = new HomeWriteGate(await Device.open(path), (2 + 64) * B);
      const vol = await Volume.mount(gate, { journal: true });
      try {
        const release = gate.hold();
        await writeDelta(vol, 1, [0, 1]);
        const committed = vol.commit();
        await until(() => gate.held > 0, 'the home writes reach the device');
        assert.equal(await settles(committed), true, 'commit resolved while its home writes are held');
        const number = await committed;
        // The front end goes on: block 0 is dirty in a delta still going home, so writing it forks.
        const forks = vol.stats().forks;
        await writeDelta(vol, 2, [0]);
        assert.equal(vol.stats().forks, forks + 1);
        assert.deepEqual(await vol.read(0), expected(2, 0));
        release();
        assert.ok((await vol.commit()) > number);
      } finally {
        await vol.close();
      }
      // The frozen image went home, then the later one over it.
      const vol2 = await open(path);
      assert.deepEqual(await vol2.read(0), expected(2, 0));
      assert.deepEqual(await vol2.read(1), expected(1, 1));
      await vol2.close();
    });

    it('the lower layer: a logical mapping can be dropped right after its commit, home writes still in flight', async () => {
      const path = temp.file();
      const vol = await open(path, { size: 4 * MiB, journal: true, logSize: 64 * B });
      const file = vol.createMapping({ map: async (logical) => 100 + logical, blockCount: 8 });
      await vol.change(async (tx) => {
        for (let b = 0; b < 8; b++) pattern(await tx.write(b, file), 1, 100 + b);
      });
      await vol.commit();
      await vol.dropMapping(file);
      await assert.rejects(vol.read(0, file), TypeError);
      await vol.close();
      const again = await open(path);
      for (let b = 0; b < 8; b++) assert.deepEqual(await again.read(100 + b), expected(1, 100 + b));
      await again.close();
    });

    it('G6: a home write that fails after its commit resolved fails the volume; later commits reject and nothing goes unhandled', async () => {
      const path = temp.file();
      await (await open(path, { size: 4 * MiB, journal: true, logSize: 64 * B })).close();
      const inner = await Device.open(path);
      const dataStart = (2 + 64) * B;
      const eio = () => systemError(-5, 'pwritev', path);
      const failing: BlockIo = {
        path: inner.path,
        geometry: inner.geometry,
        flush: () => inner.flush(),
        close: () => inner.close(),
        submit: (requests) =>
          requests.some((r) => r.op === 'write' && r.offset >= dataStart)
            ? Promise.resolve(requests.map(() => ({ bytes: 0, error: eio() })))
            : inner.submit(requests),
        run: (requests) => (requests.some((r) => r.op === 'write' && r.offset >= dataStart) ? Promise.reject(eio()) : inner.run(requests)),
      };
      const unhandled: unknown[] = [];
      const record = (reason: unknown): void => void unhandled.push(reason);
      process.on('unhandledRejection', record);
      try {
        const vol = await Volume.mount(failing, { journal: true });
        await writeDelta(vol, 1, [2, 3]);
        assert.equal(await vol.commit(), 1, 'durable in the log: the commit resolves before its home writes');
        await until(() => vol.failure !== undefined, 'the home writes failed');
        await assert.rejects(vol.commit(), { code: 'EIO' });
        await assert.rejects(
          vol.change(async () => undefined),
          { code: 'ERR_VOLUME_FAILED' },
        );
        await vol.close().catch(() => undefined);
        await new Promise((resolve) => setImmediate(resolve));
        assert.deepEqual(unhandled, [], 'no rejection went unhandled');
      } finally {
        process.off('unhandledRejection', record);
      }
    });

    it('replays on open what reached the log but not its home (home writes failed)', async () => {
      const path = temp.file();
      await (await open(path, { size: 4 * MiB, journal: true, logSize: 64 * B })).close();
      const inner = await Device.open(path);
      const gate = new HomeWriteGate(inner, (2 + 64) * B);
      const vol = await Volume.mount(gate, { journal: true });
      gate.hold(); // never released: the home writes never happen, as if the process died
      await writeDelta(vol, 1, [2, 3, 9]);
      await vol.commit();
      await writeDelta(vol, 2, [3]);
      await vol.commit();
      // The process "dies": its device is closed under it (the held writes never reach it), the volume abandoned.
      await inner.close();
      assert.equal(fs.readFileSync(path).subarray((2 + 64 + 3) * B, (2 + 64 + 4) * B).every((b) => b === 0), true, 'nothing is home yet');

      // A read-only open replays in memory and writes nothing.
      const before = sha(path);
      const ro = await open(path, { readOnly: true });
      assert.equal(ro.journaled, true);
      assert.equal(ro.replayedDeltas, 2);
      assert.deepEqual(await ro.read(2), expected(1, 2));
      assert.deepEqual(await ro.read(3), expected(2, 3));
      await assert.rejects(ro.change(() => undefined), { code: 'ERR_READ_ONLY' });
      await ro.close();
      assert.equal(sha(path), before, 'a read-only open wrote nothing');

      // A writable open replays onto the device.
      const again = await open(path);
      try {
        assert.equal(again.replayedDeltas, 2);
        assert.deepEqual(await again.read(2), expected(1, 2));
        assert.deepEqual(await again.read(3), expected(2, 3));
        assert.deepEqual(await again.read(9), expected(1, 9));
      } finally {
        await again.close();
      }
      assert.deepEqual(fs.readFileSync(path).subarray((2 + 64 + 3) * B, (2 + 64 + 4) * B), expected(2, 3), 'replay wrote it home');
    });

    it('a delta the log can never hold fails its commit, naming the log', async () => {
      const path = temp.file();
      const vol = await open(path, { size: 4 * MiB, journal: true, logSize: 16 * B });
      await writeDelta(
        vol,
        1,
        Array.from({ length: 40 }, (_, i) => i),
      );
      await assert.rejects(vol.commit(), { code: 'ERR_DELTA_TOO_LARGE', message: /delta \d+ has 40 blocks.*the log holds 16/ });
      await assert.rejects(vol.change(() => undefined), /ERR_DELTA_TOO_LARGE|delta \d+ has 40 blocks/);
      await vol.close().catch(() => undefined);
    });

    it('a long stream through a small log: transitions start by themselves, checkpoints free the log, and everything lands', async () => {
      const path = temp.file();
      const vol = await open(path, { size: 8 * MiB, journal: true, logSize: 32 * B });
      const blocks = Math.min(vol.blockCount, 600);
      for (let start = 0; start < blocks; start += 8) {
        await writeDelta(vol, 1, Array.from({ length: Math.min(8, blocks - start) }, (_, i) => start + i));
      }
      await vol.commit();
      const stats = vol.stats();
      assert.ok(stats.autoTransitions > 0, 'the log size bounds a delta: transitions started by themselves');
      assert.ok(stats.journal!.checkpoints > 0, 'checkpoints freed log space');
      await vol.close();
      const again = await open(path);
      for (let b = 0; b < blocks; b += 37) assert.deepEqual(await again.read(b), expected(1, b), `block ${b}`);
      await again.close();
    });

    it('backpressure: unawaited commits faster than the log drains wait for checkpoints, and all land', async () => {
      const path = temp.file();
      const vol = await open(path, { size: 8 * MiB, journal: true, logSize: 12 * B, maxDeltas: 4 });
      const commits: Promise<number>[] = [];
      for (let d = 1; d <= 60; d++) {
        await writeDelta(vol, d, [d % 5, 10 + (d % 3)]);
        commits.push(vol.commit());
      }
      const numbers = await Promise.all(commits);
      // In order; commits asked for while the pipeline is full share one delta (group commit).
      for (let i = 1; i < numbers.length; i++) assert.ok([numbers[i - 1], numbers[i - 1] + 1].includes(numbers[i]), `commit ${i}: ${numbers[i - 1]} then ${numbers[i]}`);
      assert.ok(vol.stats().journal!.logFullWaits > 0, 'appends waited for log space');
      await vol.close();
      const again = await open(path);
      for (let b = 0; b < 5; b++) assert.deepEqual(await again.read(b), expected(60 - ((60 - b) % 5), b), `block ${b}`);
      for (let b = 10; b < 13; b++) assert.deepEqual(await again.read(b), expected(60 - ((60 - (b - 10)) % 3), b), `block ${b}`);
      await again.close();
    });
  });

  it('G5 under power loss through the whole pipeline (forks, deltas in flight, checkpoints): every crash state opens as one whole delta ≥ the last acknowledged', async () => {
    const path = temp.file();
    const size = 2 * MiB;
    const logBlocks = 24;
    await (await open(path, { size, journal: true, logSize: logBlocks * B })).close();
    const device = await Device.open(path);
    const recorder = await PowerLossDevice.wrap(device);
    const vol = await Volume.mount(recorder, { journal: true, maxDeltas: 2 });
    const random = seeded(5);
    const hot = 12;
    const model = new Map<number, number>(); // block -> delta of its version
    const stateOf = new Map<string, number>([[stateKey(model), 0]]);
    const acks: Promise<void>[] = [];
    // Round r's change is called after round r-1's commit(), so it lands in the delta that round r's
    // commit closes: blocks carry the round, and the ack names it.
    for (let round = 1; round <= 50; round++) {
      const count = 1 + Math.floor(random() * 5);
      const chosen = new Set<number>();
      while (chosen.size < count) chosen.add(Math.floor(random() * hot));
      await writeDelta(vol, round, [...chosen]);
      for (const b of chosen) model.set(b, round);
      stateOf.set(stateKey(model), round);
      const commit = vol.commit().then(() => recorder.mark('ack', round));
      if (random() < 0.3) await commit;
      else acks.push(commit);
    }
    await Promise.all(acks);
    const forks = vol.stats().forks;
    await vol.close();
    assert.ok(forks > 0, 'the workload forked pages under writeout');

    const points = [...recorder.flushBoundaries(), ...Array.from({ length: 60 }, () => Math.floor(random() * (recorder.events.length + 1)))];
    const crashPath = temp.file();
    const recovered = new Set<number>();
    for (let i = 0; i < points.length; i++) {
      const point = points[i];
      const acked = recorder.lastMark(point, 'ack') ?? 0;
      fs.writeFileSync(crashPath, recorder.crashImage(point, seeded(1000 + i)));
      const after = await open(crashPath);
      const state = new Map<number, number>();
      try {
        for (let b = 0; b < hot; b++) {
          const bytes = await after.read(b);
          if (bytes.every((x) => x === 0)) continue;
          const version = [...stateOf.values()].find((r) => r > 0 && expected(r, b).equals(bytes));
          assert.ok(version !== undefined, `crash point ${point}: block ${b} holds no delta's version of it (torn?)`);
          state.set(b, version);
        }
      } finally {
        await after.close();
      }
      const whole = stateOf.get(stateKey(state));
      assert.ok(whole !== undefined, `crash point ${point} (last acknowledged round ${acked}): the blocks are no whole delta's state`);
      assert.ok(whole >= acked, `crash point ${point}: recovered round ${whole}, older than the acknowledged ${acked}`);
      recovered.add(whole);
    }
    console.log(`      ${points.length} crash states of a ${recorder.events.length}-event run checked (${forks} forks); ${recovered.size} distinct deltas recovered`);
  });
});

function stateKey(state: ReadonlyMap<number, number>): string {
  return [...state.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([b, d]) => `${b}:${d}`)
    .join(',');
}
