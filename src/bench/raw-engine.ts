import { native } from '../native';
import { Device, type EngineKind } from '../io/device';
import { systemError } from '../io/errors';
import type { IoRequest } from '../io/request';
import { Slab } from '../io/slab';
import { performance } from 'node:perf_hooks';
import { LatencyRecorder } from './latency';
import { Prng } from './prng';
import type { Measurement, Subject, Target } from './subject';
import { offsetSource, RANDOM_WRITE, requestCount, type Workload } from './workloads';

/**
 * The raw engines (io_uring, thread pool) through `Device`, with no cache:
 * the floor that everything above them is measured against.
 *
 * How the hot loop keeps the engine busy without measuring JavaScript:
 * the engine queues requests beyond its queue depth and refills its ring
 * from each completion before any JS runs, so batches larger than the depth
 * keep it full on their own. A batch costs JS time to build and to validate
 * (the addon checks every request synchronously in `submit`), and the ring is
 * not reaped meanwhile; one batch of the whole pass would leave the device
 * idle for that whole time at the start. So the pass goes out in batches of
 * BATCH_DEPTHS × queue depth requests, two outstanding: while one is being
 * refilled and submitted, the other holds enough queued requests to keep the
 * ring full. Request objects, their arrays and the buffers are allocated
 * before the clock starts and reused; the loop only writes new offsets.
 *
 * Latency is not measured here: a batch reports its completions together, so
 * a request's own completion time is not observable from JS (see the bench
 * report for the native change that would give it).
 */
const BATCH_DEPTHS = 4;
const BATCHES_IN_FLIGHT = 2;

/** A request whose offset the hot loops move from run to run. */
export interface ReusedRequest extends IoRequest {
  offset: number;
}

export function engineUnavailable(engine: EngineKind): string | undefined {
  const probe = engine === 'io_uring' ? native.probeIoUring() : 0;
  return probe < 0 ? `io_uring unavailable here (${systemError(probe, 'io_uring_setup').code})` : undefined;
}

export function rawEngineSubject(engine: EngineKind, workload: Workload): Subject {
  return { name: engine, unavailable: engineUnavailable(engine), run: (target) => runRaw(workload, target, engine) };
}

/** Runs one pass over the target's region on a device and its slab: resolves with its seconds. */
type Pass = (device: Device, workload: Workload, target: Target, slab: Slab, total: number) => Promise<number>;

/** One pass of `workload` over the target's region through `engine`, by `pass` (batched, by default). */
export async function runRaw(workload: Workload, target: Target, engine: EngineKind | 'auto', pass: Pass = drive): Promise<Measurement> {
  const total = requestCount(workload, target.region);
  const slab = Slab.alloc(workload.blockSize, workload.queueDepth);
  try {
    fillWithNoise(slab, target.seed);
    const device = await Device.open(target.path, { engine, queueDepth: workload.queueDepth });
    let seconds: number;
    try {
      seconds = await pass(device, workload, target, slab, total);
    } finally {
      await device.close();
    }
    return { bytesPerSecond: (total * workload.blockSize) / seconds, opsPerSecond: total / seconds };
  } finally {
    slab.release();
  }
}

/**
 * Data that no layer below can compress or skip as zeroes (thin provisioning,
 * compressing controllers), as fio's own buffers are.
 */
export function fillWithNoise(slab: Slab, seed: number): void {
  const words = new Uint32Array(slab.memory);
  const prng = new Prng(seed ^ 0x9e3779b9);
  for (let i = 0; i < words.length; i++) words[i] = prng.next32();
}

