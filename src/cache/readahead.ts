/**
 * On-demand readahead for one mapping, after Linux's (mm/readahead.c): the
 * policy only, in pages; the cache does the reading.
 *
 * A stream is a run of pages read in order. Each has a window, the pages
 * last read ahead for it (`start`, `size`), and a mark: the page whose first
 * use starts the next window asynchronously, so that the reader finds its
 * pages in the cache (or in flight) instead of waiting for each.
 *
 *   miss at p, no stream expects p      -> random: read p alone, and
 *                                          remember a stream that expects p+1
 *   miss at p, a stream expects p       -> sequential: a window from p,
 *     (p is its next page, or inside       the first of initialSize pages,
 *      a window whose pages were lost)     then each one grown; mark p+1
 *   first use of a marked page          -> the next window, from the end of
 *                                          this one, grown; mark its first page
 *
 *   a window cut short (the share of     -> the stream's window ends where
 *   pages read ahead is full)               the pages admitted end: its
 *                                           reader misses there next, in
 *                                           sequence, and its next window
 *                                           starts from there
 *
 * Windows grow fourfold while small and twofold after (as Linux's
 * get_next_ra_size), up to `maxPages`. Several readers interleaving in one
 * mapping each keep a stream (up to MAX_STREAMS, the least recently used
 * one replaced); a reader that jumps elsewhere leaves its stream behind, to
 * be replaced, and its pages read ahead and never used are evicted first
 * among what it read (they are the oldest untouched pages on the LRU) and
 * counted as wasted.
 */

/** Streams tracked per mapping: enough for a few interleaved sequential readers, few enough to scan on each miss. */
export const MAX_STREAMS = 8;

/** A run of pages to read ahead, and the page whose use starts the next one (or -1). */
export interface Window {
  readonly start: number;
  readonly size: number;
  readonly mark: number;
}

interface Stream {
  /** The window last read ahead; size 0 before the stream has shown it is sequential. */
  start: number;
  size: number;
  /** The page the stream would miss next if nothing were read ahead. */
  next: number;
  mark: number;
  /** When it was last used, for replacement. */
  used: number;
}

export class Readahead {
  private readonly streams: Stream[] = [];
  private clock = 0;

  /** `maxPages`: the largest window (at least 1). */
  constructor(readonly maxPages: number) {}

  /**
   * A reader missed page `page`, wanting `wanted` pages from it: the window
   * to read (it starts at `page` and covers at least what is wanted), or
   * undefined for a random read (read what is wanted, nothing more).
   */
  miss(page: number, wanted: number): Window | undefined {
    const now = ++this.clock;
    const stream = this.streams.find((s) => s.next === page || (s.size > 0 && page >= s.start && page < s.start + s.size));
    if (stream === undefined) {
      this.remember({ start: page, size: 0, next: page + wanted, mark: -1, used: now });
      return undefined;
    }
    const size = Math.max(wanted, stream.size === 0 ? this.initialSize(wanted) : this.grown(stream.size));
    return this.advance(stream, page, size, page + wanted < page + size ? page + wanted : -1, now);
  }

  /** The marked page `page` was used: the next window of its stream, or undefined if the stream has been replaced. */
  marked(page: number): Window | undefined {
    const stream = this.streams.find((s) => s.mark === page);
    if (stream === undefined) return undefined;
    const start = stream.start + stream.size;
    const size = this.grown(stream.size);
    return this.advance(stream, start, size, start, ++this.clock);
  }

  /**
   * The window that starts at `start` was read only up to `end` (exclusive):
   * the stream's window is what was read, so that its next window starts
   * where the pages read end, not past pages nobody read. The mark, if it was
   * not reached, is gone: the reader's miss at `end` continues the stream.
   */
  cut(start: number, end: number): void {
    const stream = this.streams.find((s) => s.start === start && s.size > end - start);
    if (stream === undefined) return;
    stream.size = end - start;
    stream.next = end;
    if (stream.mark >= end) stream.mark = -1;
  }

  private advance(stream: Stream, start: number, size: number, mark: number, now: number): Window {
    stream.start = start;
    stream.size = size;
    stream.next = start + size;
    stream.mark = mark;
    stream.used = now;
    return { start, size, mark };
  }

  private initialSize(wanted: number): number {
    return Math.min(this.maxPages, Math.max(4 * wanted, 4));
  }

  private grown(size: number): number {
    return Math.min(this.maxPages, size < this.maxPages / 16 ? 4 * size : 2 * size);
  }

  private remember(stream: Stream): void {
    if (this.streams.length < MAX_STREAMS) {
      this.streams.push(stream);
      return;
    }
    let oldest = 0;
    for (let i = 1; i < this.streams.length; i++) if (this.streams[i].used < this.streams[oldest].used) oldest = i;
    this.streams[oldest] = stream;
  }
}
