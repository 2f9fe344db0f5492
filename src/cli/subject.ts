import type { Workload } from './workloads';

/**
 * What a bench run measures: a *subject* (fio, a raw engine, later the cache
 * in its modes) running a *workload* on a *target*. Each subject is measured
 * on the same target with the same parameters, so the rows of one workload
 * compare like with like.
 */
export interface Target {
  readonly path: string;
  /** Bytes from offset 0 that the workloads cover: a multiple of every block size. */
  readonly region: number;
  /** Seeds the random offsets and the data written. */
  readonly seed: number;
}

export interface Measurement {
  /** Bytes written per second, from the first submission to the last completion. */
  readonly bytesPerSecond: number;
  readonly iops: number;
  /** Per-request latency, where the subject can observe it request by request. */
  readonly latency?: { readonly p50Ns: number; readonly p99Ns: number };
}

export interface Subject {
  /** The name in the table and the JSON: `fio`, `io_uring`, `threads`. */
  readonly name: string;
  /** Why it cannot run here (the row says so instead of numbers); undefined when it can. */
  readonly unavailable: string | undefined;
  run(workload: Workload, target: Target): Promise<Measurement>;
}
