import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { open, type Volume } from '../volume';
import { noiseBlock, openVolume, usableBlocks, type Mode } from './bench-volume';
import { LatencyRecorder } from './latency';
import { NotAvailable, type Measurement, type Subject, type Target } from './subject';
import { formatBytes } from './units';
import { MiB, offsetSource, RANDOM_WRITE, SEQUENTIAL_WRITE } from './workloads';

/**
 * The cache's write throughput, through the public API as a user writes:
 * changes of whole blocks, commits at intervals. Each job is compared with
 * the raw engines and fio doing the same bytes on the same target in the
 * same run (comparisons.ts).
 *
 * Blocks are written with `tx.overwrite` (a zero-filled view, no read), the
 * call for a block that is written whole; the bench then fills it with noise.
 * Commits are not awaited one by one: the writer goes on while earlier
 * deltas are written (`maxDeltas` bounds how far it runs ahead), and the
 * clock stops when the last commit is durable, so the rate counts every byte
 * on stable storage.
 *
 * Each run first writes as much of the region as the cache holds, untimed:
 * a fresh volume's cache memory has never been touched, and the first write
 * to each page of it costs a page fault (on a virtual machine, several
 * microseconds: more than the write). A long-lived volume pays that once;
 * the timed pass measures the cache as it runs after that, and the note
 * gives the first pass's rate.
 *
 * The volume's queue depth is the reference's: 8 for the stream (whose
 * writeout coalesces into 1 MiB runs, as fio's 1 MiB requests at depth 8),
 * 32 for random overwrites (fio randwrite 4k at depth 32).
 */
const BLOCKS_PER_CHANGE = 256;
/** The commit intervals, scaled down on regions too small to hold four (stream) or sixteen (random) of them. */
const STREAM_COMMIT_BYTES = 64 * MiB;
const RANDOM_COMMIT_BYTES = 16 * MiB;
/** The volume's default cacheSize, which the bench leaves as it is: what the warm-up pass fills. */
const CACHE_BYTES = 256 * MiB;

function modeName(mode: Mode): string {
  return mode === 'ordered' ? 'cache, ordered' : mode === 'journal' ? 'cache, journal' : 'cache, journal v2';
}

/**
 * How the stream writes its blocks: `tx.overwrite` of each (nothing read),
 * `tx.write` of each (each block read first, as a partial update would: the
 * read path's readahead serves the misses), or `tx.overwriteRange` of each
 * change's 256 blocks in one call.
 */
export type StreamCall = 'overwrite' | 'write' | 'overwriteRange';

/** Every block of the region once, in order. */
export function streamSubject(mode: Mode, call: StreamCall = 'overwrite'): Subject {
  const name = call === 'overwrite' ? modeName(mode) : `${modeName(mode)}, tx.${call}`;
  return { name, unavailable: undefined, run: (target) => runStream(target, mode, call) };
}

/**
 * The stream over blocks never written: an ordered volume on a new sparse
 * file of the region's size beside the target (the bench's own blocks are
 * prefilled). A warm-up pass over its first quarter, at most the cache's
 * size, then the timed pass over the rest, all holes: `tx.write` finds each
 * block a hole and reads nothing, `tx.overwrite` is its reference. Both pay
 * the file system's block allocation, which the other rows do not.
 */
export function freshStreamSubject(call: 'write' | 'overwrite'): Subject {
  return { name: `cache, ordered, tx.${call}, fresh blocks`, unavailable: undefined, run: (target) => runFreshStream(target, call) };
}

