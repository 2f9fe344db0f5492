import type { Comparison, Entry } from './comparisons';
import { check, type Check, type GoalInputs } from './goals';
import type { LatencyPoint, LatencySummary } from './latency';
import type { Measurement } from './subject';

/**
 * From the runs of each subject to the rows of the report: the median run,
 * its ratios to fio and to the raw io_uring engine of the same comparison,
 * and its goals checked.
 */
export interface Row {
  comparison: string;
  title: string;
  subject: string;
  mbPerSecond: number | null;
  /** Operations per second as the job counts them (requests for fio and the raw engines, blocks, commits, writes, forks). */
  opsPerSecond: number | null;
  latency: LatencySummary | null;
  /** A measured quantity that is not a rate (JS heap bytes per cached page). */
  value: number | null;
  /** Throughput against fio's in the same comparison (bytes where both write bytes, else operations). */
  vsFio: number | null;
  /** Throughput against the raw engine's (io_uring, else threads) in the same comparison. */
  vsRaw: number | null;
  goals: Check[];
  /** The figure each repeat was ranked by, run by run: ops/s, p99 µs or the value. */
  runs: number[];
  /** tx.write latency over time (the hot set): the worst in each 10 ms. */
  series?: readonly LatencyPoint[];
  note?: string;
}

/** The runs of one subject, or why it has none. */
export interface Runs {
  readonly measurements: readonly Measurement[];
  readonly unavailable?: string;
}

function rankOf(entry: Entry, m: Measurement): number {
  if (entry.rankBy === 'p99') return m.latency?.p99Us ?? 0;
  if (entry.rankBy === 'value') return m.value ?? 0;
  return m.opsPerSecond ?? 0;
}

/** The middle run by the entry's rank (the lower middle of an even count). */
function median(entry: Entry, measurements: readonly Measurement[]): Measurement {
  const sorted = [...measurements].sort((a, b) => rankOf(entry, a) - rankOf(entry, b));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

function ratio(m: Measurement | undefined, reference: Measurement | undefined): number | null {
  if (!m || !reference) return null;
  if (m.bytesPerSecond !== undefined && reference.bytesPerSecond !== undefined) return m.bytesPerSecond / reference.bytesPerSecond;
  if (m.opsPerSecond !== undefined && reference.opsPerSecond !== undefined) return m.opsPerSecond / reference.opsPerSecond;
  return null;
}

export function rowsOf(comparison: Comparison, runs: (entry: Entry) => Runs): Row[] {
  const medians = new Map<string, Measurement>();
  for (const entry of comparison.entries) {
    const measured = runs(entry).measurements;
    if (measured.length > 0) medians.set(entry.subject.name, median(entry, measured));
  }
  const fio = medians.get('fio');
  const raw = medians.get('io_uring') ?? medians.get('threads');
  const rows = comparison.entries.map((entry): Row => {
    const { measurements, unavailable } = runs(entry);
    const m = medians.get(entry.subject.name);
    return {
      comparison: comparison.id,
      title: comparison.title,
      subject: entry.subject.name,
      mbPerSecond: m?.bytesPerSecond !== undefined ? m.bytesPerSecond / 1e6 : null,
      opsPerSecond: m?.opsPerSecond ?? null,
      latency: m?.latency ?? null,
      value: m?.value ?? null,
      vsFio: ratio(m, fio),
      vsRaw: ratio(m, raw),
      goals: [],
      runs: measurements.map((r) => rankOf(entry, r)),
      ...(m?.series ? { series: m.series } : {}),
      ...(unavailable !== undefined || m?.note !== undefined ? { note: unavailable ?? m?.note } : {}),
    };
  });
  const inputs = rows.map(
    (row): GoalInputs => ({
      subject: row.subject,
      opsPerSecond: row.opsPerSecond,
      p99Us: row.latency?.p99Us ?? null,
      p999Us: row.latency?.p999Us ?? null,
      value: row.value,
      vsFio: row.vsFio,
      mbPerSecond: row.mbPerSecond,
    }),
  );
  comparison.entries.forEach((entry, i) => {
    rows[i].goals = entry.goals.map((goal) => check(goal, inputs[i], inputs));
  });
  return rows;
}
