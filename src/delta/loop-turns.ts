import { performance } from 'node:perf_hooks';

/**
 * Lets the event loop turn while writeout is in flight.
 *
 * The I/O engines deliver completions on the event loop, and they submit
 * the requests queued behind the queue depth only as completions come in.
 * A writer whose changes find every block cached never waits for I/O: its
 * awaits all resolve as microtasks, the loop does not turn, and the device
 * goes idle with the writeout half done (measured: a 64 MiB delta took five
 * times as long to write as the raw engine took for the same requests).
 *
 * So a change, while deltas are being written, first yields to the loop
 * (setImmediate: microseconds, not a wait on the device) if the work since
 * the loop last turned has gone on for YIELD_AFTER_MS. That is about the
 * time the device takes to drain a queue of requests, so it stays busy, and
 * a writer that does turn the loop on its own pays only the check.
 */
const YIELD_AFTER_MS = 0.25;

export class LoopTurns {
  /** When the work since the loop last turned began. */
  private stretchStart = performance.now();
  private watching = false;

  /** A promise to await before the next change when the loop is overdue for a turn, else undefined. */
  overdue(): Promise<void> | undefined {
    if (!this.watching) {
      // The last turn we watched for has come: the loop turned since the
      // last check, so this stretch of work starts now. (Counting from that
      // turn would count the time the loop then spent waiting for I/O, and
      // make a writer that awaits each commit yield once per commit.)
      this.stretchStart = performance.now();
      this.watch();
      return undefined;
    }
    if (performance.now() - this.stretchStart < YIELD_AFTER_MS) return undefined;
    return loopTurn();
  }

  /** Watches for the next turn of the loop. */
  private watch(): void {
    this.watching = true;
    setImmediate(() => (this.watching = false));
  }
}

/** One turn of the event loop (setImmediate): for work that would otherwise settle in microtasks alone. */
export function loopTurn(): Promise<void> {
  return new Promise<void>((resolve) => setImmediate(resolve));
}
