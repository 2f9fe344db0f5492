import { performance } from 'node:perf_hooks';
import { noiseBlock, openVolume, usableBlocks } from './bench-volume';
import { LatencyRecorder } from './latency';
import type { Measurement, Subject, Target } from './subject';

/**
 * The fork's reason to exist (G2), measured: a hot set of blocks rewritten
 * in a loop while commits run back to back (each `commit()` called as soon
 * as the previous one resolves), so that almost every rewrite lands on a
 * page that an earlier delta is writing out. With `fork: true` such a write
 * copies the page; with `fork: false` it waits for the writeout (Linux's
 * stable pages). The same loop with no commits at all is the fork's own
 * floor: every write then finds its block dirty in the open delta.
 *
 * The writer yields to the event loop between changes, as any program that
 * does I/O does: a loop that only ever awaits resolved promises runs in
 * microtasks and starves every I/O completion, writeouts included, so no
 * commit would ever finish while it runs.
 *
 * What is timed is each `await tx.write(block)`, nothing else: the wait to
 * enter a change (the delta lock, queued behind a transition that waits for
 * a place among `maxDeltas` in flight) is G2's stated bound, not a write
 * stall, and is reported beside it in the note.
 */
export type HotSetVariant = 'fork' | 'stable' | 'idle' | 'journal-fork' | 'journal-stable';

export const HOT_SET_NAMES: Record<HotSetVariant, string> = {
  fork: 'fork',
  stable: 'fork: false',
  idle: 'fork, no commits',
  'journal-fork': 'fork, journal',
  'journal-stable': 'fork: false, journal',
};

const HOT_BLOCKS = 1024;
/** A write slower than this stalled (waited for writeout, a lock, a collection): its time is summed as stalled. */
const STALL_MS = 0.1;
/** Writes per change: small enough that a commit waiting for the delta lock gets it soon. */
const WRITES_PER_CHANGE = 64;

export function hotSetSubject(variant: HotSetVariant, seconds: number): Subject {
  return { name: HOT_SET_NAMES[variant], unavailable: undefined, run: (target) => runHotSet(target, variant, seconds) };
}

async function runHotSet(target: Target, variant: HotSetVariant, seconds: number): Promise<Measurement> {
  const journal = variant === 'journal-fork' || variant === 'journal-stable';
  const stable = variant === 'stable' || variant === 'journal-stable';
  const volume = await openVolume(target, journal ? 'journal' : 'ordered', { fork: !stable });
  const writes = new LatencyRecorder();
  const entries = new LatencyRecorder();
  let running = true;
  let committer: Promise<number> = Promise.resolve(0);
  try {
    const blocks = Math.min(HOT_BLOCKS, usableBlocks(volume, target));
    const noise = noiseBlock(volume.blockSize, target.seed);
    // Every block cached and clean before the clock starts: no write of the loop reads the device.
    // In slices, each its own delta: a journal's log on a small target holds fewer blocks than the set.
    for (let first = 0; first < blocks; first += WRITES_PER_CHANGE) {
      await volume.change(async (tx) => {
        for (let block = first; block < Math.min(blocks, first + WRITES_PER_CHANGE); block++) (await tx.overwrite(block)).set(noise);
      });
      await volume.commit();
    }

    const { forks: forksBefore, stableWaits: waitsBefore } = volume.stats();
    if (variant !== 'idle') {
      committer = (async () => {
        let commits = 0;
        while (running) {
          await volume.commit();
          commits++;
        }
        return commits;
      })();
    }
    const start = performance.now();
    const end = start + seconds * 1000;
    let next = 0;
    let stalledMs = 0;
    let now = start;
    while (now < end) {
      const asked = performance.now();
      await volume.change(async (tx) => {
        entries.record(asked, performance.now());
        for (let i = 0; i < WRITES_PER_CHANGE; i++) {
          const before = performance.now();
          const view = await tx.write(next);
          const after = performance.now();
          writes.record(before, after);
          if (after - before > STALL_MS) stalledMs += after - before;
          view[8]++;
          next = next + 1 === blocks ? 0 : next + 1;
        }
      });
      await new Promise(setImmediate);
      now = performance.now();
    }
    running = false;
    const commits = await committer;
    const summary = writes.summary();
    const entry = entries.summary();
    const { forks, stableWaits } = volume.stats();
    return {
      opsPerSecond: summary.count / ((now - start) / 1000),
      latency: summary,
      series: writes.series(),
      // Percentiles count a stall once, however many writes it held up (coordinated omission): the share of time stalled says the rest.
      note:
        `${commits} commits, ${forks - forksBefore} forks, ${stableWaits - waitsBefore} waits for writeout; ` +
        `${((stalledMs / (now - start)) * 100).toFixed(1)}% of the loop in writes over ${STALL_MS * 1000} µs; ` +
        `change() entry p99 ${entry.p99Us.toFixed(0)} µs, max ${entry.maxUs.toFixed(0)} µs`,
    };
  } finally {
    running = false;
    await committer.catch(() => 0);
    writes.destroy();
    entries.destroy();
    await volume.close();
  }
}