/** Runs the pass; resolves with its duration in seconds, first submission to last completion. */
function drive(device: Device, workload: Workload, target: Target, slab: Slab, total: number): Promise<number> {
  const depth = workload.queueDepth;
  const nextOffset = offsetSource(workload, target.region, target.seed);
  const buffers = Array.from({ length: depth }, (_, i) => [slab.page(i)]);
  const batchSize = Math.min(total, depth * BATCH_DEPTHS);
  const batches = Array.from({ length: BATCHES_IN_FLIGHT }, () =>
    Array.from({ length: batchSize }, (_, i): ReusedRequest => ({ op: workload.op, offset: 0, buffers: buffers[i % depth] })),
  );
  return new Promise<number>((resolve, reject) => {
    let issued = 0;
    let completed = 0;
    let failed = false;
    const start = process.hrtime.bigint();
    const issue = (batch: ReusedRequest[]): void => {
      const count = Math.min(batch.length, total - issued);
      batch.length = count;
      for (let i = 0; i < count; i++) batch[i].offset = nextOffset();
      issued += count;
      device.run(batch).then(
        () => {
          completed += count;
          if (completed === total) resolve(Number(process.hrtime.bigint() - start) / 1e9);
          else if (issued < total && !failed) issue(batch);
        },
        (error: unknown) => {
          failed = true;
          reject(error);
        },
      );
    };
    for (const batch of batches) if (issued < total) issue(batch);
  });
}

/**
 * The engine driven as the cache's readers drive it: `workload.queueDepth`
 * loops, each awaiting one single-block request at a time (a request object
 * per read, as a miss makes), at the same seeded offsets as the batched pass.
 * Between the batched row and this one is what one promise per request
 * costs the JS thread; between this row and the cache's, what the cache adds.
 */
export function rawAwaitedSubject(engine: EngineKind, workload: Workload): Subject {
  return {
    name: `${engine}, ${workload.queueDepth} awaited loops`,
    unavailable: engineUnavailable(engine),
    run: (target) => runRaw(workload, target, engine, driveAwaited),
  };
}

/** The awaited pass: `workload.queueDepth` loops, each with its own page, until `total` requests have completed. */
async function driveAwaited(device: Device, workload: Workload, target: Target, slab: Slab, total: number): Promise<number> {
  const nextOffset = offsetSource(workload, target.region, target.seed);
  let left = total;
  const start = performance.now();
  const loop = async (slot: number): Promise<void> => {
    const buffers = [slab.page(slot)];
    while (left > 0) {
      left--;
      await device.run([{ op: workload.op, offset: nextOffset(), buffers }]);
    }
  };
  await Promise.all(Array.from({ length: workload.queueDepth }, (_, slot) => loop(slot)));
  return (performance.now() - start) / 1000;
}

/**
 * The floor under an awaited commit of one block: one 4 KiB write at a
 * seeded random offset, then a flush (fdatasync, as the cache's commit),
 * each awaited, again and again for `seconds`. Latency is of the pair.
 */
export function rawSyncSubject(engine: EngineKind, seconds: number): Subject {
  return { name: engine, unavailable: engineUnavailable(engine), run: (target) => runRawSync(target, engine, seconds) };
}

async function runRawSync(target: Target, engine: EngineKind, seconds: number): Promise<Measurement> {
  const slab = Slab.alloc(RANDOM_WRITE.blockSize, 1);
  const latency = new LatencyRecorder();
  try {
    fillWithNoise(slab, target.seed);
    const device = await Device.open(target.path, { engine, queueDepth: 1 });
    const nextOffset = offsetSource(RANDOM_WRITE, target.region, target.seed);
    const request: ReusedRequest = { op: 'write', offset: 0, buffers: [slab.page(0)] };
    let count = 0;
    const start = performance.now();
    const end = start + seconds * 1000;
    let now = start;
    try {
      while (now < end) {
        request.offset = nextOffset();
        await device.run([request]);
        await device.flush();
        const before = now;
        now = performance.now();
        latency.record(before, now);
        count++;
      }
    } finally {
      await device.close();
    }
    const elapsed = (now - start) / 1000;
    return { opsPerSecond: count / elapsed, bytesPerSecond: (count * RANDOM_WRITE.blockSize) / elapsed, latency: latency.summary() };
  } finally {
    latency.destroy();
    slab.release();
  }
}
