import { Prng } from './prng';

/**
 * The bench's workloads. Each is a fixed amount of work (one pass over the
 * target's region), not a fixed time, so that every subject does exactly the
 * same requests and fio can be told the same thing with --size.
 *
 * The raw engine's workloads are the reference for everything built on it:
 * comparisons.ts sets the cache's jobs beside them, doing the same bytes.
 */
export interface Workload {
  /** Stable key in the JSON. */
  readonly id: string;
  /** What the table calls it. */
  readonly title: string;
  readonly pattern: 'sequential' | 'random';
  readonly op: 'write' | 'read';
  readonly blockSize: number;
  readonly queueDepth: number;
}

export const MiB = 1 << 20;

export const SEQUENTIAL_WRITE: Workload = {
  id: 'seq-write-1m-qd8',
  title: 'sequential write 1 MiB, QD 8',
  pattern: 'sequential',
  op: 'write',
  blockSize: MiB,
  queueDepth: 8,
};

export const RANDOM_WRITE: Workload = {
  id: 'rand-write-4k-qd32',
  title: 'random write 4 KiB, QD 32',
  pattern: 'random',
  op: 'write',
  blockSize: 4096,
  queueDepth: 32,
};

/** The read references: fio's sequential read (the device's streaming speed) and random 4 KiB reads at depth 32. */
export const SEQUENTIAL_READ: Workload = {
  id: 'seq-read-1m-qd8',
  title: 'sequential read 1 MiB, QD 8',
  pattern: 'sequential',
  op: 'read',
  blockSize: MiB,
  queueDepth: 8,
};

export const RANDOM_READ: Workload = {
  id: 'rand-read-4k-qd32',
  title: 'random read 4 KiB, QD 32',
  pattern: 'random',
  op: 'read',
  blockSize: 4096,
  queueDepth: 32,
};

export const RAW_WORKLOADS: readonly Workload[] = [SEQUENTIAL_WRITE, RANDOM_WRITE];

/** Every region is a multiple of this, so that it holds a whole number of every workload's blocks. */
export const REGION_UNIT = MiB;

/** Requests in one pass over `region`: sequential covers it once; random writes as many blocks, with replacement. */
export function requestCount(workload: Workload, region: number): number {
  return Math.floor(region / workload.blockSize);
}

/**
 * The offsets of one pass, as a function called once per request: cheap
 * enough for the hot loop. Random offsets are block-aligned, uniform over
 * the whole region, with replacement (as fio's --norandommap), from a
 * seeded generator.
 */
export function offsetSource(workload: Workload, region: number, seed: number): () => number {
  const blocks = requestCount(workload, region);
  const size = workload.blockSize;
  if (workload.pattern === 'sequential') {
    let next = 0;
    return () => {
      const offset = next * size;
      next = next + 1 === blocks ? 0 : next + 1;
      return offset;
    };
  }
  const prng = new Prng(seed);
  return () => prng.below(blocks) * size;
}
