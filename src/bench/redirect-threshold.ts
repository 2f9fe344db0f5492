import { performance } from 'node:perf_hooks';
import { open } from '../volume';
import { noiseBlock, openVolume, usableBlocks } from './bench-volume';
import { Prng } from './prng';
import type { Measurement, Subject, Target } from './subject';
import { MiB } from './workloads';

/**
 * What the redirect threshold (`redirectMin`) trades, measured (issue 14): a
 * version 2 volume takes random runs of one length (aligned to it), a commit
 * every 16 MiB (256 MiB, or a quarter of a smaller region), with every run redirected (`redirectMin` two blocks) or every
 * run logged (`redirectMin` larger than any run). The rate counts until the
 * volume has closed, so the logged runs' home writes and checkpoints are paid
 * as a sustained load pays them. Then the region is read in order after a
 * reopen: a redirected run is a piece of the region moved elsewhere, which a
 * sequential reader pays for (the note gives that read's rate).
 */
const WRITE_BYTES = 256 * MiB;
/**
 * The run lengths measured, KiB: from the shortest run that can be
 * redirected (two 4 KiB blocks) to runs that are each a large transfer,
 * with the default (DEFAULT_REDIRECT_BYTES) and its neighbours in between.
 */
export const THRESHOLD_RUN_KIB: readonly number[] = [8, 16, 32, 64, 128, 256, 1024];
const COMMIT_BYTES = 16 * MiB;
const READ_BLOCKS = 256;
const CACHE_BYTES = 64 * MiB;
/** Larger than any run: nothing is redirected. */
const NEVER = 2 ** 40;

export function thresholdSubject(runBytes: number, redirect: boolean): Subject {
  return {
    name: `${runBytes >> 10} KiB runs, ${redirect ? 'redirected' : 'logged'}`,
    unavailable: undefined,
    run: (target) => runThreshold(target, runBytes, redirect),
  };
}

async function runThreshold(target: Target, runBytes: number, redirect: boolean): Promise<Measurement> {
  let volume = await openVolume(target, 'journal-v2', { cacheSize: CACHE_BYTES, redirectMin: redirect ? 1 : NEVER });
  const B = volume.blockSize;
  const per = Math.max(1, Math.floor(runBytes / B));
  const blocks = usableBlocks(volume, target);
  const places = Math.floor(blocks / per);
  // A quarter of the region at most: on a small target, runs land apart as on a large one.
  const total = Math.max(per, Math.min(Math.floor(WRITE_BYTES / B), Math.floor(places / 4) * per));
  const noise = noiseBlock(B, target.seed);
  const prng = new Prng(target.seed ^ 0x1b873593);
  let seconds: number;
  let redirected = 0;
  try {
    const commits: Promise<number>[] = [];
    const start = performance.now();
    let dirty = 0;
    for (let written = 0; written < total; written += per) {
      const first = Math.floor((prng.next32() / 2 ** 32) * places) * per;
      await volume.change(async (tx) => {
        const views = await tx.overwriteRange(first, per);
        for (let i = 0; i < per; i++) {
          noise.copy(views[i]);
          views[i].writeUInt32LE(first + i, 0);
        }
      });
      dirty += per * B;
      if (dirty >= COMMIT_BYTES) {
        dirty = 0;
        commits.push(volume.commit());
      }
    }
    commits.push(volume.commit());
    await Promise.all(commits);
    redirected = volume.stats().journal?.redirect?.redirectedBlocks ?? 0;
    await volume.close();
    seconds = (performance.now() - start) / 1000;
  } catch (error) {
    await volume.close().catch(() => undefined);
    throw error;
  }
  volume = await open(target.path, { journal: true, cacheSize: CACHE_BYTES });
  let readSeconds: number;
  try {
    const start = performance.now();
    for (let b = 0; b < blocks; b += READ_BLOCKS) await volume.readRange(b, Math.min(READ_BLOCKS, blocks - b));
    readSeconds = (performance.now() - start) / 1000;
  } finally {
    await volume.close();
  }
  return {
    opsPerSecond: total / per / seconds,
    bytesPerSecond: (total * B) / seconds,
    note: `${redirected} blocks redirected; then the whole region read in order: ${((blocks * B) / readSeconds / 1e6).toFixed(0)} MB/s`,
  };
}
