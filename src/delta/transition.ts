import assert from 'node:assert/strict';
import type { Cache } from '../cache/cache';
import type { Mapping } from '../cache/mapping';
import { Delta } from './delta';
import { DeltaLock } from './lock';
import { LoopTurns } from './loop-turns';
import { deltaBefore, nextDelta, slotOf } from './number';
import { writeout, type JournalStage, type WriteoutCounters } from './writeout';

export interface DeltasOptions {
  readonly cache: Cache;
  /** Closed deltas in flight at most. */
  readonly maxDeltas: number;
  /** Fork pages under writeout (true), or wait for their writeout (Linux's stable pages). */
  readonly fork: boolean;
  /** Pages dirtied in one delta past which a transition starts by itself. */
  readonly highWater: number;
  /** The number of the first open delta (a journal resumes the count it recorded). */
  readonly firstDelta: number;
  readonly journal?: JournalStage;
}

export interface DeltaCounters extends WriteoutCounters {
  forks: number;
  /** Writes that waited for writeout because `fork` is false. */
  stableWaits: number;
  /** Transitions started by the high-water mark. */
  autoTransitions: number;
}

/**
 * The sequence of deltas: the open one, the closed ones in flight (oldest
 * first), and the transition that moves from one to the next.
 *
 * A transition takes the delta lock exclusive (so it falls between changes,
 * and the order of calls decides which delta a change lands in), waits for a
 * place in flight if `maxDeltas` are there, moves the delta number on, and
 * starts the closed delta's writeout. Writeouts run concurrently but reach
 * the device in order: each waits for its predecessor's writes before its
 * own, and for its predecessor's durability before its own (writeout.ts).
 */
export class Deltas {
  readonly cache: Cache;
  readonly lock = new DeltaLock();
  readonly forking: boolean;
  readonly counters: DeltaCounters = {
    forks: 0,
    stableWaits: 0,
    autoTransitions: 0,
    deltasCommitted: 0,
    bytesWritten: 0,
    writeoutMs: 0,
  };
  /** The open delta. */
  current: Delta;
  /** Closed deltas whose writeout has not finished (not yet durable, or with a journal not yet at home), oldest first. */
  readonly inFlight: Delta[] = [];
  /** The last delta that became durable (the one before the first, at first). */
  durable: number;
  private readonly maxDeltas: number;
  private readonly highWater: number;
  private readonly journal: JournalStage | undefined;
  private error: Error | undefined;
  private autoPending = false;
  private readonly loopTurns = new LoopTurns();
  /** Those waiting for a delta to leave the pipeline (a place in flight, or quiescence). */
  private departureWaiters: (() => void)[] = [];

  constructor(options: DeltasOptions) {
    this.cache = options.cache;
    this.maxDeltas = options.maxDeltas;
    this.forking = options.fork;
    this.highWater = options.highWater;
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

  /** Fails the volume for an error outside any delta's writeout (a checkpoint's): every later commit and change refuses. */
  fail(error: Error): void {
    this.error ??= error;
  }

  /** Closes the open delta and starts its writeout; resolves with it once the next delta is open. */
  async transition(): Promise<Delta> {
    await this.lock.exclusive();
    try {
      if (this.error) throw this.error;
      const closing = this.current;
      closing.state = 'closing';
      while (this.inFlight.length >= this.maxDeltas) await this.departure();
      if (this.error) throw this.error;
      const number = nextDelta(closing.number);
      this.current = new Delta(number, slotOf(number, this.cache.slotCount));
      const previous = this.inFlight.at(-1);
      this.inFlight.push(closing);
      void this.write(closing, previous);
      return closing;
    } finally {
      this.lock.releaseExclusive();
    }
  }

  /** Closes the open delta and resolves with its number once it (and every earlier one) is durable. */
  async commit(): Promise<number> {
    if (this.error) throw this.error;
    const delta = await this.transition();
    await delta.durable;
    return delta.number;
  }

  /** A page of `mapping` joined the open delta's dirty list: past the high-water mark, a transition starts by itself. */
  joined(delta: Delta, mapping: Mapping): void {
    delta.joined(mapping);
    if (delta.pages < this.highWater || this.autoPending || this.error) return;
    this.autoPending = true;
    this.counters.autoTransitions++;
    // Its failure is the volume's failure, reported by commit() and change().
    this.transition().then(
      () => (this.autoPending = false),
      () => (this.autoPending = false),
    );
  }

  /**
   * For the cache when it is full of dirty and pinned pages: settles when
   * the oldest delta still writing has written (freeing pages), or undefined
   * when none is writing and waiting could only deadlock.
   */
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
      await writeout(delta, previous, this.cache, this.counters, this.journal);
      if (delta.failure) this.error ??= delta.failure;
    } finally {
      this.inFlight.splice(this.inFlight.indexOf(delta), 1);
      const waiters = this.departureWaiters;
      this.departureWaiters = [];
      for (const wake of waiters) wake();
    }
  }
}
