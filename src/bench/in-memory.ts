import { performance } from 'node:perf_hooks';
import type { Volume } from '../volume';
import { noiseBlock, openVolume, usableBlocks } from './bench-volume';
import { collectGarbage } from './gc';
import type { Measurement, Subject, Target } from './subject';

/**
 * What the cache costs where the device is not involved: the front end's
 * fast path, the fork itself, and the JS heap a cached page takes. Each runs
 * on a volume over the target, but times only work that does no I/O.
 */
const REWRITE_BLOCKS = 1024;

/** `await tx.write(block)` of a block already dirty in the open delta, `count` times in one change. */
export function rewriteSubject(count: number): Subject {
  return { name: 'tx.write, dirty in this delta', unavailable: undefined, run: (target) => runRewrite(target, count) };
}

/**
 * Pages dirty in delta N, rewritten in N+1 while N's writeout is in flight:
 * forks per second, from the median time of a forking `tx.write`. Two rounds, the first untimed: its copies land in cache
 * memory touched for the first time (a page fault each, costlier than the
 * copy on a virtual machine); the second reuses the frames the first freed,
 * as a running volume does.
 */
export function forkSubject(pages: number): Subject {
  return { name: 'fork', unavailable: undefined, run: (target) => runForks(target, pages) };
}

/** JS heap bytes per cached clean page (its data lives outside the heap, in native slabs). */
export function heapSubject(pages: number): Subject {
  return { name: 'JS heap per cached page', unavailable: undefined, run: (target) => runHeap(target, pages) };
}

async function runRewrite(target: Target, count: number): Promise<Measurement> {
  const volume = await openVolume(target, 'ordered');
  try {
    const blocks = Math.min(REWRITE_BLOCKS, usableBlocks(volume, target));
    const noise = noiseBlock(volume.blockSize, target.seed);
    return await volume.change(async (tx) => {
      for (let block = 0; block < blocks; block++) (await tx.overwrite(block)).set(noise);
      let block = 0;
      const start = performance.now();
      for (let i = 0; i < count; i++) {
        const view = await tx.write(block);
        view[8] = i;
        block = block + 1 === blocks ? 0 : block + 1;
      }
      return { opsPerSecond: count / ((performance.now() - start) / 1000) };
    });
  } finally {
    await volume.close();
  }
}

async function runForks(target: Target, wanted: number): Promise<Measurement> {
  const volume = await openVolume(target, 'ordered');
  try {
    const perPage = volume.pageSize / volume.blockSize;
    const pages = Math.min(wanted, Math.floor(usableBlocks(volume, target) / perPage));
    const cold = await forkRound(volume, target, pages);
    const warm = await forkRound(volume, target, pages);
    return {
      opsPerSecond: 1e6 / warm.medianUs,
      note:
        `median forking tx.write ${warm.medianUs.toFixed(2)} µs (${warm.forks} of ${pages} rewrites forked: the rest found their delta ` +
        `already written); untimed first round (fresh memory): median ${cold.medianUs.toFixed(2)} µs`,
    };
  } finally {
    await volume.close();
  }
}

/**
 * Rewrites every page while the delta that dirtied them is being written,
 * timing each `await tx.write()` that forked. The median is the fork's cost:
 * a few calls also carry a turn of the event loop (the volume yields while
 * writeout is in flight, and the writeout's own work runs then), and once
 * the writeout is done, rewrites find clean pages and do not fork.
 */
async function forkRound(volume: Volume, target: Target, pages: number): Promise<{ forks: number; medianUs: number }> {
  const perPage = volume.pageSize / volume.blockSize;
  const noise = noiseBlock(volume.blockSize, target.seed);
  await volume.change(async (tx) => {
    for (let page = 0; page < pages; page++) (await tx.overwrite(page * perPage)).set(noise);
  });
  // Called before the change below, so that change lands in the next delta (the order of calls decides).
  const committing = volume.commit();
  try {
    const times: number[] = [];
    await volume.change(async (tx) => {
      for (let page = 0; page < pages; page++) {
        const forks = volume.stats().forks;
        const start = performance.now();
        const view = await tx.write(page * perPage);
        const end = performance.now();
        view[8]++;
        if (volume.stats().forks > forks) times.push((end - start) * 1000);
      }
    });
    await committing;
    // The rewritten delta too, so that the next round starts with every page clean and its copies freed.
    await volume.commit();
    times.sort((a, b) => a - b);
    return { forks: times.length, medianUs: times.length > 0 ? times[times.length >> 1] : Number.NaN };
  } finally {
    await committing.catch(() => 0);
  }
}

/** Reads in flight at once while filling the cache: enough to keep the device busy. */
const READS_IN_FLIGHT = 64;

async function runHeap(target: Target, wanted: number): Promise<Measurement> {
  // A first pass warms up the code paths (compiled code and inline caches live on the heap
  // too), so that the measured pass counts only what the cached pages themselves hold.
  // The heap moves by some tens of KB between passes whatever is cached: the median of
  // three passes keeps that noise out of small runs.
  await heapPass(target, Math.min(wanted, 1024));
  const passes: Measurement[] = [];
  for (let i = 0; i < 3; i++) passes.push(await heapPass(target, wanted));
  passes.sort((a, b) => (a.value ?? 0) - (b.value ?? 0));
  return { ...passes[1], note: `${passes[1].note}; median of 3 passes after a warm-up` };
}

async function heapPass(target: Target, wanted: number): Promise<Measurement> {
  // One 4 KiB block per page (the defaults), the cache just big enough for the pages read.
  const pageSize = 4096;
  const volume = await openVolume(target, 'ordered', { pageSize, blockSize: pageSize, cacheSize: wanted * pageSize });
  try {
    const pages = Math.min(wanted, usableBlocks(volume, target));
    collectGarbage?.();
    const before = process.memoryUsage().heapUsed;
    let next = 0;
    const reader = async (): Promise<void> => {
      while (next < pages) await volume.read(next++);
    };
    await Promise.all(Array.from({ length: READS_IN_FLIGHT }, reader));
    collectGarbage?.();
    const after = process.memoryUsage().heapUsed;
    const cached = volume.stats().pagesCached;
    return {
      value: (after - before) / cached,
      note: `${cached} clean pages cached by reads; ${collectGarbage ? 'after a full gc' : 'no gc available: includes garbage'}`,
    };
  } finally {
    await volume.close();
  }
}
