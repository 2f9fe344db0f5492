import { performance } from 'node:perf_hooks';
import { build, type Histogram } from 'hdr-histogram-js';

/**
 * Latency of one operation kind through a run: an HDR histogram for the
 * percentiles, and the worst value in each 10 ms of the run for the chart of
 * latency over time.
 *
 * Values go in as nanoseconds, not microseconds: a write to a block already
 * dirty in the open delta takes well under a microsecond, and a histogram of
 * whole microseconds would report its p50 as 0 or 1. They come out in
 * microseconds (fractional), as the table and the JSON give them.
 */
export interface LatencySummary {
  readonly count: number;
  readonly p50Us: number;
  readonly p99Us: number;
  /** Where the source gives it (fio's clat percentiles here stop at p99). */
  readonly p999Us?: number;
  readonly maxUs: number;
}

/** The worst latency in one slice of the run: `atMs` from the run's start. */
export interface LatencyPoint {
  readonly atMs: number;
  readonly maxUs: number;
}

export const SLICE_MS = 10;

export class LatencyRecorder {
  private readonly histogram: Histogram = build({ numberOfSignificantValueDigits: 3 });
  private readonly slices: number[] = [];
  private readonly origin = performance.now();

  /** Records one operation that started at `startMs` and ended at `endMs` (performance.now()). */
  record(startMs: number, endMs: number): void {
    const ns = Math.max(1, Math.round((endMs - startMs) * 1e6));
    this.histogram.recordValue(ns);
    const slice = Math.floor((endMs - this.origin) / SLICE_MS);
    const worst = this.slices[slice];
    if (worst === undefined || ns > worst) this.slices[slice] = ns;
  }

  summary(): Required<LatencySummary> {
    const h = this.histogram;
    return {
      count: h.totalCount,
      p50Us: h.getValueAtPercentile(50) / 1e3,
      p99Us: h.getValueAtPercentile(99) / 1e3,
      p999Us: h.getValueAtPercentile(99.9) / 1e3,
      maxUs: h.maxValue / 1e3,
    };
  }

  /** The worst latency of each slice that saw an operation end. */
  series(): LatencyPoint[] {
    const points: LatencyPoint[] = [];
    this.slices.forEach((ns, slice) => points.push({ atMs: slice * SLICE_MS, maxUs: ns / 1e3 }));
    return points;
  }

  /** Frees the histogram's buffers; the summary and series must be taken first. */
  destroy(): void {
    this.histogram.destroy();
  }
}
