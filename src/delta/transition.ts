import assert from 'node:assert/strict';
import type { Cache } from '../cache/cache';
import type { Mapping } from '../cache/mapping';
import { Delta } from './delta';
import { DeltaLock } from './lock';
import { LoopTurns, loopTurn } from './loop-turns';
import { deltaBefore, nextDelta, slotOf } from './number';
import { blockdirty, type Writer } from './fork';
import { writeout, type JournalStage, type MetadataDirty, type WriteoutCounters } from './writeout';

export interface DeltasOptions {
  readonly cache: Cache;
  /** Closed deltas in flight at most. */
  readonly maxDeltas: number;
  /** Fork pages under writeout (true), or wait for their writeout (Linux's stable pages). */
  readonly fork: boolean;
  /** Pages dirtied in one delta past which it asks to close by itself. */
  readonly highWater: number;
  /**
   * Pages past which a delta asked to close takes no new change until it has
   * closed (journal mode: a delta must fit the log). Infinity in ordered
   * mode (the default), where the cache's size is the bound.
   */
  readonly deltaLimit?: number;
  /** The number of the first open delta (a journal resumes the count it recorded). */
  readonly firstDelta: number;
  readonly journal?: JournalStage;
}

export interface DeltaCounters extends WriteoutCounters {
  forks: number;
  /** Writes that waited for writeout because `fork` is false. */
  stableWaits: number;
  /** Deltas asked to close by the high-water mark. */
  autoTransitions: number;
  /** Commits that joined a delta already asked to close, and resolve with it (group commit). */
  groupedCommits: number;
  /** Commits that found nothing to close: no I/O, no delta. */
  emptyCommits: number;
  /** Changes that waited at their start because the open delta had reached `deltaLimit` with `maxDeltas` in flight. */
  fullDeltaWaits: number;
}

/**
 * The sequence of deltas: the open one, the closed ones in flight (oldest
 * first), and the switch from one to the next.
 *
 * commit() and the high-water mark only ask the open delta to close
 * (REQUESTED, delta.ts). The switch happens as soon as there is a place in
 * flight: at once, or when an earlier delta leaves the pipeline. It takes
 * the delta lock exclusive, which waits only for the changes in progress to
 * end (so it falls between changes, and the order of calls decides which
 * delta a change lands in), moves the delta number on, releases the lock and
 * starts the closed delta's writeout. No device I/O is ever awaited under
 * the lock: while `maxDeltas` deltas are in flight the open delta stays open,
 * changes keep landing in it, and every commit() that arrives meanwhile
 * resolves with it, once it is durable (group commit).
 *
 * Writeouts run concurrently but reach the device in order: each waits for
 * its predecessor's writes before its own, and for its predecessor's
 * durability before its own (writeout.ts).
 */
export class Deltas {
  readonly cache: Cache;
  readonly lock = new DeltaLock();
  readonly forking: boolean;
  readonly counters: DeltaCounters = {
    forks: 0,
    stableWaits: 0,
    autoTransitions: 0,
    groupedCommits: 0,
    emptyCommits: 0,
    fullDeltaWaits: 0,
    deltasCommitted: 0,
    bytesWritten: 0,
    writeoutMs: 0,
  };
  /** The open delta (OPEN or REQUESTED; CLOSING for the instant of a switch). */
  current: Delta;
  /** Closed deltas whose writeout has not finished (not yet durable, or with a journal not yet at home), oldest first. */
  readonly inFlight: Delta[] = [];
  /** The last delta that became durable (the one before the first, at first). */
  durable: number;
  /**
   * The delta last closed, in flight or not. Not `inFlight.at(-1)`: deltas
   * leave the pipeline when their writeouts return, which need not be in
   * delta order, though their durability is.
   */
  private lastClosedDelta: Delta | undefined;
  private readonly maxDeltas: number;
  private readonly highWater: number;
  private readonly deltaLimit: number;
  private readonly journal: JournalStage | undefined;
  private error: Error | undefined;
  /** The switch under way: settles once the next delta is open. */
  private switching: Promise<void> | undefined;
  private readonly loopTurns = new LoopTurns();
  /** The last commit() handed out: the next one resolves after it. */
  private lastCommit: Promise<unknown> = Promise.resolve();
  /** Those waiting for a delta to leave the pipeline (quiescence). */
  private departureWaiters: (() => void)[] = [];
  /** Those waiting for the open delta to close (changes held by `deltaLimit`, commits behind them). */
  private switchWaiters: (() => void)[] = [];
  /** Changes waiting at their start for room (see sharedWhenRoom). */
  private roomWaiters = 0;

