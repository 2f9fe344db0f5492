import { performance } from 'node:perf_hooks';
import type { Volume } from '../volume';
import { openVolume, usableBlocks } from './bench-volume';
import type { Measurement, Subject, Target } from './subject';
import { MiB, offsetSource, RANDOM_READ } from './workloads';

/**
 * The cache's read path as a user meets it: `vol.read(i)` of one block at a
 * time, awaited, over the whole region, against fio reading the same bytes
 * (comparisons.ts). The cache is kept small (64 MiB) beside the region, so
 * that reads miss and the rows measure the way to the device (readahead,
 * batched misses), not memory.
 *
 * Readers in flight: one awaited loop (what a plain `for` loop gets), or
 * READERS loops taking the next block from one shared counter (a stream
 * served by a pool of workers) or each a random block.
 */
const READ_CACHE_BYTES = 64 * MiB;
const READERS = 32;

/** Every block of the region once, in order, by `readers` awaited loops. */
export function sequentialReadSubject(readers: 1 | typeof READERS): Subject {
  return {
    name: readers === 1 ? 'cache, awaited loop' : `cache, ${READERS} in flight`,
    unavailable: undefined,
    run: (target) => runReads(target, readers, (blocks) => {
      let next = 0;
      return () => (next < blocks ? next++ : -1);
    }),
  };
}

/** As many blocks as the region holds, at fio's kind of random offsets (uniform, with replacement), 32 in flight. */
export function randomReadSubject(): Subject {
  return {
    name: `cache, ${READERS} in flight`,
    unavailable: undefined,
    run: (target) => runReads(target, READERS, (blocks, volume) => {
      const nextOffset = offsetSource(RANDOM_READ, target.region, target.seed);
      let left = blocks;
      return () => (left-- > 0 ? (nextOffset() / volume.blockSize) % blocks : -1);
    }),
  };
}

/** `readers` loops reading the blocks `source` hands out (-1: done); closes the volume. */
async function runReads(target: Target, readers: number, source: (blocks: number, volume: Volume) => () => number): Promise<Measurement> {
  const volume = await openVolume(target, 'ordered', { cacheSize: READ_CACHE_BYTES });
  try {
    const blocks = usableBlocks(volume, target);
    const next = source(blocks, volume);
    const start = performance.now();
    const loop = async (): Promise<void> => {
      for (let block = next(); block >= 0; block = next()) await volume.read(block);
    };
    await Promise.all(Array.from({ length: readers }, loop));
    const seconds = (performance.now() - start) / 1000;
    const s = volume.stats();
    return {
      opsPerSecond: blocks / seconds,
      bytesPerSecond: (blocks * volume.blockSize) / seconds,
      note: `readahead ${s.readaheadPages} pages, ${s.readaheadUsed} used, ${s.readaheadWasted} wasted`,
    };
  } finally {
    await volume.close();
  }
}
