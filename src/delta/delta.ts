/**
 * A delta: an atomic commit unit, and the states it goes through on its way
 * to the disk.
 *
 *   OPEN ──transition holds the delta lock exclusive──▶ CLOSING
 *   CLOSING ──a place in flight (≤ maxDeltas); delta number moves on──▶ WRITING
 *   WRITING ──its home writes completed──▶ FLUSHING
 *   FLUSHING ──flushed, and the delta before it DURABLE──▶ DURABLE
 *   WRITING, FLUSHING ──a write or flush failed, here or in an earlier delta──▶ FAILED
 *
 *   OPEN      The front end's delta: every change holds the delta lock
 *             shared and dirties blocks in this delta's slot. Exactly one
 *             delta is open.
 *   CLOSING   A transition holds the delta lock exclusive: no change is in
 *             progress and new ones wait. If `maxDeltas` deltas are in
 *             flight, it waits here for the oldest to leave (a bound G2
 *             allows). Then the next delta opens.
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
 */
import type { Mapping } from '../cache/mapping';

export type DeltaState = 'open' | 'closing' | 'writing' | 'flushing' | 'durable' | 'logged' | 'at-home' | 'failed';

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
  private error: Error | undefined;
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
    // A failure is reported through commit() and the volume's state; a delta
    // that nobody awaits must not become an unhandled rejection.
    this.written.catch(ignore);
    this.durable.catch(ignore);
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
  }

  /** In the log, durable, and every earlier delta too (journal); home writes follow. */
  markLogged(): void {
    this.state = 'logged';
    this.resolveDurable();
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
  }
}
