import { crc32 } from 'node:zlib';
import { seeded } from './random';

/**
 * The deterministic workload of the process-kill crash tests
 * (test/crash-kill.test.ts), shared by the child that runs it
 * (test/support/crash-child.ts) and the parent that checks what survived.
 *
 * The workload is an endless sequence of deltas k = 1, 2, 3, ...; delta k is
 * a few changes, each writing a few blocks, then a commit (awaited or not).
 * Everything is a function of (seed, k): which blocks, in which changes, and
 * the contents. A block written in delta k holds `blockImage(seed, k, block)`
 * whatever change of k wrote it last, so the state after delta D is: each
 * block holds the image of the last delta <= D that wrote it, or zeros.
 *
 * Deltas are numbered here from 1; the volume's own delta number of k is
 * `base + k - 1`, where `base` is the open delta when the child starts (the
 * child checks that every change lands where the plan says).
 */

export type CrashMode = 'ordered' | 'journal';

export interface CrashConfig {
  readonly mode: CrashMode;
  /** Journal mode: the format version (default 1); 2 redirects runs of at least `redirectMin` bytes. */
  readonly formatVersion?: 1 | 2;
  readonly redirectMin?: number;
  /** Version 2: physical blocks beyond the volume's, in bytes (default the log's size). */
  readonly reserveSize?: number;
  /** The workload's deltas also write runs of consecutive blocks (long enough to be redirected in version 2). */
  readonly runs?: boolean;
  readonly seed: number;
  readonly path: string;
  readonly size: number;
  readonly blockSize: number;
  readonly cacheSize: number;
  readonly maxDeltas: number;
}

/** Distinct block slots the workload may touch; slot j is volume block `slotBlock(j)`. */
export const SLOTS = 96;
/** Slots written in most deltas, so that a block under writeout is rewritten in the next delta (a fork). */
const HOT_SLOTS = 6;

/** The first half of the slots is one contiguous run (coalesced writes), the rest spread out. */
export function slotBlock(slot: number): number {
  return slot < SLOTS / 2 ? slot : SLOTS / 2 + (slot - SLOTS / 2) * 7;
}

/** The highest volume block the workload touches, plus one. */
export const BLOCKS_SPANNED = slotBlock(SLOTS - 1) + 1;

export interface DeltaPlan {
  /** Per change, the volume blocks it writes, in order (a block may repeat across changes). */
  readonly changes: readonly (readonly number[])[];
  /** Run the changes at once (all in the same delta) rather than one after the other. */
  readonly concurrent: boolean;
  /** Per write, `tx.overwrite` (no read) rather than `tx.write`; same shape as `changes`. */
  readonly overwrite: readonly (readonly boolean[])[];
  /** Await the commit before the next delta (otherwise up to maxDeltas are in flight). */
  readonly awaitCommit: boolean;
  /** How many commit() calls close it at once (concurrent committers, grouped into this one delta). */
  readonly committers: number;
  /** Every block the delta writes. */
  readonly blocks: ReadonlySet<number>;
}

/** With runs: the longest run of consecutive blocks one change writes (within the contiguous first half of the slots). */
export const MAX_RUN = 10;

function mix(...values: number[]): number {
  let h = 0x811c9dc5;
  for (const v of values) {
    h = Math.imul(h ^ (v >>> 0), 0x01000193) >>> 0;
    h = (h ^ (h >>> 13)) >>> 0;
    h = Math.imul(h, 0x5bd1e995) >>> 0;
  }
  return (h ^ (h >>> 15)) >>> 0;
}

/** The seeded generator for one purpose of one run. */
export function rngFor(seed: number, ...what: number[]): () => number {
  return seeded(mix(seed, ...what));
}

const planCache = new Map<string, DeltaPlan>();

/**
 * The plan of delta k (k >= 1) of the workload of `seed`. With `runs`, a
 * change may also write a run of 2 to MAX_RUN consecutive blocks (in the
 * contiguous half of the slots, in ascending or descending order), so that
 * deltas mix long runs and scattered blocks.
 */
