import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import fc from 'fast-check';
import { check, examine, type CheckReport } from '../src/cli/check';
import { BlockforkError } from '../src/io/errors';
import { inspectJournal } from '../src/journal/replay';
import { readSuperblock } from '../src/journal/superblock';
import { open, Volume } from '../src/volume';
import { MemoryDevice } from './support/memory-device';
import { PowerLossDevice } from './support/power-loss-device';
import { TempDir } from './support/temp';

/**
 * Format fuzzing: generated damage to a journaled volume that crashed with
 * deltas in its log (superblock copies, descriptors, commit records and
 * block images: bit flips, garbage, zeroed blocks, blocks moved, records
 * from another volume, truncation), then `open` (Volume.mount, as open
 * does) and the check of `blockfork check` (examine) on the same bytes.
 *
 * Whatever the damage:
 * - nothing throws but a BlockforkError whose code and message name what is
 *   wrong (no TypeError from a bug, no read past the device's end);
 * - an open that succeeds holds exactly the state after one whole delta D
 *   of the crashed volume's log, in every data block: so no image that
 *   fails its checksum was replayed, and no image went to a wrong home;
 * - open and check agree: check finds no volume exactly when open refuses
 *   it, and the deltas check says replay would apply are those open applied.
 *
 * Most cases run on in-memory devices (what is under test is the format,
 * not the I/O path); a smaller set runs on real files, through `open` and
 * `check` by path, with O_DIRECT.
 */

const B = 512;
const SIZE = 64 << 10;
const LOG_BLOCKS = 64;
const DATA_START = 2 + LOG_BLOCKS;
const DATA_BLOCKS = SIZE / B - DATA_START;
/** Deltas in the crashed volume's log: few enough that no checkpoint is taken (the log stays under half full). */
const DELTAS = 5;
const CASES = Number(process.env.BLOCKFORK_FUZZ_CASES ?? 10_000);
const FILE_CASES = Number(process.env.BLOCKFORK_FUZZ_FILE_CASES ?? 60);
/** Blocks of metadata and log: where the damage goes (damage to home blocks is data, not format). */
const METADATA_BLOCKS = DATA_START;

/** The blocks delta k writes, and the image of block b in delta k. */
function blocksOf(k: number, salt: number): number[] {
  return [...new Set([(k * 3 + salt) % 8, (k * 5 + 1) % 8, k % 2 === 0 ? 8 + k : (k + salt) % 8])];
}

function imageOf(k: number, block: number, salt: number): Buffer {
  const image = Buffer.alloc(B, ((k * 16 + block + salt * 7) % 251) + 1);
  image.writeUInt32LE(k, 0);
  image.writeUInt32LE(block, 4);
  return image;
}

interface Crashed {
  /** The bytes a power cut leaves: the log holds deltas 1..DELTAS, no home write is durable. */
  readonly bytes: Buffer;
  /** The data area after each of the log's deltas, D = 0..DELTAS (the log's D-th delta, whatever its number). */
  readonly states: readonly Buffer[];
}

/** A journaled volume with DELTAS committed deltas, as a power cut leaves it (memory.durable). */
async function crashedVolume(salt: number): Promise<Crashed> {
  const memory = new MemoryDevice({ size: SIZE });
  const vol = await Volume.mount(memory, { journal: true, format: true, blockSize: B, logSize: LOG_BLOCKS * B, cacheSize: 16 * 4096, highWater: 1 << 30 });
  const states: Buffer[] = [Buffer.alloc(DATA_BLOCKS * B)];
  for (let k = 1; k <= DELTAS; k++) {
    const state = Buffer.from(states[k - 1]);
    await vol.change(async (tx) => {
      for (const b of blocksOf(k, salt)) {
        imageOf(k, b, salt).copy(await tx.write(b));
        imageOf(k, b, salt).copy(state, b * B);
      }
    });
    await vol.commit();
    states.push(state);
  }
  const bytes = Buffer.from(memory.durable);
  await vol.close();
  return { bytes, states };
}