async function runFreshStream(target: Target, call: 'write' | 'overwrite'): Promise<Measurement> {
  if (!fs.statSync(target.path).isFile()) throw new NotAvailable('the target is a block device: it has no holes to write into');
  const file = path.join(path.dirname(target.path), `.blockfork-fresh-${crypto.randomBytes(4).toString('hex')}.img`);
  try {
    const volume = await open(file, { journal: false, size: target.region, queueDepth: SEQUENTIAL_WRITE.queueDepth });
    try {
      const blocks = usableBlocks(volume, target);
      const warm = Math.min(CACHE_BYTES / volume.blockSize, Math.floor(blocks / 4));
      const commitBytes = streamCommitBytes(target.region);
      let next = 0;
      await writeBlocks(volume, target, warm, commitBytes, () => next++, 'overwrite');
      const count = blocks - warm;
      const seconds = await writeBlocks(volume, target, count, commitBytes, () => next++, call);
      return {
        opsPerSecond: count / seconds,
        bytesPerSecond: (count * volume.blockSize) / seconds,
        note: `a new sparse file: ${formatBytes(warm * volume.blockSize)} untimed, then ${formatBytes(count * volume.blockSize)} of holes timed`,
      };
    } finally {
      await volume.close();
    }
  } finally {
    fs.rmSync(file, { force: true });
  }
}

/** As many blocks as the region holds, at the same seeded random blocks as the raw engines' random pass. */
export function randomSubject(mode: Mode): Subject {
  return { name: modeName(mode), unavailable: undefined, run: (target) => runRandom(target, mode) };
}

/** One block per change, each change committed and the commit awaited, for `seconds`. */
export function commitsSubject(mode: Mode, seconds: number): Subject {
  return { name: modeName(mode), unavailable: undefined, run: (target) => runCommits(target, mode, seconds) };
}

function commitInterval(nominal: number, region: number, parts: number): number {
  return Math.max(MiB, Math.min(nominal, Math.floor(region / parts / MiB) * MiB));
}

/** Bytes between the stream's commits on `region`. */
export function streamCommitBytes(region: number): number {
  return commitInterval(STREAM_COMMIT_BYTES, region, 4);
}

/** Bytes between the random job's commits on `region`. */
export function randomCommitBytes(region: number): number {
  return commitInterval(RANDOM_COMMIT_BYTES, region, 16);
}

async function runStream(target: Target, mode: Mode, call: StreamCall): Promise<Measurement> {
  const volume = await openVolume(target, mode, { queueDepth: SEQUENTIAL_WRITE.queueDepth });
  // Whole changes: where a journaled volume's stream wraps round, no change straddles the end.
  const usable = usableBlocks(volume, target);
  const blocks = usable >= BLOCKS_PER_CHANGE ? Math.floor(usable / BLOCKS_PER_CHANGE) * BLOCKS_PER_CHANGE : usable;
  // The timed pass starts where the warm-up ended, past what it left cached: every block it
  // writes is a miss, as in a stream longer than the cache (the warm-up's pages are evicted by
  // the time it wraps), and tx.write reads each one fresh. Started at block 0, it would begin
  // with a cache's worth of hits in a mode whose cache kept all of the warm-up's pages (ordered
  // mode's does), and none in one where anything else took a page of room: version 2's block map
  // does, and the stream's first miss then evicts, oldest first, each page it is about to write.
  const warm = Math.min(blocks, CACHE_BYTES / volume.blockSize);
  let next = warm % blocks;
  return timedPass(volume, target, regionBlocks(volume, target), streamCommitBytes(target.region), () => next++ % blocks, call);
}

async function runRandom(target: Target, mode: Mode): Promise<Measurement> {
  const volume = await openVolume(target, mode, { queueDepth: RANDOM_WRITE.queueDepth });
  const blocks = usableBlocks(volume, target);
  const nextOffset = offsetSource(RANDOM_WRITE, target.region, target.seed);
  // The raw pass's offsets, folded into the volume when a journal holds back part of the region.
  const nextBlock = (): number => (nextOffset() / volume.blockSize) % blocks;
  return timedPass(volume, target, regionBlocks(volume, target), randomCommitBytes(target.region), nextBlock, 'overwrite');
}

/**
 * The blocks a timed pass writes: as many as the region holds, in every
 * mode. A journaled volume holds fewer (its log, and in version 2 its map
 * and reserve, take part of the region), so its stream wraps round to the
 * start for the rest: every mode writes the same bytes at the same commit
 * cadence, and the last delta's writeout, which no later write overlaps, is
 * the same share of each pass.
 */
