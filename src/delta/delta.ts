/**
 * A delta: an atomic commit unit, and the states it goes through on its way
 * to the disk.
 *
 *   OPEN ──commit(), or the high-water mark──▶ REQUESTED
 *   REQUESTED ──a place in flight (fewer than maxDeltas there)──▶ CLOSING
 *   CLOSING ──the changes in progress ended; delta number moves on──▶ WRITING
 *   CLOSING ──nothing landed in it──▶ (gives way to a fresh OPEN delta of the same number)
 *   WRITING ──its home writes completed──▶ FLUSHING
 *   FLUSHING ──flushed, and the delta before it DURABLE──▶ DURABLE
 *   WRITING, FLUSHING ──a write or flush failed, here or in an earlier delta──▶ FAILED
 *
 *   OPEN      The front end's delta: every change holds the delta lock
 *             shared and dirties blocks in this delta's slot. Exactly one
 *             delta is open (OPEN or REQUESTED).
 *   REQUESTED Still open: changes go on landing in it. A commit or the
 *             high-water mark asked it to close, and it waits for a place
 *             in flight. Every commit() that arrives meanwhile attaches to
 *             it and resolves with it (group commit): the wait for the disk
 *             is the committers', never the writers'.
 *   CLOSING   The switch: the delta lock is asked exclusive, so the changes
 *             in progress run to their end (CPU work, never the device) and
 *             new ones queue for the next delta. The hold is the instant of
 *             the switch; no device I/O is awaited under it.
 *   WRITING   Closed; its dirty lists no longer grow. Its writeout waits for
 *             the earlier delta's writes to complete (so two writes of one
 *             block reach the device in delta order), maps, sorts and
 *             coalesces its dirty blocks, and writes them in one batch. The
 *             front end writing one of its blocks forks the page.
 *   FLUSHING  Its writes are done: its blocks are CLEAN, its frozen pages
 *             freed, its slot free for reuse. It flushes the device, then
 *             waits for the earlier delta to be durable.
 *   DURABLE   It and every earlier delta are on stable storage (G3, G4):
 *             `commit()` resolves with its number.
 *   FAILED    Not durable and never will be: `commit()` rejects with the
 *             system error, as does every later delta's; the volume refuses
 *             new changes.
 *
 * With a journal (`journal: true`) a delta is durable once it is in the log,
 * and its home writes come after:
 *
 *   WRITING ──images, descriptor and commit record in the log, flushed, and
 *             the delta before it LOGGED──▶ LOGGED
 *   LOGGED ──home writes completed (after the earlier delta's)──▶ AT_HOME
 *   WRITING, LOGGED ──a write or flush failed──▶ FAILED
 *
 *   LOGGED    Durable (G3, G4): `commit()` resolves. Its pages stay frozen:
 *             the home writes read the same images the log holds, so the
 *             front end still forks rather than waits.
 *   AT_HOME   Its blocks are CLEAN, its frozen pages freed, its slot free.
 *             A checkpoint may now free its log space. A failure here no
 *             longer undoes the commit (replay on open finishes it) but
 *             fails the volume like any other.
 *
 * Invariants:
 *   - At most `maxDeltas` deltas are in flight (WRITING to DURABLE, or to
 *     AT_HOME with a journal), plus the open one: their slots are distinct.
 *   - A change belongs to the delta that was open when it took the delta
 *     lock; the lock serves in call order, so a change called before a
 *     commit() is in the delta that commit resolves with (or an earlier one).
 *   - A writer waits for the disk only at a stated bound: a read of a block
 *     not cached; the cache full of dirty and frozen pages (`spaceWaits`);
 *     with a journal, a REQUESTED delta that has reached the share of the log
 *     one delta may take (`fullDeltaWaits`), since a delta must fit the log.
 */
import type { Mapping } from '../cache/mapping';

export type DeltaState = 'open' | 'requested' | 'closing' | 'writing' | 'flushing' | 'durable' | 'logged' | 'at-home' | 'failed';

function ignore(): void {}

export class Delta {
  state: DeltaState = 'open';
  /** Pages that joined this delta's dirty lists (the high-water mark counts them). */
  pages = 0;
  /** Mappings with pages on their dirty list for this delta's slot. */
  readonly mappings: Mapping[] = [];
  /** Settles when its home writes complete (or fail). */
  readonly written: Promise<void>;
  /** Settles when it is durable (or failed). */
  readonly durable: Promise<void>;
  /**
   * What the commits attached to it resolve with: its own number once it is
   * durable, or, if it closed with nothing in it, the number of the delta
   * that was last to close before it.
   */
  readonly committed: Promise<number>;
  private error: Error | undefined;
  private resolveCommitted!: (number: number) => void;
  private rejectCommitted!: (error: Error) => void;
  private resolveWritten!: () => void;
  private rejectWritten!: (error: Error) => void;
  private resolveDurable!: () => void;
  private rejectDurable!: (error: Error) => void;

  constructor(
    readonly number: number,
    readonly slot: number,
  ) {
    this.written = new Promise<void>((resolve, reject) => {
      this.resolveWritten = resolve;
      this.rejectWritten = reject;
    });
    this.durable = new Promise<void>((resolve, reject) => {
      this.resolveDurable = resolve;
      this.rejectDurable = reject;
    });
    this.committed = new Promise<number>((resolve, reject) => {
      this.resolveCommitted = resolve;
      this.rejectCommitted = reject;
    });
    // A failure is reported through commit() and the volume's state; a delta
    // that nobody awaits must not become an unhandled rejection.
    this.written.catch(ignore);
    this.durable.catch(ignore);
    this.committed.catch(ignore);
  }

  /** Still the front end's delta: changes land in it (OPEN, or REQUESTED to close). */
  get open(): boolean {
    return this.state === 'open' || this.state === 'requested';
  }

  /** A commit or the high-water mark asks it to close: REQUESTED, if it was OPEN. */
  requestClose(): void {
    if (this.state === 'open') this.state = 'requested';
  }

  /**
   * It closed with no block in it: no writeout and no number of its own. Its
   * commits resolve with `covering`, the outcome of the delta last closed
   * before it, and a fresh delta of the same number opens in its place.
   */
  giveWay(covering: Promise<number>): void {
    covering.then(this.resolveCommitted, this.rejectCommitted);
  }

  get failure(): Error | undefined {
    return this.error;
  }

  /** A page of `mapping` has joined this delta's dirty list. */
  joined(mapping: Mapping): void {
    this.pages++;
    if (mapping.dirty[this.slot].length === 1) this.mappings.push(mapping);
  }

  /** Its home writes completed: FLUSHING (ordered mode), or AT_HOME after LOGGED (journal). */
  markWritten(): void {
    this.state = this.state === 'logged' ? 'at-home' : 'flushing';
    this.resolveWritten();
  }

  /** Flushed, and every earlier delta durable (ordered mode). */
  markDurable(): void {
    this.state = 'durable';
    this.resolveDurable();
    this.resolveCommitted(this.number);
  }

  /** In the log, durable, and every earlier delta too (journal); home writes follow. */
  markLogged(): void {
    this.state = 'logged';
    this.resolveDurable();
    this.resolveCommitted(this.number);
  }

  /** Its home writes have not completed: its blocks stay dirty and its frozen pages pinned until they do. */
  get homeWritesPending(): boolean {
    return this.state === 'writing' || this.state === 'logged';
  }

  fail(error: Error): void {
    this.state = 'failed';
    this.error = error;
    this.rejectWritten(error);
    this.rejectDurable(error);
    this.rejectCommitted(error);
  }
}