type Damage =
  | { readonly kind: 'flip'; readonly block: number; readonly byte: number; readonly bit: number }
  | { readonly kind: 'garbage'; readonly block: number; readonly bytes: Uint8Array }
  | { readonly kind: 'zero'; readonly block: number }
  | { readonly kind: 'move'; readonly from: number; readonly to: number }
  | { readonly kind: 'foreign'; readonly block: number; readonly count: number }
  | { readonly kind: 'truncate'; readonly sectors: number };

const metadataBlock = fc.nat({ max: METADATA_BLOCKS - 1 });
/** Half the flips land in the first 48 bytes of a block, where every header and its checksum live. */
const byteInBlock = fc.oneof(fc.nat({ max: 47 }), fc.nat({ max: B - 1 }));
const damage: fc.Arbitrary<Damage> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('flip' as const), block: metadataBlock, byte: byteInBlock, bit: fc.nat({ max: 7 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('garbage' as const), block: metadataBlock, bytes: fc.uint8Array({ minLength: 1, maxLength: B }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('zero' as const), block: metadataBlock }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('move' as const), from: metadataBlock, to: metadataBlock }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('foreign' as const), block: metadataBlock, count: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), sectors: fc.integer({ min: 1, max: SIZE / 512 - 1 }) }) },
);

function damaged(base: Buffer, foreign: Buffer, damages: readonly Damage[], metadataBlocks = METADATA_BLOCKS): Buffer {
  let bytes = Buffer.from(base);
  // Damage to blocks a truncation already cut off has nothing to damage.
  const blocks = (): number => Math.floor(bytes.length / B);
  for (const d of damages) {
    if ((d.kind === 'flip' || d.kind === 'garbage' || d.kind === 'zero' || d.kind === 'foreign') && d.block >= blocks()) continue;
    if (d.kind === 'move' && Math.max(d.from, d.to) >= blocks()) continue;
    switch (d.kind) {
      case 'flip':
        bytes[d.block * B + d.byte] ^= 1 << d.bit;
        break;
      case 'garbage':
        Buffer.from(d.bytes).copy(bytes, d.block * B, 0, Math.min(d.bytes.length, bytes.length - d.block * B));
        break;
      case 'zero':
        bytes.fill(0, d.block * B, (d.block + 1) * B);
        break;
      case 'move':
        bytes.copy(bytes, d.to * B, d.from * B, (d.from + 1) * B);
        break;
      case 'foreign':
        foreign.copy(bytes, d.block * B, d.block * B, Math.min(metadataBlocks, blocks(), d.block + d.count) * B);
        break;
      case 'truncate':
        bytes = bytes.subarray(0, Math.min(bytes.length, d.sectors * 512));
        break;
    }
  }
  return bytes;
}

function memoryHolding(bytes: Buffer): MemoryDevice {
  const memory = new MemoryDevice({ size: bytes.length, path: 'fuzzed' });
  bytes.copy(memory.volatile);
  bytes.copy(memory.durable);
  return memory;
}

/** Errors that name what is wrong with a damaged volume. */
const NAMED = /^ERR_(NOT_A_VOLUME|SUPERBLOCK_CORRUPT|GEOMETRY|VOLUME_MISMATCH)$/;

function assertNamed(error: unknown, where: string): BlockforkError {
  if (!(error instanceof BlockforkError) || !NAMED.test(error.code) || error.message.length < 20) {
    throw Object.assign(new Error(`${where}: not an error that names the damage: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`), { cause: error });
  }
  return error;
}

/**
 * Which of the log's deltas' state the data area holds, or -1. Damage that
 * puts another volume's superblock in force (with its records) makes the
 * device that volume, whole: its states count too.
 */
function stateOf(data: Buffer, volumes: readonly Crashed[]): number {
  for (const { states } of volumes) {
    const D = states.findIndex((s) => s.equals(data));
    if (D >= 0) return D;
  }
  return -1;
}

