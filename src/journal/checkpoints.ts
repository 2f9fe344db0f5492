import type { MapDirty } from './block-map';
import type { DeltaJournal } from './delta-journal';
import type { JournalBlock, JournalBlockList, JournalRun } from './home-area';
import type { PlannedDelta, Redirector } from './redirect';

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
 *
 * Version 2 adds a third reason to checkpoint: the reserve. A block a delta
 * redirects frees its old physical block once the delta is durable, unless
 * a logged image in the live log still targets it (redirect.ts); those are
 * held until a checkpoint covers the delta. When less than half the
 * reserve is free and frees are held, or a plan waits for them, the next
 * delta at home is checkpointed.
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
  /** Version 2: the plan of each delta's blocks; set by the volume once its cache exists. */
  private redirector: Redirector | undefined;
  /** Physical blocks beyond the volume's (version 2). */
  private reserve = 0;
  /** Plans run one at a time, in delta order. */
  private plans: Promise<unknown> = Promise.resolve();
  /** A plan waits for frees that only a checkpoint releases. */
  private checkpointWanted = false;

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

  /** Version 2: redirect-on-write through this plan from now on. */
  redirectWith(redirector: Redirector, reserveBlocks: number): void {
    this.redirector = redirector;
    this.reserve = reserveBlocks;
  }

  /** Whether a delta of `logged` images and `redirected` blocks fits in the log. */
  fitsLog(logged: number, redirected: number): boolean {
    try {
      this.journal.checkDeltaSize(this.lastFull + 1, logged, redirected);
      return true;
    } catch {
      return false;
    }
  }

  checkDeltaSize(delta: number, count: number, redirected = 0): void {
    this.journal.checkDeltaSize(this.full(delta), count, redirected);
  }

  /** Where each block goes (version 2; in version 1 every block is logged at its volume block). */
  plan(delta: number, blocks: JournalBlockList, dirty: MapDirty): Promise<PlannedDelta> {
    const redirector = this.redirector;
    if (redirector === undefined) return Promise.resolve({ logged: blocks.toArray(), redirected: [] });
    const full = this.full(delta);
    const run = this.plans.then(() => redirector.plan(full, blocks, dirty));
    this.plans = run.catch(() => undefined);
    return run;
  }

  log(delta: number, blocks: readonly JournalBlock[], redirected: readonly JournalRun[] = []): Promise<void> {
    const full = this.full(delta);
    const logged = this.journal.appendDelta(full, blocks, redirected);
    const redirector = this.redirector;
    if (redirector !== undefined) {
      logged.then(
        () => redirector.durable(full),
        () => redirector.wake(),
      );
    }
    return logged;
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
        this.checkpointed();
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
      redirect: this.redirectStats(),
    };
  }

  private redirectStats(): RedirectStats | undefined {
    const redirector = this.redirector;
    if (redirector === undefined) return undefined;
    const { allocator, counters } = redirector;
    return {
      ...counters,
      reserveBlocks: this.reserve,
      freeBlocks: allocator.free,
      pendingFreeBlocks: allocator.pending + redirector.heldBlocks,
    };
  }

  /** A plan waits for held frees: checkpoint what is at home as soon as it can be. */
  askCheckpoint(): void {
    this.checkpointWanted = true;
    this.maybeCheckpoint();
  }

  /** Frees held for a checkpoint and the reserve running low (or a plan waiting for them). */
  private reserveLow(): boolean {
    const redirector = this.redirector;
    if (redirector === undefined || redirector.heldBlocks === 0) return false;
    return this.checkpointWanted || redirector.allocator.free * 2 < this.reserve;
  }

  private maybeCheckpoint(): void {
    const space = this.journal.space();
    const delta = this.checkpointable();
    if (delta <= this.checkpointAsked || this.journal.failure !== undefined) return;
    if (space.wanted === 0 && space.used * 2 <= space.capacity && !this.reserveLow()) return;
    this.checkpointAsked = delta;
    this.checkpointsTaken++;
    this.checkpointWanted = false;
    this.journal.checkpoint(delta).then(
      () => this.checkpointed(),
      (error: unknown) => {
        this.redirector?.wake();
        this.onFailure?.(error instanceof Error ? error : new Error(String(error)));
      },
    );
  }

  /** A checkpoint is durable: the frees held for it are free now. */
  private checkpointed(): void {
    this.redirector?.checkpointed(this.journal.checkpointedDelta);
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
  /** Version 2: where the blocks went; undefined in version 1. */
  readonly redirect: RedirectStats | undefined;
}

export interface RedirectStats {
  /** Data blocks written once, to new physical blocks. */
  readonly redirectedBlocks: number;
  /** Data blocks logged whole (short runs, or no room in the reserve). */
  readonly loggedBlocks: number;
  /** Map and summary blocks logged. */
  readonly mapBlocksLogged: number;
  /** Times a delta's plan waited for a checkpoint to free reserve. */
  readonly reserveWaits: number;
  /** Physical blocks beyond the volume's. */
  readonly reserveBlocks: number;
  /** Physical blocks allocatable now. */
  readonly freeBlocks: number;
  /** Physical blocks freed by deltas not checkpointed yet. */
  readonly pendingFreeBlocks: number;
}
