import { performance } from 'node:perf_hooks';
import { Device } from '../io/device';
import { Volume } from '../volume';
import { noiseBlock, wipeSuperblocks } from './bench-volume';
import { LatencyRecorder } from './latency';
import { SlowDevice, type Slowness } from './slow-device';
import type { Measurement, Subject, Target } from './subject';

/**
 * G2 where it is hardest: commits come faster than the device can finish
 * them. The bench's target is made slow (slow-device.ts), one writer is
 * offered a constant rate of one-block updates (one `change()` each, on a
 * hot set of 16 blocks, so almost every update lands on a page that a delta
 * in flight is writing out), and `committers` loops call `commit()` back to
 * back. With `fork: false` an update of a page under writeout waits for it
 * (Linux's stable pages); with no committers the run is the loop's own
 * floor.
 *
 * Latency is counted from each update's *scheduled* instant (start + i /
 * rate), not from when the writer got round to it, as wrk2 does: a writer
 * held up for 100 ms then owes 100 ms to every update scheduled meanwhile,
 * so a stall cannot hide behind the one slow call that caused it
 * (coordinated omission).
 */
export interface PacedVariant {
  readonly fork: boolean;
  /** Loops calling `await vol.commit()` back to back; 0: no commits (the floor). */
  readonly committers: number;
}

/** Updates per second offered to the writer. */
export const OFFERED_RATE = 5000;
const HOT_BLOCKS = 16;

export function pacedVariantName(variant: PacedVariant): string {
  if (variant.committers === 0) return 'no commits';
  return `${variant.fork ? 'fork' : 'fork: false'}, ${variant.committers} committer${variant.committers === 1 ? '' : 's'}`;
}

export function pacedWriterSubject(slowness: Slowness, variant: PacedVariant, seconds: number): Subject {
  return { name: pacedVariantName(variant), unavailable: undefined, run: (target) => runPaced(target, slowness, variant, seconds) };
}

async function runPaced(target: Target, slowness: Slowness, variant: PacedVariant, seconds: number): Promise<Measurement> {
  await wipeSuperblocks(target.path);
  const device = await Device.open(target.path);
  let volume: Volume;
  try {
    volume = await Volume.mount(new SlowDevice(device, slowness), { journal: false, fork: variant.fork });
  } catch (error) {
    await device.close();
    throw error;
  }
  const latency = new LatencyRecorder();
  let running = true;
  const committers: Promise<number>[] = [];
  try {
    const noise = noiseBlock(volume.blockSize, target.seed);
    await volume.change(async (tx) => {
      for (let block = 0; block < HOT_BLOCKS; block++) (await tx.overwrite(block)).set(noise);
    });
    await volume.commit();
    const before = volume.stats();
    for (let c = 0; c < variant.committers; c++) {
      committers.push(
        (async () => {
          let commits = 0;
          while (running) {
            await volume.commit();
            commits++;
          }
          return commits;
        })(),
      );
    }
    const interval = 1000 / OFFERED_RATE;
    const start = performance.now();
    const end = start + seconds * 1000;
    const scheduledCount = Math.round(seconds * OFFERED_RATE);
    let done = 0;
    while (done < scheduledCount) {
      const scheduled = start + done * interval;
      // Until its instant, the writer lets the loop turn (the engines take completions meanwhile).
      while (performance.now() < scheduled) await new Promise(setImmediate);
      if (performance.now() >= end) break;
      const block = done % HOT_BLOCKS;
      await volume.change(async (tx) => {
        (await tx.write(block))[8]++;
      });
      latency.record(scheduled, performance.now());
      done++;
    }
    const stopped = performance.now();
    // Updates scheduled but never done by the end owe at least the time from their instant to it.
    for (let i = done; i < scheduledCount; i++) latency.record(start + i * interval, stopped);
    const elapsed = stopped - start;
    running = false;
    const commits = (await Promise.all(committers)).reduce((a, b) => a + b, 0);
    const after = volume.stats();
    const summary = latency.summary();
    return {
      opsPerSecond: done / (elapsed / 1000),
      latency: summary,
      series: latency.series(),
      note:
        `offered ${OFFERED_RATE}/s, ${done} of ${scheduledCount} updates done in ${seconds} s` +
        `${done < scheduledCount ? ' (the rest counted late by at least their wait to the end)' : ''}; ` +
        `p99.9 ${summary.p999Us.toFixed(0)} µs from the scheduled instant; ${commits} commits in ${after.deltasCommitted - before.deltasCommitted} deltas ` +
        `(${after.groupedCommits - before.groupedCommits} grouped, ${after.emptyCommits - before.emptyCommits} empty); ` +
        `${after.forks - before.forks} forks, ${after.stableWaits - before.stableWaits} waits for writeout`,
    };
  } finally {
    running = false;
    await Promise.allSettled(committers);
    latency.destroy();
    await volume.close();
  }
}