interface Outcome {
  /** The delta whose state open found, or the code it refused with. */
  readonly opened: number | string;
  readonly report: CheckReport;
}

function checkAgreement(outcome: Outcome, where: string): void {
  const { opened, report } = outcome;
  if (typeof opened === 'string') {
    assert.equal(report.volume, null, `${where}: open refused (${opened}) but check found a volume: ${report.verdict}`);
    assert.equal(report.consistent, false);
    assert.ok(report.verdict.length > 20, `${where}: check names what is wrong`);
    return;
  }
  assert.notEqual(report.volume, null, `${where}: open found the state after delta ${opened} but check found no volume: ${report.verdict}`);
  // Nothing was checkpointed: the state after the D-th delta of the log is what replaying D deltas gives.
  assert.equal(opened, report.replay.length, `${where}: open holds the state after the log's delta ${opened}, check says replay would apply ${report.replay.length}`);
  if (!report.consistent) assert.match(report.verdict, /^damaged beyond what replay handles/);
}

describe('format fuzzing: damaged journals through open and check', function () {
  let crashed: Crashed;
  let foreign: Crashed;

  before(async () => {
    crashed = await crashedVolume(0);
    foreign = await crashedVolume(3);
    const report = await examine(memoryHolding(crashed.bytes));
    assert.equal(report.replay.length, DELTAS, 'the crashed volume holds every delta in its log, none checkpointed');
    assert.equal(report.volume?.checkpointDelta, 0);
  });

  /** Opens the damaged bytes in memory, as open would; returns the state found or the code of the refusal. */
  async function openInMemory(bytes: Buffer, where: string): Promise<number | string> {
    const memory = memoryHolding(bytes);
    let vol: Volume;
    try {
      // Opened as its user opens a journaled volume: with journal unset, a device whose both superblock
      // copies lost their magic would be opened in ordered mode, as any device without a volume is.
      vol = await Volume.mount(memory, { journal: true, cacheSize: 16 * 4096 });
    } catch (error) {
      return assertNamed(error, where).code;
    }
    try {
      const data = memory.volatile.subarray(DATA_START * B, DATA_START * B + DATA_BLOCKS * B);
      const D = stateOf(data, [crashed, foreign]);
      assert.ok(D >= 0, `${where}: open succeeded, but the data area holds no whole delta's state`);
      return D;
    } finally {
      await vol.close();
    }
  }

  it(`G5, G6: ${CASES} damaged volumes in memory: open holds a whole delta or names the damage, and check agrees`, async function () {
    this.timeout(600_000);
    const codes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(fc.array(damage, { minLength: 1, maxLength: 3 }), async (damages) => {
        const bytes = damaged(crashed.bytes, foreign.bytes, damages);
        const where = JSON.stringify(damages, (_k, v: unknown) => (v instanceof Uint8Array ? `${v.length} bytes` : v));
        let report: CheckReport;
        try {
          report = await examine(memoryHolding(bytes));
        } catch (error) {
          throw Object.assign(new Error(`${where}: check threw: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`), { cause: error });
        }
        const opened = await openInMemory(bytes, where);
        const key = typeof opened === 'string' ? opened : `state after delta ${opened}`;
        codes.set(key, (codes.get(key) ?? 0) + 1);
        checkAgreement({ opened, report }, where);
      }),
      { numRuns: CASES },
    );
    console.log(`      format fuzz (memory): ${CASES} cases: ${[...codes].sort().map(([k, n]) => `${k} ${n}`).join(', ')}`);
  });

  it(`G5, G6: ${FILE_CASES} damaged volumes in real files: open and check by path, O_DIRECT`, async function () {
    this.timeout(600_000);
    const temp = new TempDir();
    try {
      await fc.assert(
        fc.asyncProperty(fc.array(damage, { minLength: 1, maxLength: 3 }), async (damages) => {
          const bytes = damaged(crashed.bytes, foreign.bytes, damages);
          const where = `file: ${JSON.stringify(damages, (_k, v: unknown) => (v instanceof Uint8Array ? `${v.length} bytes` : v))}`;
          const path = temp.file();
          fs.writeFileSync(path, bytes);
          const report = await check(path);
          let opened: number | string;
          try {
            const vol = await open(path, { journal: true, cacheSize: 16 * 4096, lockTimeout: 0 });
            try {
              const data = Buffer.concat(await Promise.all(Array.from({ length: DATA_BLOCKS }, (_, b) => vol.read(b))));
              opened = stateOf(data, [crashed, foreign]);
              assert.ok(opened >= 0, `${where}: open succeeded, but the volume holds no whole delta's state`);
            } finally {
              await vol.close();
            }
          } catch (error) {
            if (error instanceof assert.AssertionError) throw error;
            opened = assertNamed(error, where).code;
          }
          checkAgreement({ opened, report }, where);
          fs.rmSync(path);
        }),
        { numRuns: FILE_CASES },
      );
    } finally {
      temp.remove();
    }
  });
});

