import type { IoRequest } from '../io/request';
import type { JournalBlock, JournalRun } from './home-area';

/**
 * What the delta writeout pipeline needs of the journal (`journal: true`).
 * JournalWriter implements it; the pipeline holds one per open volume.
 *
 * A delta's life in journal mode, and what may happen in each state:
 *
 *   closed      the delta transition has frozen its images (page memory,
 *               blockSize bytes each) and sorted them by home.
 *               checkDeltaSize() was called at the transition: a delta the
 *               log can never hold is refused there, by name.
 *     │ appendDelta(N, blocks)          images + descriptor + commit record
 *     ▼                                 written to the log, then a flush
 *   logged      durable: commit() of N may resolve (G3). A crash from here on
 *               replays N on open. Appends of N+1, N+2 … may be queued
 *               before N resolves: they are written strictly in order.
 *     │ io.run(homeRequests(blocks))    home writes from the same frozen
 *     ▼                                 images; never started before N is
 *   at home     logged (a crash would leave part of N at home and no commit
 *               record to complete it). Home writes of N must complete before
 *               N+1's home writes are submitted, so that a block written by
 *               both ends with N+1's image. Once they complete, the frozen
 *               pages of N may be released: the memory is no longer read by
 *               any I/O, and if the home writes are lost to a power cut,
 *               replay rewrites them from the log.
 *     │ checkpoint(N)                   flush (home writes durable), then the
 *     ▼                                 superblock, then a flush
 *   checkpointed  N's log space is free for the ring's next lap.
 *
 * Checkpoints cost two flushes and a superblock write, so a pipeline
 * checkpoints lazily, with the newest delta whose home writes have
 * completed: when `space().used` passes half the log, when `onPressure`
 * fires, and before close. appendDelta() waits while the log is full
 * (backpressure): it calls `onPressure` and resolves only after a checkpoint
 * frees enough space. So the home writes and checkpoint of earlier deltas
 * must never wait on a later append, or the pipeline deadlocks; and if home
 * writes were still running when `onPressure` fired, checkpoint again as
 * they complete while `space().wanted > 0`.
 *
 * Errors: an invalid argument rejects with TypeError/RangeError before any
 * I/O. The first failed write or flush rejects with that system error, and
 * puts the journal in a failed state: every later call rejects with
 * ERR_JOURNAL_FAILED (its `cause` the first error), so nothing is
 * acknowledged that is not durable (G6). Reopening replays the log.
 */
export interface DeltaJournal {
  readonly blockSize: number;
  /** Blocks in the data area: homes are 0 .. blockCount-1. */
  readonly blockCount: number;
  /** The most blocks one delta may have (the log must hold it whole). */
  readonly maxDeltaBlocks: number;
  /** Every delta up to this one is durable at home (the superblock's checkpoint). */
  readonly checkpointedDelta: number;
  /** The last delta whose commit record is durable; the next appended delta must be greater. */
  readonly lastDurableDelta: number;
  /** The first error that failed the journal, if any. */
  readonly failure: Error | undefined;
  /** Milliseconds appends have spent waiting for log space (backpressure), summed. */
  readonly waitedForSpaceMs: number;
  /** Called when an append waits for log space: checkpoint the newest delta whose home writes completed. */
  onPressure: ((pressure: LogPressure) => void) | undefined;

  /** Throws ERR_DELTA_TOO_LARGE when a delta of `count` logged (and `redirected`) blocks can never fit in the log. */
  checkDeltaSize(delta: number, count: number, redirected?: number): void;
  /**
   * Makes delta `delta` durable in the log: resolves once its images,
   * descriptor and commit record are on stable storage, and every earlier
   * appended delta's too. `blocks` are sorted by strictly ascending home,
   * each image blockSize bytes of aligned memory (slab pages) that must not
   * change until the home writes complete. Delta numbers strictly increase;
   * gaps (empty deltas that were not appended) are allowed. `redirected`
   * (version 2): runs of blocks written once, to their new homes in the
   * physical area (sorted by home, apart), before the same flush; the
   * descriptor holds their checksums.
   */
  appendDelta(delta: number, blocks: readonly JournalBlock[], redirected?: readonly JournalRun[]): Promise<void>;
  /** The vectored writes that put `blocks` at home; submit them only after appendDelta resolved. */
  homeRequests(blocks: readonly JournalBlock[]): IoRequest[];
  /** Runs homeRequests(blocks); a failure fails the journal. */
  writeHome(blocks: readonly JournalBlock[]): Promise<void>;
  /**
   * Records that every appended delta ≤ `delta` is at home: flushes, writes
   * the superblock copy not in force, flushes, then frees their log space.
   * Call only once those deltas' home writes have completed. Checkpoints
   * run one at a time, in call order; a delta already checkpointed is a no-op.
   */
  checkpoint(delta: number): Promise<void>;
  space(): LogSpace;
  /** Waits for appends and checkpoints under way, then frees the journal's memory. The device stays open. */
  close(): Promise<void>;
}

export interface LogSpace {
  /** Blocks in the log ring. */
  readonly capacity: number;
  /** Blocks held by deltas that are logged but not yet checkpointed. */
  readonly used: number;
  readonly free: number;
  /** Blocks that a waiting append needs (0 when none waits). */
  readonly wanted: number;
}

export interface LogPressure {
  /** The delta whose append waits. */
  readonly delta: number;
  /** Log blocks it needs. */
  readonly needed: number;
  readonly free: number;
  /** The newest delta that a checkpoint may name (the last durable in the log). */
  readonly checkpointable: number;
}