function regionBlocks(volume: Volume, target: Target): number {
  return Math.floor(target.region / volume.blockSize);
}

/** The warm-up pass, then `count` blocks chosen by `nextBlock`, timed; closes the volume. */
async function timedPass(volume: Volume, target: Target, count: number, commitBytes: number, nextBlock: () => number, call: StreamCall): Promise<Measurement> {
  try {
    const warm = Math.min(count, volume.blockCount, CACHE_BYTES / volume.blockSize);
    let next = 0;
    const cold = await writeBlocks(volume, target, warm, commitBytes, () => next++, 'overwrite');
    const seconds = await writeBlocks(volume, target, count, commitBytes, nextBlock, call);
    return {
      opsPerSecond: count / seconds,
      bytesPerSecond: (count * volume.blockSize) / seconds,
      note: `untimed first pass over fresh cache memory (${formatBytes(warm * volume.blockSize)}): ${((warm * volume.blockSize) / cold / 1e6).toFixed(0)} MB/s`,
    };
  } finally {
    await volume.close();
  }
}

/**
 * Writes `count` blocks chosen by `nextBlock`, BLOCKS_PER_CHANGE to a
 * change, committing every `commitBytes`; resolves with the seconds until
 * the last commit is durable. `overwriteRange` takes the change's blocks as
 * one run from the first one chosen: a stream's, which never wraps inside
 * a change (the region is a whole number of MiB, of 256-block changes).
 */
async function writeBlocks(volume: Volume, target: Target, count: number, commitBytes: number, nextBlock: () => number, call: StreamCall): Promise<number> {
  const noise = noiseBlock(volume.blockSize, target.seed);
  const perCommit = commitBytes / volume.blockSize;
  const commits: Promise<number>[] = [];
  try {
    const start = performance.now();
    let sinceCommit = 0;
    for (let written = 0; written < count; ) {
      const n = Math.min(BLOCKS_PER_CHANGE, count - written);
      await volume.change(async (tx) => {
        if (call === 'overwriteRange') {
          const first = nextBlock();
          for (let i = 1; i < n; i++) nextBlock();
          const views = await tx.overwriteRange(first, n);
          for (let i = 0; i < n; i++) {
            views[i].set(noise);
            views[i].writeUInt32LE(first + i, 0);
          }
          return;
        }
        for (let i = 0; i < n; i++) {
          const block = nextBlock();
          const view = call === 'write' ? await tx.write(block) : await tx.overwrite(block);
          view.set(noise);
          view.writeUInt32LE(block, 0);
        }
      });
      written += n;
      sinceCommit += n;
      if (sinceCommit >= perCommit || written === count) {
        commits.push(volume.commit());
        sinceCommit = 0;
      }
    }
    await Promise.all(commits);
    return (performance.now() - start) / 1000;
  } finally {
    // A failed change leaves commits in flight: settle them, so that none rejects unobserved.
    await Promise.allSettled(commits);
  }
}

async function runCommits(target: Target, mode: Mode, seconds: number): Promise<Measurement> {
  const volume = await openVolume(target, mode);
  const latency = new LatencyRecorder();
  try {
    const blocks = usableBlocks(volume, target);
    const noise = noiseBlock(volume.blockSize, target.seed);
    const nextOffset = offsetSource(RANDOM_WRITE, target.region, target.seed);
    let count = 0;
    const start = performance.now();
    const end = start + seconds * 1000;
    let now = start;
    while (now < end) {
      const block = (nextOffset() / volume.blockSize) % blocks;
      await volume.change(async (tx) => {
        const view = await tx.overwrite(block);
        view.set(noise);
        view.writeUInt32LE(block, 0);
      });
      await volume.commit();
      const before = now;
      now = performance.now();
      latency.record(before, now);
      count++;
    }
    const elapsed = (now - start) / 1000;
    return { opsPerSecond: count / elapsed, bytesPerSecond: (count * volume.blockSize) / elapsed, latency: latency.summary() };
  } finally {
    latency.destroy();
    await volume.close();
  }
}