  constructor(options: DeltasOptions) {
    this.cache = options.cache;
    this.maxDeltas = options.maxDeltas;
    this.forking = options.fork;
    this.highWater = options.highWater;
    this.deltaLimit = options.deltaLimit ?? Infinity;
    this.journal = options.journal;
    this.current = new Delta(options.firstDelta >>> 0, slotOf(options.firstDelta, this.cache.slotCount));
    this.durable = (options.firstDelta - 1) >>> 0;
  }

  /**
   * While deltas are being written: a promise to await (a turn of the event
   * loop, not a wait on the device) when the loop is overdue for a turn, so
   * that the engines can take completions and submit what is queued
   * (loop-turns.ts). Undefined when nothing need wait.
   */
  turnIfOverdue(): Promise<void> | undefined {
    return this.inFlight.length > 0 ? this.loopTurns.overdue() : undefined;
  }

  /** The first write or flush error: every later commit rejects with it. */
  get failure(): Error | undefined {
    return this.error;
  }

  /**
   * Fails the volume: for the first write or flush error of a writeout, and
   * for an error outside any delta's writeout (a checkpoint's). The open
   * delta can never be written now: its commits reject, and changes held for
   * room find the failure; every later commit and change refuses.
   */
  fail(error: Error): void {
    if (this.error) return;
    this.error = error;
    this.current.fail(error);
    this.wake('switch');
  }

  /**
   * Asks the open delta to close and resolves with its number once it (and
   * every earlier one) is durable. A commit with nothing to close (no block
   * dirty, no change in progress) does no I/O and opens no delta: it
   * resolves with the delta last closed, once that one is durable.
   */
  commit(): Promise<number> {
    // Commits resolve in the order they were called, whichever path each took.
    const outcome = this.closeForCommit();
    const ordered = this.lastCommit.then(
      () => outcome,
      () => outcome,
    );
    this.lastCommit = ordered;
    return ordered;
  }

  private async closeForCommit(): Promise<number> {
    for (;;) {
      if (this.error) throw this.error;
      const open = this.current;
      if (this.switching) {
        // The closing delta holds every change called before this commit,
        // unless some wait for the lock behind the switch: they land in the next.
        if (!this.lock.sharedWaiting) {
          this.counters.groupedCommits++;
          return open.committed;
        }
        await this.switching;
        continue;
      }
      if (this.roomWaiters > 0) {
        // Changes called before this commit wait for the next delta to open.
        await this.nextSwitch();
        continue;
      }
      if (open.state === 'open' && open.pages === 0 && this.lock.idle) {
        this.counters.emptyCommits++;
        return this.lastClosed();
      }
      if (open.state === 'requested') this.counters.groupedCommits++;
      open.requestClose();
      this.advance();
      return open.committed;
    }
  }

  /**
   * Whether a change must wait before it starts: the open delta has reached
   * `deltaLimit` while it waits for a place in flight (the stated bound of
   * journal mode, where a delta must fit the log).
   */
  get full(): boolean {
    return this.current.pages >= this.deltaLimit && this.current.state === 'requested' && !this.error;
  }

  /**
   * For a change about to start while the open delta is full: waits for the
   * next delta, then takes the delta lock shared. Its place in the lock's
   * line is taken in the same turn as the wait ends, so that a commit called
   * after this change cannot find the new delta empty and idle.
   */
  async sharedWhenRoom(): Promise<void> {
    this.roomWaiters++;
    let granted: Promise<void>;
    try {
      while (this.full) {
        this.counters.fullDeltaWaits++;
        await this.nextSwitch();
      }
      granted = this.lock.shared();
    } finally {
      this.roomWaiters--;
    }
    await granted;
  }

  /**
   * Settles once the delta open now has closed, if it has been asked to
   * close (at once if not). With group commit, changes called after a
   * commit may still join its delta while it waits for a place; a caller
   * that needs its next changes in a later delta (an atomic batch of several
   * changes) awaits this after commit() and before them.
   */
  async whenClosed(): Promise<void> {
    const open = this.current;
    if (open.state === 'open') return;
    while (this.current === open && !this.error) await this.nextSwitch();
  }

  /** A page of `mapping` joined the open delta's dirty list: past the high-water mark, the delta asks to close by itself. */
  joined(delta: Delta, mapping: Mapping): void {
    delta.joined(mapping);
    if (delta.pages < this.highWater || delta.state !== 'open' || this.error) return;
    this.counters.autoTransitions++;
    delta.requestClose();
    this.advance();
  }

