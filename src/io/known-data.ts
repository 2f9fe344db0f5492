/**
 * Byte ranges of a file known to hold data: disjoint, sorted, adjacent
 * ones merged. Only data is remembered, never a hole. While a volume is
 * open its file only gains data (its own writes fill holes; nothing here
 * punches them), so what is known stays true; a hole does not, since the
 * next write may fill it.
 */
export class KnownData {
  private starts: number[] = [];
  private ends: number[] = [];

  /** Ranges kept at most: a file fragmented beyond this is asked again rather than mapped in memory. */
  static readonly MAX_RANGES = 4096;

  /** Whether [start, end) lies wholly inside one known range. */
  covers(start: number, end: number): boolean {
    const i = this.lastStartingAtOrBefore(start);
    return i >= 0 && this.ends[i] >= end;
  }

  /** Learns that [start, end) holds data. */
  add(start: number, end: number): void {
    if (end <= start) return;
    // The ranges that touch or overlap [start, end) are first .. last - 1: they merge into one.
    let first = this.lastStartingAtOrBefore(start);
    if (first < 0 || this.ends[first] < start) first++;
    let last = first;
    while (last < this.starts.length && this.starts[last] <= end) last++;
    const mergedStart = last > first ? Math.min(start, this.starts[first]) : start;
    const mergedEnd = last > first ? Math.max(end, this.ends[last - 1]) : end;
    if (last === first && this.starts.length >= KnownData.MAX_RANGES) {
      this.starts = [];
      this.ends = [];
      first = last = 0;
    }
    this.starts.splice(first, last - first, mergedStart);
    this.ends.splice(first, last - first, mergedEnd);
  }

  /** Ranges known, for tests. */
  get ranges(): [number, number][] {
    return this.starts.map((s, i) => [s, this.ends[i]]);
  }

  /** The index of the last range starting at or before `offset`, or -1. */
  private lastStartingAtOrBefore(offset: number): number {
    let lo = 0;
    let hi = this.starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.starts[mid] <= offset) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }
}
