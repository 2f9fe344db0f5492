import type { LatencyPoint, LatencySummary } from './latency';

/**
 * What a bench run measures: a *subject* (fio, a raw engine, the cache in
 * one of its modes) doing one job on a *target*. Subjects that are compared
 * with each other do the same work on the same target with the same
 * parameters, so the rows of one comparison compare like with like.
 */
export interface Target {
  readonly path: string;
  /** Bytes from offset 0 that the workloads cover: a multiple of every block size. */
  readonly region: number;
  /** Seeds the random offsets and the data written. */
  readonly seed: number;
}

export interface Measurement {
  /** Operations per second, as the job counts them: requests, blocks, commits, writes or forks. */
  readonly opsPerSecond?: number;
  /** Bytes written to the device per second, from the first submission to the last completion. */
  readonly bytesPerSecond?: number;
  /** Per-operation latency, where the subject observes it operation by operation. */
  readonly latency?: LatencySummary;
  /** The worst latency in each 10 ms of the run, for the chart of latency over time. */
  readonly series?: readonly LatencyPoint[];
  /** A measured quantity that is not a rate (JS heap bytes per cached page). */
  readonly value?: number;
  /** What the numbers alone do not say (forks counted, no gc available, ...). */
  readonly note?: string;
}

export interface Subject {
  /** The name in the table and the JSON: `fio`, `io_uring`, `ordered`, `fork: false`, ... */
  readonly name: string;
  /** Why it cannot run here (the row says so instead of numbers); undefined when it can. */
  readonly unavailable: string | undefined;
  run(target: Target): Promise<Measurement>;
}

/**
 * Thrown by a run that finds out only when it starts that it cannot run here
 * (open() refuses a mode that is not built yet): the row says why, and later
 * repeats skip it. Any other error fails the bench.
 */
export class NotAvailable extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'NotAvailable';
  }
}