  /**
   * For the cache when it is full of dirty and pinned pages: settles when
   * the oldest delta still writing has written (freeing pages), or undefined
   * when none is writing and waiting could only deadlock.
   */
  /**
   * The plan's way to change the volume's metadata (version 2: the block
   * map) in a delta being written out: blockdirty in that closed delta.
   * Plans run in delta order and only they write internal mappings, so a
   * page is never dirty in a later delta than the one planning: it is
   * written in place, or forked when an earlier delta's writeout reads it.
   */
  private metadataDirty(delta: Delta): MetadataDirty {
    const writer: Writer = {
      delta,
      check: () => {
        if (this.error) throw this.error;
      },
    };
    return (mapping, block, overwrite) => blockdirty(this, writer, mapping, block, overwrite);
  }

  whenWritten(): Promise<void> | undefined {
    const writing = this.inFlight.find((delta) => delta.homeWritesPending);
    return writing?.written.catch(() => undefined);
  }

  /** For stable pages (`fork: false`): settles when the delta whose blocks are in `slot` has written them. */
  writtenSlot(slot: number): Promise<void> {
    const delta = this.inFlight.find((d) => d.slot === slot);
    return delta ? delta.written.catch(() => undefined) : Promise.resolve();
  }

  /** Waits until no change is in progress and every delta in flight has settled. */
  async quiesce(): Promise<void> {
    await this.lock.exclusive();
    this.lock.releaseExclusive();
    await this.drained();
  }

  /** Waits until every delta in flight has finished its writeout (durable, and with a journal at home) or failed. */
  async drained(): Promise<void> {
    while (this.inFlight.length > 0) await this.departure();
  }

  private departure(): Promise<void> {
    return new Promise<void>((resolve) => this.departureWaiters.push(resolve));
  }

  /** Starts the switch if the open delta asked to close and a place in flight is free. */
  private advance(): void {
    if (this.switching !== undefined || this.error) return;
    const closing = this.current;
    if (closing.state !== 'requested' || this.inFlight.length >= this.maxDeltas) return;
    closing.state = 'closing';
    this.switching = this.lock.exclusive().then(() => this.switchFrom(closing));
  }

  /** Under the delta lock held exclusive, for no longer than this synchronous call. */
  private switchFrom(closing: Delta): void {
    try {
      if (this.error) {
        closing.fail(this.error);
      } else if (closing.pages === 0) {
        // Its changes dirtied nothing: no delta to write, and no number spent.
        closing.giveWay(this.lastClosed());
        this.current = new Delta(closing.number, closing.slot);
      } else {
        const number = nextDelta(closing.number);
        this.current = new Delta(number, slotOf(number, this.cache.slotCount));
        const previous = this.lastClosedDelta;
        this.lastClosedDelta = closing;
        this.inFlight.push(closing);
        void this.write(closing, previous);
      }
    } finally {
      this.switching = undefined;
      this.lock.releaseExclusive();
      this.wake('switch');
    }
  }

  /**
   * The outcome of the delta last closed (or the last durable one). It takes
   * a turn of the event loop first: a loop of empty commits must not resolve
   * in microtasks alone and starve the timers and writers it waits for.
   */
  private async lastClosed(): Promise<number> {
    // Taken before the turn: deltas that close during it hold later changes.
    const last = this.lastClosedDelta;
    const durable = this.durable;
    await loopTurn();
    if (last) return last.committed;
    if (this.error) throw this.error;
    return durable;
  }

  private nextSwitch(): Promise<void> {
    return new Promise<void>((resolve) => this.switchWaiters.push(resolve));
  }

  private wake(which: 'switch' | 'departure'): void {
    const waiters = which === 'switch' ? this.switchWaiters : this.departureWaiters;
    if (which === 'switch') this.switchWaiters = [];
    else this.departureWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private async write(delta: Delta, previous: Delta | undefined): Promise<void> {
    // Registered before commit() awaits the same promise, so `durable` is current when it resumes.
    delta.durable.then(
      () => {
        // Durable in order (G4): writeout waited for the earlier delta.
        assert.ok(deltaBefore(this.durable, delta.number), `delta ${delta.number} became durable after delta ${this.durable}`);
        this.durable = delta.number;
      },
      () => undefined,
    );
    try {
      // With a journal this returns after the home writes, which come after durability.
      await writeout(delta, previous, this.cache, this.counters, this.journal, this.journal?.plan ? this.metadataDirty(delta) : undefined);
      if (delta.failure) this.fail(delta.failure);
    } finally {
      this.inFlight.splice(this.inFlight.indexOf(delta), 1);
      this.wake('departure');
      this.advance();
    }
  }
}