/**
 * The same on format version 2 (redirect-on-write): the crashed volume's
 * deltas each redirect a run of consecutive blocks (redirectMin 2 blocks:
 * written once to the physical area, the map's summary and map block logged
 * with the delta) and log a few scattered ones. Damage goes to the
 * superblocks, the log, and the summary and map blocks at home; whatever it
 * is, open gives a named error or, read through the map, exactly the state
 * after one whole delta, and check does not throw. Two damages are aimed:
 * a damaged map block of a checkpointed volume is ERR_MAP_CORRUPT on open,
 * and damaged redirected data of the log's last delta makes replay drop it.
 */
describe('format fuzzing, version 2: damaged redirect-on-write volumes through open and check', function () {
  const V2_SIZE = 192 << 10;
  const V2_LOG_BLOCKS = 96;
  const V2_CASES = Number(process.env.BLOCKFORK_FUZZ_V2_CASES ?? 1500);
  const options = { journal: true, blockSize: B, cacheSize: 16 * 4096, highWater: 1 << 30, redirectMin: 2 * B } as const;
  const V2_NAMED = /^ERR_(NOT_A_VOLUME|SUPERBLOCK_CORRUPT|GEOMETRY|VOLUME_MISMATCH|MAP_CORRUPT)$/;

  interface CrashedV2 {
    readonly bytes: Buffer;
    /** The volume's blocks after each delta of the log, D = 0..DELTAS. */
    readonly states: readonly Buffer[];
    readonly blockCount: number;
    /** Blocks of superblocks, log, summary and map: where the damage goes. */
    readonly metadataBlocks: number;
    /** Device block of map block 0. */
    readonly mapBlock: number;
    /** Device blocks of the last delta's redirected data. */
    readonly lastRedirected: readonly number[];
  }

  /** Delta k: a run of 3 to 5 blocks (redirected) and one or two scattered ones (logged). */
  function v2BlocksOf(k: number, salt: number, blockCount: number): number[] {
    const first = (k * 7 + salt * 3) % (blockCount - 16);
    const run = Array.from({ length: 3 + ((k + salt) % 3) }, (_, i) => first + i);
    return [...new Set([...run, (first + 9 + k) % blockCount, (k * 13 + salt) % blockCount])].sort((a, b) => a - b);
  }

  /**
   * A version 2 volume with DELTAS committed deltas. Crashed: as a power cut
   * leaves it with no home write durable (the log and the redirected data,
   * written before the same flushes, all durable): an append of version 2 is
   * writes and a flush, which would make the earlier deltas' home writes
   * durable too, so the bytes are rebuilt from the writes the power-loss
   * double recorded, the home writes of logged blocks left out. Closed:
   * checkpointed, every block at home, the log empty.
   */
  async function crashedV2(salt: number, close: boolean): Promise<CrashedV2> {
    const formatted = new MemoryDevice({ size: V2_SIZE });
    await (await Volume.mount(formatted, { ...options, format: true, formatVersion: 2, logSize: V2_LOG_BLOCKS * B, reserveSize: 128 * B })).close();
    const sb0 = (await readSuperblock(memoryHolding(formatted.durable))).superblock;
    const memory = memoryHolding(formatted.durable);
    const recorder = await PowerLossDevice.wrap(memory);
    const vol = await Volume.mount(recorder, options);
    const blockCount = vol.blockCount;
    const states: Buffer[] = [Buffer.alloc(blockCount * B)];
    for (let k = 1; k <= DELTAS; k++) {
      const state = Buffer.from(states[k - 1]);
      await vol.change(async (tx) => {
        for (const b of v2BlocksOf(k, salt, blockCount)) {
          imageOf(k, b, salt).copy(await tx.overwrite(b));
          imageOf(k, b, salt).copy(state, b * B);
        }
      });
      await vol.commit();
      states.push(state);
    }
    const redirected = vol.stats().journal?.redirect?.redirectedBlocks ?? 0;
    assert.ok(redirected >= 3 * DELTAS, `every delta redirected its run (${redirected} blocks redirected)`);
    let bytes: Buffer;
    if (close) {
      await vol.close();
      bytes = Buffer.from(memory.durable);
    } else {
      bytes = Buffer.from(recorder.initial);
      const logFrom = sb0.logStart * B;
      const logTo = (sb0.logStart + sb0.logBlocks) * B;
      // The redirected writes are those into blocks the descriptors list as redirected. Not
      // "images the log never held": a fork carries a page's blocks dirty in an earlier delta into
      // the later one unchanged, so an image logged in one delta may be redirected in the next.
      // A logged block's home is never a redirected one while the log can reach both: a logged
      // image pins its physical block until a checkpoint, and this volume takes none.
      const redirectedBlocks = new Set<number>();
      for (const d of (await inspectJournal(memoryHolding(Buffer.from(memory.durable)))).deltas) {
        for (const home of d.redirected) redirectedBlocks.add(sb0.dataStart + home);
      }
      const isRedirected = (offset: number, length: number): boolean => {
        for (let at = offset; at < offset + length; at += B) if (!redirectedBlocks.has(at / B)) return false;
        return true;
      };
      assert.ok(redirectedBlocks.size >= 3 * DELTAS, `the log lists the redirected blocks (${redirectedBlocks.size})`);
      for (const w of recorder.events) {
        if (w.kind !== 'write') continue;
        if (w.offset < sb0.dataStart * B || (w.offset >= logFrom && w.offset < logTo) || isRedirected(w.offset, w.data.length)) bytes.set(w.data, w.offset);
      }
      await vol.close();
    }
    const device = memoryHolding(bytes);
    const sb = (await readSuperblock(device)).superblock;
    const report = await inspectJournal(device);
    assert.equal(report.deltas.length, close ? 0 : DELTAS);
    const last = report.deltas[report.deltas.length - 1];
    return {
      bytes,
      states,
      blockCount,
      metadataBlocks: sb.dataStart + sb.summaryBlocks + sb.mapBlocks,
      mapBlock: sb.dataStart + sb.summaryBlocks,
      lastRedirected: last === undefined ? [] : last.redirected.map((h) => sb.dataStart + h),
    };
  }

  /** Opens the bytes in memory; the delta whose state the volume holds, or the code open refused with. */
  async function openV2(bytes: Buffer, volumes: readonly CrashedV2[], where: string): Promise<number | string> {
    let vol: Volume;
    try {
      vol = await Volume.mount(memoryHolding(bytes), { journal: true, cacheSize: 16 * 4096 });
    } catch (error) {
      if (!(error instanceof BlockforkError) || !V2_NAMED.test(error.code) || error.message.length < 20) {
        throw Object.assign(new Error(`${where}: not an error that names the damage: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`), { cause: error });
      }
      return error.code;
    }
    try {
      const data = await vol.readRange(0, vol.blockCount);
      for (const v of volumes) {
        const D = v.blockCount === vol.blockCount ? v.states.findIndex((s) => s.equals(data)) : -1;
        if (D >= 0) return D;
      }
      assert.fail(`${where}: open succeeded, but the volume holds no whole delta's state`);
    } finally {
      await vol.close();
    }
  }

  let crashed: CrashedV2;
  let foreign: CrashedV2;
  let closed: CrashedV2;

  before(async () => {
    crashed = await crashedV2(0, false);
    foreign = await crashedV2(3, false);
    closed = await crashedV2(0, true);
  });

  it(`G5, G6: ${V2_CASES} damaged version 2 volumes in memory: open holds a whole delta or names the damage, and check does not throw`, async function () {
    this.timeout(600_000);
    const codes = new Map<string, number>();
    const block = fc.nat({ max: crashed.metadataBlocks - 1 });
    const v2Damage: fc.Arbitrary<Damage> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('flip' as const), block, byte: byteInBlock, bit: fc.nat({ max: 7 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('garbage' as const), block, bytes: fc.uint8Array({ minLength: 1, maxLength: B }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('zero' as const), block }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('move' as const), from: block, to: block }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('foreign' as const), block, count: fc.integer({ min: 1, max: 6 }) }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(v2Damage, { minLength: 1, maxLength: 3 }), async (damages) => {
        const bytes = damaged(crashed.bytes, foreign.bytes, damages, crashed.metadataBlocks);
        const where = `v2: ${JSON.stringify(damages, (_k, v: unknown) => (v instanceof Uint8Array ? `${v.length} bytes` : v))}`;
        try {
          const report = await examine(memoryHolding(bytes));
          assert.ok(report.verdict.length > 10, `${where}: check gives a verdict`);
        } catch (error) {
          if (error instanceof assert.AssertionError) throw error;
          throw Object.assign(new Error(`${where}: check threw: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`), { cause: error });
        }
        const opened = await openV2(bytes, [crashed, foreign], where);
        const key = typeof opened === 'string' ? opened : `state after delta ${opened}`;
        codes.set(key, (codes.get(key) ?? 0) + 1);
      }),
      { numRuns: V2_CASES },
    );
    console.log(`      format fuzz v2 (memory): ${V2_CASES} cases: ${[...codes].sort().map(([k, n]) => `${k} ${n}`).join(', ')}`);
  });

  it('a damaged map block of a checkpointed version 2 volume is ERR_MAP_CORRUPT on open', async function () {
    assert.equal(await openV2(closed.bytes, [closed], 'undamaged'), DELTAS);
    const mapBlock = closed.mapBlock;
    for (const at of [0, 4, 9, 100, B - 1]) {
      const bytes = Buffer.from(closed.bytes);
      bytes[mapBlock * B + at] ^= 0x10;
      await assert.rejects(
        Volume.mount(memoryHolding(bytes), { journal: true, cacheSize: 16 * 4096 }),
        (error: unknown) => error instanceof BlockforkError && error.code === 'ERR_MAP_CORRUPT' && /map block 0/.test(error.message),
        `a flip at byte ${at} of the map block`,
      );
      const report = await examine(memoryHolding(bytes));
      assert.ok(report.verdict.length > 10);
    }
  });

  it("damaged redirected data of the log's last delta: replay drops that delta (the state after the one before)", async function () {
    assert.ok(crashed.lastRedirected.length >= 3);
    assert.equal(await openV2(crashed.bytes, [crashed], 'undamaged'), DELTAS);
    for (const [i, block] of crashed.lastRedirected.entries()) {
      const bytes = Buffer.from(crashed.bytes);
      if (i % 2 === 0) bytes.fill(0, block * B, (block + 1) * B);
      else bytes[block * B + 200 + i] ^= 1;
      assert.equal(await openV2(bytes, [crashed], `redirected block ${i} damaged`), DELTAS - 1, `redirected block ${i} (device block ${block}) damaged`);
      const report = await inspectJournal(memoryHolding(bytes));
      assert.equal(report.deltas.length, DELTAS - 1);
      assert.match(report.stop.reason, /redirected block .* fails its checksum/);
    }
  });
});
