import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import fc from 'fast-check';
import { check, examine, type CheckReport } from '../src/cli/check';
import { BlockforkError } from '../src/io/errors';
import { open, Volume } from '../src/volume';
import { MemoryDevice } from './support/memory-device';
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

function damaged(base: Buffer, foreign: Buffer, damages: readonly Damage[]): Buffer {
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
        foreign.copy(bytes, d.block * B, d.block * B, Math.min(METADATA_BLOCKS, blocks(), d.block + d.count) * B);
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
