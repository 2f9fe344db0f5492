/**
 * The targets the cache issue (3) and the journal issue (4) set for each
 * measured row, and their check against the numbers of one run. A goal is
 * stated against the row's own numbers or against another row of the same
 * comparison; its check is undefined ("—") when a number it needs is
 * missing (fio not installed, a mode not available).
 */
export type Goal =
  /** Throughput at least `atLeast` × fio's in the same comparison. */
  | { readonly kind: 'vs-fio'; readonly atLeast: number }
  /** Bytes per second at least `atLeast` × the row `subject`'s (fio with the same fsync cadence, another way to do the same job). */
  | { readonly kind: 'vs-row'; readonly subject: string; readonly atLeast: number }
  /** Operations per second at least `atLeast`. */
  | { readonly kind: 'rate'; readonly atLeast: number }
  /** The row's measured value at most `atMost` `unit`. */
  | { readonly kind: 'value'; readonly atMost: number; readonly unit: string }
  /** p99 latency at least `times` lower than the row `subject`'s. */
  | { readonly kind: 'p99-below'; readonly subject: string; readonly times: number }
  /** p99 latency at most `times` the row `subject`'s. */
  | { readonly kind: 'p99-within'; readonly subject: string; readonly times: number }
  /** p99.9 latency at most `times` the row `subject`'s. */
  | { readonly kind: 'p999-within'; readonly subject: string; readonly times: number }
  /** Operations per second at least `atLeast` × the row `subject`'s (another store, fio's durable writes). */
  | { readonly kind: 'ops-vs-row'; readonly subject: string; readonly atLeast: number };

/** What a goal's check needs of a row. */
export interface GoalInputs {
  readonly subject: string;
  readonly opsPerSecond: number | null;
  readonly p99Us: number | null;
  readonly p999Us?: number | null;
  readonly value: number | null;
  readonly vsFio: number | null;
  /** Throughput, for goals against another row; absent where no goal needs it. */
  readonly mbPerSecond?: number | null;
}

export interface Check {
  readonly kind: Goal['kind'];
  /** The goal's number: the ratio, rate, value or factor that `actual` is judged against. */
  readonly threshold: number;
  /** The goal in words: `≥ 0.9 × fio`, `p99 ≥ 10× below fork: false`. */
  readonly goal: string;
  /** The number the goal is about, as measured (a ratio, a rate, a value); null when missing. */
  readonly actual: number | null;
  readonly met: boolean | null;
}

export function check(goal: Goal, row: GoalInputs, siblings: readonly GoalInputs[]): Check {
  const other = (name: string): GoalInputs | undefined => siblings.find((s) => s.subject === name);
  switch (goal.kind) {
    case 'vs-fio':
      return judged(goal, goal.atLeast, `≥ ${goal.atLeast} × fio`, row.vsFio, (x) => x >= goal.atLeast);
    case 'rate':
      return judged(goal, goal.atLeast, `≥ ${formatCount(goal.atLeast)}/s`, row.opsPerSecond, (x) => x >= goal.atLeast);
    case 'value':
      return judged(goal, goal.atMost, `≤ ${goal.atMost} ${goal.unit}`, row.value, (x) => x <= goal.atMost);
    case 'vs-row': {
      const theirs = other(goal.subject)?.mbPerSecond ?? null;
      const times = theirs !== null && theirs > 0 && row.mbPerSecond != null ? row.mbPerSecond / theirs : null;
      return judged(goal, goal.atLeast, `≥ ${goal.atLeast} × ${goal.subject}`, times, (x) => x >= goal.atLeast);
    }
    case 'p99-below': {
      const theirs = other(goal.subject)?.p99Us ?? null;
      const times = theirs !== null && row.p99Us !== null && row.p99Us > 0 ? theirs / row.p99Us : null;
      return judged(goal, goal.times, `p99 ≥ ${goal.times}× below ${goal.subject}`, times, (x) => x >= goal.times);
    }
    case 'p99-within': {
      const theirs = other(goal.subject)?.p99Us ?? null;
      const times = theirs !== null && row.p99Us !== null && theirs > 0 ? row.p99Us / theirs : null;
      return judged(goal, goal.times, `p99 ≤ ${goal.times}× ${goal.subject}`, times, (x) => x <= goal.times);
    }
    case 'p999-within': {
      const theirs = other(goal.subject)?.p999Us ?? null;
      const mine = row.p999Us ?? null;
      const times = theirs !== null && mine !== null && theirs > 0 ? mine / theirs : null;
      return judged(goal, goal.times, `p99.9 ≤ ${goal.times}× ${goal.subject}`, times, (x) => x <= goal.times);
    }
    case 'ops-vs-row': {
      const theirs = other(goal.subject)?.opsPerSecond ?? null;
      const times = theirs !== null && theirs > 0 && row.opsPerSecond !== null ? row.opsPerSecond / theirs : null;
      return judged(goal, goal.atLeast, `ops ≥ ${goal.atLeast} × ${goal.subject}`, times, (x) => x >= goal.atLeast);
    }
  }
}

function judged(goal: Goal, threshold: number, text: string, actual: number | null, meets: (x: number) => boolean): Check {
  return { kind: goal.kind, threshold, goal: text, actual, met: actual === null ? null : meets(actual) };
}

/** 2000000 as `2M`, 500000 as `500K`. */
export function formatCount(n: number): string {
  if (n >= 1e6) return `${+(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${+(n / 1e3).toFixed(1)}K`;
  return n.toFixed(n >= 100 ? 0 : 1);
}
