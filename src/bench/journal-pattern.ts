import { performance } from 'node:perf_hooks';
import { Device } from '../io/device';
import type { IoRequest } from '../io/request';
import { Slab } from '../io/slab';
import { benchLogSize } from './bench-volume';
import { LatencyRecorder } from './latency';
import { engineUnavailable, fillWithNoise, type ReusedRequest } from './raw-engine';
import type { Measurement, Subject, Target } from './subject';
import { offsetSource, RANDOM_WRITE, SEQUENTIAL_WRITE } from './workloads';

/**
 * The journal's writes on the raw engine, with no cache and no JavaScript
 * between them beyond the loop: what a journaled volume asks of the device,
 * done as cheaply as the engine can. Beside `cache, journal` it splits the
 * gap to fio in two: what the device charges for writing every block twice
 * and flushing every delta (this row against fio), and what the cache and
 * the journal add on top (`cache, journal` against this row).
 *
 * The log is a ring at the start of the target, of the size a journal run
 * formats (benchLogSize); the homes are the rest of the region. Checkpoints
 * are left out (they cost the real journal a superblock write and flushes
 * now and then): this is a floor, not a model.
 */
const NAME = "io_uring, the journal's writes";
const MiB = 1 << 20;

/**
 * The stream: deltas of a quarter of the log, each written to the log in
 * 1 MiB requests and flushed, then written home while the next delta goes
 * to the log (as the journal does: home writes wait for their delta to be
 * durable in the log, and for the earlier delta's home writes).
 */
export function journalStreamPatternSubject(): Subject {
  return { name: NAME, unavailable: engineUnavailable('io_uring'), run: (target) => runStream(target) };
}

/**
 * Awaited one-block commits: each a 12 KiB RWF_DSYNC write at the next log
 * position (descriptor, image, commit record), with the previous commit's
 * 4 KiB home write submitted just before it, for `seconds`.
 */
export function journalCommitPatternSubject(seconds: number): Subject {
  return { name: NAME, unavailable: engineUnavailable('io_uring'), run: (target) => runCommits(target, seconds) };
}

async function runStream(target: Target): Promise<Measurement> {
  const logBytes = benchLogSize(target);
  const deltaBytes = Math.max(MiB, Math.floor(logBytes / 4 / MiB) * MiB);
  const homeBytes = Math.floor((target.region - logBytes) / deltaBytes) * deltaBytes;
  const depth = SEQUENTIAL_WRITE.queueDepth;
  const slab = Slab.alloc(MiB, depth);
  try {
    fillWithNoise(slab, target.seed);
    const device = await Device.open(target.path, { engine: 'io_uring', queueDepth: depth });
    try {
      const writes = (offset: number, bytes: number): IoRequest[] =>
        Array.from({ length: bytes / MiB }, (_, i) => ({ op: 'write', offset: offset + i * MiB, buffers: [slab.page(i % depth)] }));
      const start = performance.now();
      let logPosition = 0;
      let home: Promise<void> = Promise.resolve();
      for (let at = 0; at < homeBytes; at += deltaBytes) {
        if (logPosition + deltaBytes > logBytes) logPosition = 0;
        await device.run(writes(logPosition, deltaBytes));
        await device.flush();
        logPosition += deltaBytes;
        await home;
        home = device.run(writes(logBytes + at, deltaBytes));
      }
      await home;
      await device.flush();
      const seconds = (performance.now() - start) / 1000;
      return { bytesPerSecond: homeBytes / seconds, opsPerSecond: homeBytes / SEQUENTIAL_WRITE.blockSize / seconds };
    } finally {
      await device.close();
    }
  } finally {
    slab.release();
  }
}

async function runCommits(target: Target, seconds: number): Promise<Measurement> {
  const B = RANDOM_WRITE.blockSize;
  const logBytes = benchLogSize(target);
  const slab = Slab.alloc(B, 4);
  const latency = new LatencyRecorder();
  try {
    fillWithNoise(slab, target.seed);
    const device = await Device.open(target.path, { engine: 'io_uring', queueDepth: 4 });
    const homeBlocks = (target.region - logBytes) / B;
    const nextOffset = offsetSource(RANDOM_WRITE, target.region, target.seed);
    const log: ReusedRequest = { op: 'write', offset: 0, buffers: [Buffer.from(slab.memory, 0, 3 * B)], dsync: true };
    const homeWrite: ReusedRequest = { op: 'write', offset: 0, buffers: [slab.page(3)] };
    let count = 0;
    let logPosition = 0;
    const start = performance.now();
    const end = start + seconds * 1000;
    let now = start;
    try {
      while (now < end) {
        const home = count > 0 ? device.run([homeWrite]) : Promise.resolve();
        if (logPosition + 3 * B > logBytes) logPosition = 0;
        log.offset = logPosition;
        logPosition += 3 * B;
        await device.run([log]);
        await home;
        // The home of this commit's block, written with the next commit's log write.
        homeWrite.offset = logBytes + ((nextOffset() / B) % homeBlocks) * B;
        const before = now;
        now = performance.now();
        latency.record(before, now);
        count++;
      }
      await device.run([homeWrite]);
    } finally {
      await device.close();
    }
    const elapsed = (now - start) / 1000;
    return { opsPerSecond: count / elapsed, bytesPerSecond: (count * B) / elapsed, latency: latency.summary() };
  } finally {
    latency.destroy();
    slab.release();
  }
}
