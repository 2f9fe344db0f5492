import type { DeltaJournal } from './delta-journal';
import type { JournalBlock } from './home-area';

/**
 * The journal as the writeout pipeline drives it (the volume hands this to
 * the deltas as their journal stage), with the checkpoint policy:
 *
 * A checkpoint costs two flushes and a superblock write, so it is taken
 * lazily, naming the newest delta whose home writes have completed: when
 * the log is more than half full, when an append waits for log space
 * (backpressure), and at close. The newest such delta only ever grows, and
 * home writes complete in delta order (the writeout waits for the earlier
 * delta's), so every delta up to it is at home.
 *
 * Delta numbers: the cache counts deltas in 32 bits that wrap (number.ts);
 * the log records them in 64. The deltas alive at once are a few apart, so
 * the full number is the newest one seen plus the signed 32-bit distance.
 */
export class JournalPipeline {
  /**
   * Told when a checkpoint taken off the commit path fails: no commit waits
   * for it, so the volume must fail at once, or empty commits and close()
   * would resolve over a journal that can no longer free its log.
   */
  onFailure: ((error: Error) => void) | undefined;
  /** Newest delta whose home writes (and every earlier one's) completed, in full. */
  private atHome: number;
  /** Newest delta a checkpoint was asked for. */
  private checkpointAsked: number;
  /** The last full delta number seen, for unwrapping. */
  private lastFull: number;
  private checkpointsTaken = 0;
  private pressureWaits = 0;

  constructor(private readonly journal: DeltaJournal) {
    this.atHome = this.checkpointAsked = this.lastFull = journal.lastDurableDelta;
    journal.onPressure = () => {
      this.pressureWaits++;
      this.maybeCheckpoint();
    };
  }

  /** The first delta number to open: one after the last the log holds. */
  get firstDelta(): number {
    return this.lastFull + 1;
  }

  checkDeltaSize(delta: number, count: number): void {
    this.journal.checkDeltaSize(this.full(delta), count);
  }

  log(delta: number, blocks: readonly JournalBlock[]): Promise<void> {
    return this.journal.appendDelta(this.full(delta), blocks);
  }

  writeHome(blocks: readonly JournalBlock[]): Promise<void> {
    return this.journal.writeHome(blocks);
  }

  homeWritten(delta: number): void {
    this.atHome = this.full(delta);
    this.maybeCheckpoint();
  }

  /** Checkpoints what is at home, then closes the journal: the next open has nothing to replay. */
  async close(): Promise<void> {
    try {
      if (this.journal.failure === undefined && this.checkpointable() > this.journal.checkpointedDelta) {
        await this.journal.checkpoint(this.checkpointable());
      }
    } finally {
      await this.journal.close();
    }
  }

  stats(): JournalStats {
    const space = this.journal.space();
    return {
      logBlocks: space.capacity,
      logBlocksUsed: space.used,
      checkpointedDelta: this.journal.checkpointedDelta,
      checkpoints: this.checkpointsTaken,
      logFullWaits: this.pressureWaits,
      logFullWaitMs: this.journal.waitedForSpaceMs,
    };
  }

  private maybeCheckpoint(): void {
    const space = this.journal.space();
    const delta = this.checkpointable();
    if (delta <= this.checkpointAsked || this.journal.failure !== undefined) return;
    if (space.wanted === 0 && space.used * 2 <= space.capacity) return;
    this.checkpointAsked = delta;
    this.checkpointsTaken++;
    this.journal.checkpoint(delta).catch((error: unknown) => this.onFailure?.(error instanceof Error ? error : new Error(String(error))));
  }

  /** A checkpoint may name only a delta both at home and appended (an empty delta after the last append was not). */
  private checkpointable(): number {
    return Math.min(this.atHome, this.journal.lastDurableDelta);
  }

  private full(delta: number): number {
    // The signed 32-bit distance from the last delta seen (a delta at home trails the one being logged).
    const full = this.lastFull + ((delta - this.lastFull) | 0);
    if (full > this.lastFull) this.lastFull = full;
    return full;
  }
}

export interface JournalStats {
  /** Blocks in the log ring. */
  readonly logBlocks: number;
  /** Log blocks held by deltas not yet checkpointed. */
  readonly logBlocksUsed: number;
  /** Every delta up to this one is at home and recorded so in the superblock. */
  readonly checkpointedDelta: number;
  readonly checkpoints: number;
  /** Times an append waited for log space (backpressure). */
  readonly logFullWaits: number;
  /** Milliseconds appends waited for log space, summed. */
  readonly logFullWaitMs: number;
}
