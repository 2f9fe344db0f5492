import { performance } from 'node:perf_hooks';
import { open, type Volume } from '../volume';
import { noiseBlock, openVolume, usableBlocks, type Mode } from './bench-volume';
import { Prng } from './prng';
import type { Measurement, Subject, Target } from './subject';
import { MiB } from './workloads';

/**
 * The price of redirect-on-write (issue 14): a region written in order, then
 * half of it rewritten in random 128 KiB runs (long enough to be redirected
 * by a version 2 volume, each to wherever the allocator had room), then read
 * back in order after a reopen (an empty cache). An ordered volume rewrites
 * in place, so its region stays contiguous; the version 2 volume's is now in
 * pieces of 128 KiB. The timed part is the read.
 */
const REGION_BYTES = 256 * MiB;
const RUN_BLOCKS = 32;
const READ_BLOCKS = 256;
const CACHE_BYTES = 64 * MiB;

export function fragmentationSubject(mode: Extract<Mode, 'ordered' | 'journal-v2'>): Subject {
  return {
    name: mode === 'ordered' ? 'cache, ordered' : 'cache, journal v2',
    unavailable: undefined,
    run: (target) => runFragmentation(target, mode),
  };
}

async function runFragmentation(target: Target, mode: Extract<Mode, 'ordered' | 'journal-v2'>): Promise<Measurement> {
  let volume: Volume = await openVolume(target, mode, { cacheSize: CACHE_BYTES });
  let blocks: number;
  let redirected = 0;
  try {
    blocks = Math.min(usableBlocks(volume, target), Math.floor(REGION_BYTES / volume.blockSize));
    const noise = noiseBlock(volume.blockSize, target.seed);
    const commitEvery = Math.max(READ_BLOCKS, Math.floor((16 * MiB) / volume.blockSize));
    let dirty = 0;
    const writeRun = async (first: number, count: number): Promise<void> => {
      await volume.change(async (tx) => {
        const views = await tx.overwriteRange(first, count);
        for (let i = 0; i < count; i++) {
          noise.copy(views[i]);
          views[i].writeUInt32LE(first + i, 0);
        }
      });
      dirty += count;
      if (dirty >= commitEvery) {
        dirty = 0;
        await volume.commit();
      }
    };
    for (let b = 0; b < blocks; b += READ_BLOCKS) await writeRun(b, Math.min(READ_BLOCKS, blocks - b));
    const prng = new Prng(target.seed ^ 0x2545f491);
    const runs = Math.floor(blocks / 2 / RUN_BLOCKS);
    for (let r = 0; r < runs; r++) await writeRun(Math.floor((prng.next32() / 2 ** 32) * Math.floor(blocks / RUN_BLOCKS)) * RUN_BLOCKS, RUN_BLOCKS);
    await volume.commit();
    redirected = volume.stats().journal?.redirect?.redirectedBlocks ?? 0;
  } finally {
    await volume.close();
  }
  // Reopened: nothing cached, the read goes to the device through the map.
  volume = await open(target.path, { journal: mode !== 'ordered', cacheSize: CACHE_BYTES });
  try {
    const start = performance.now();
    for (let b = 0; b < blocks; b += READ_BLOCKS) await volume.readRange(b, Math.min(READ_BLOCKS, blocks - b));
    const seconds = (performance.now() - start) / 1000;
    return {
      opsPerSecond: blocks / seconds,
      bytesPerSecond: (blocks * volume.blockSize) / seconds,
      note: `read ${blocks} blocks in order after rewriting half in random ${(RUN_BLOCKS * volume.blockSize) >> 10} KiB runs` + (mode === 'ordered' ? '' : ` (${redirected} blocks redirected)`),
    };
  } finally {
    await volume.close();
  }
}