export function planDelta(seed: number, k: number, runs = false): DeltaPlan {
  const key = `${seed}:${k}:${runs ? 1 : 0}`;
  const cached = planCache.get(key);
  if (cached) return cached;
  const rng = rngFor(seed, 1, k);
  const int = (n: number): number => Math.floor(rng() * n);
  const hotStart = mix(seed, 2) % (SLOTS - HOT_SLOTS);
  const changeCount = 1 + int(4);
  const changes: number[][] = [];
  const overwrite: boolean[][] = [];
  const blocks = new Set<number>();
  for (let c = 0; c < changeCount; c++) {
    const writes: number[] = [];
    const over: boolean[] = [];
    const writeCount = 1 + int(5);
    for (let w = 0; w < writeCount; w++) {
      const slot = rng() < 0.45 ? hotStart + int(HOT_SLOTS) : int(SLOTS);
      const block = slotBlock(slot);
      writes.push(block);
      over.push(rng() < 0.3);
      blocks.add(block);
    }
    if (runs && rng() < 0.5) {
      const length = 2 + int(MAX_RUN - 1);
      const first = int(SLOTS / 2 - length + 1);
      const descending = rng() < 0.3;
      for (let i = 0; i < length; i++) {
        const block = slotBlock(descending ? first + length - 1 - i : first + i);
        writes.push(block);
        over.push(rng() < 0.5);
        blocks.add(block);
      }
    }
    changes.push(writes);
    overwrite.push(over);
  }
  const concurrent = rng() < 0.3;
  const awaitCommit = rng() < 0.35;
  const plan: DeltaPlan = { changes, overwrite, concurrent, awaitCommit, committers: 1 + int(4), blocks };
  if (planCache.size > 50_000) planCache.clear();
  planCache.set(key, plan);
  return plan;
}

const MAGIC = 0x4b434642; // 'BFCK'
const HEADER = 20; // magic, seed, delta, block, crc32 of the rest
const CRC_AT = 16;

/** The contents of `block` as delta k of the workload of `seed` writes it: a header, then a fill from (seed, k, block). */
export function blockImage(seed: number, k: number, block: number, blockSize: number): Buffer {
  const out = Buffer.alloc(blockSize);
  fillImage(out, seed, k, block);
  return out;
}

/** Writes the image into `target` (a view of exactly one block). */
export function fillImage(target: Buffer, seed: number, k: number, block: number): void {
  target.writeUInt32LE(MAGIC, 0);
  target.writeUInt32LE(seed >>> 0, 4);
  target.writeUInt32LE(k, 8);
  target.writeUInt32LE(block, 12);
  let x = mix(seed, k, block) | 1;
  for (let at = HEADER; at + 4 <= target.length; at += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    target.writeInt32LE(x | 0, at);
  }
  target.writeUInt32LE(checksum(target), CRC_AT);
}

function checksum(block: Buffer): number {
  return crc32(block.subarray(HEADER), crc32(block.subarray(0, CRC_AT)));
}

/** What a block read back holds: zeros, the image of delta k, or something else (torn, foreign, misplaced). */
export type Decoded = { kind: 'zero' } | { kind: 'image'; k: number } | { kind: 'bad'; why: string };

export function decodeBlock(data: Buffer, seed: number, block: number): Decoded {
  if (data.every((byte) => byte === 0)) return { kind: 'zero' };
  if (data.length < HEADER + 4 || data.readUInt32LE(0) !== MAGIC) return { kind: 'bad', why: `no header (first bytes ${data.subarray(0, 16).toString('hex')})` };
  const crc = data.readUInt32LE(CRC_AT);
  if (checksum(data) !== crc) {
    const zeros = data.subarray(HEADER).filter((byte) => byte === 0).length;
    return { kind: 'bad', why: `torn: checksum mismatch (header says delta ${data.readUInt32LE(8)}; ${zeros} zero bytes after the header)` };
  }
  if (data.readUInt32LE(4) !== seed >>> 0) return { kind: 'bad', why: `an image of seed ${data.readUInt32LE(4)}` };
  if (data.readUInt32LE(12) !== block) return { kind: 'bad', why: `the image of block ${data.readUInt32LE(12)} (misplaced)` };
  const k = data.readUInt32LE(8);
  if (!data.equals(blockImage(seed, k, block, data.length))) return { kind: 'bad', why: `header of delta ${k} but other contents` };
  return { kind: 'image', k };
}

/**
 * The model: for each delta D from 0 (nothing written) up to `last`, which
 * delta's image each touched block holds after D (0: zeros).
 */
export class WorkloadModel {
  readonly blocks: readonly number[];
  /** states[D].get(block): the delta whose image the block holds after D. */
  private readonly states: Map<number, number>[] = [];

  constructor(
    readonly seed: number,
    last: number,
    /** The workload with runs (planDelta's `runs`). */
    readonly runs = false,
  ) {
    this.blocks = Array.from({ length: SLOTS }, (_, slot) => slotBlock(slot));
    let state = new Map<number, number>(this.blocks.map((b) => [b, 0]));
    this.states.push(state);
    for (let k = 1; k <= last; k++) {
      state = new Map(state);
      for (const b of planDelta(seed, k, runs).blocks) state.set(b, k);
      this.states.push(state);
    }
  }

  get last(): number {
    return this.states.length - 1;
  }

  /** The delta whose image `block` holds after delta D (0: zeros). */
  holder(D: number, block: number): number {
    const state = this.states[D];
    if (!state) throw new RangeError(`the model knows deltas 0..${this.last}, not ${D}`);
    return state.get(block) ?? 0;
  }
}
