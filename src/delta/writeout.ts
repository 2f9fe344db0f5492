import { performance } from 'node:perf_hooks';
import type { Cache } from '../cache/cache';
import type { Mapping } from '../cache/mapping';
import type { IoRequest } from '../io/request';
import { runBlockCount } from '../io/write-runs';
import { collect, collectWrites, type DirtyBlock, type DirtyBlockList } from './collect';
import type { Delta } from './delta';

export type { DirtyBlock, DirtyBlockList } from './collect';

/** Dirty blocks going to consecutive homes from `home`: the images end to end, each of one block or of several joined. */
export interface DirtyRun {
  readonly home: number;
  readonly images: readonly Uint8Array[];
}

/** Where a delta's blocks go (version 2): logged (then home), or redirected (written once, to new homes). */
export interface WritePlan {
  /** Images for the log, then their home writes, sorted by home (home-area blocks). */
  readonly logged: readonly DirtyBlock[];
  /** Runs written once to their new homes with the log records, sorted by home, apart. */
  readonly redirected: readonly DirtyRun[];
}

/**
 * Dirties a block of an internal mapping (the volume's block map) in the
 * delta being written out, forking its page if an earlier delta's writeout
 * still reads it, and returns a writable view (zero-filled if `overwrite`).
 */
export type MetadataDirty = (mapping: Mapping, block: number, overwrite: boolean) => Buffer | Promise<Buffer>;

/**
 * What the writeout needs of a journal (`journal: true`): the volume adapts
 * the journal layer to it. Blocks come sorted by home; their images do not
 * change until the home writes complete (they are frozen pages, or pages the
 * front end forks before writing).
 */
export interface JournalStage {
  /** Throws when a delta of `count` logged (and `redirected`) blocks can never fit in the log. */
  checkDeltaSize(delta: number, count: number, redirected?: number): void;
  /**
   * Version 2: decides where the delta's blocks (by volume block, sorted)
   * go, and changes the block map in the delta through `dirty`. Plans run
   * one at a time, in delta order. Without it, every block is logged at
   * its volume block.
   */
  plan?(delta: number, blocks: DirtyBlockList, dirty: MetadataDirty): Promise<WritePlan>;
  /** Resolves once the images, the redirected blocks and a commit record are durable, and every earlier delta's. */
  log(delta: number, blocks: readonly DirtyBlock[], redirected?: readonly DirtyRun[]): Promise<void>;
  /** Writes the images to their homes (after `log` resolved). */
  writeHome(blocks: readonly DirtyBlock[]): Promise<void>;
  /** The home writes of `delta` and of every delta before it have completed: its log space may be checkpointed. */
  homeWritten(delta: number): void;
}

export interface WriteoutCounters {
  deltasCommitted: number;
  bytesWritten: number;
  /** Time from a delta's writeout start to its durability, summed. */
  writeoutMs: number;
}

/**
 * The writeout of one closed delta, in the order its states (delta.ts) name.
 *
 * Ordered mode:
 *   1. wait until the earlier delta's home writes have completed;
 *   2. collect: map each dirty block to its physical block, sort, coalesce
 *      contiguous blocks into runs, each a vectored write (a stream's delta,
 *      whose blocks come in order, in one pass: collectWrites);
 *   3. home writes: every run in one batch (the engine keeps its queue full);
 *   4. written: blocks CLEAN, frozen pages freed, slot free;
 *   5. flush (a delta of one run wrote it with RWF_DSYNC instead), then wait
 *      for the earlier delta to be durable;
 *   6. durable.
 *
 * With a journal:
 *   1. collect (the log does not wait for the earlier delta's home writes:
 *      appends are serial in the journal, in delta order); version 2: the
 *      plan redirects long runs and changes the block map in this delta;
 *   2. log: images, descriptor, redirected blocks, commit record, flush;
 *   3. wait for the earlier delta to be logged: logged, `commit()` resolves;
 *   4. wait until the earlier delta's home writes have completed (so that a
 *      block both wrote ends with the later image), then home writes;
 *   5. written: blocks CLEAN, frozen pages freed, slot free; the journal may
 *      checkpoint it.
 *
 * It never rejects: a failure (its own, or the earlier delta's) fails the
 * delta with the error.
 */
export async function writeout(
  delta: Delta,
  previous: Delta | undefined,
  cache: Cache,
  counters: WriteoutCounters,
  journal: JournalStage | undefined,
  dirty?: MetadataDirty,
): Promise<void> {
  const start = performance.now();
  try {
    delta.state = 'writing';
    if (journal) {
      await journaledWriteout(delta, previous, cache, counters, journal, start, dirty);
      return;
    }
    if (previous) await previous.written;
    let blocks: number;
    let requests: IoRequest[];
    const stream = collectWrites(delta, cache);
    if (stream) ({ requests, blocks } = stream);
    else {
      const collected = await collect(delta, cache);
      requests = collected.writes();
      blocks = collected.length;
    }
    // One request: write it durable (RWF_DSYNC), one round trip instead of a write and a flush.
    // Several: each would flush on its own, and a flush covers only what completed before it.
    const durableWrite = requests.length === 1;
    if (durableWrite) requests = [{ ...requests[0], dsync: true }];
    if (requests.length > 0) await cache.device.run(requests);
    for (const mapping of delta.mappings) cache.written(mapping, delta.slot);
    delta.markWritten();
    counters.bytesWritten += blocks * cache.blockSize;
    if (requests.length > 0 && !durableWrite) await cache.device.flush();
    if (previous) await previous.durable;
    counters.deltasCommitted++;
    counters.writeoutMs += performance.now() - start;
    delta.markDurable();
  } catch (error) {
    delta.fail(error instanceof Error ? error : new Error(String(error)));
  }
}

async function journaledWriteout(
  delta: Delta,
  previous: Delta | undefined,
  cache: Cache,
  counters: WriteoutCounters,
  journal: JournalStage,
  start: number,
  dirty: MetadataDirty | undefined,
): Promise<void> {
  const collected = await collect(delta, cache);
  let blocks: readonly DirtyBlock[];
  let redirected: readonly DirtyRun[] = [];
  if (journal.plan && dirty && collected.length > 0) ({ logged: blocks, redirected } = await journal.plan(delta.number, collected, dirty));
  else blocks = collected.toArray();
  let redirectedBlocks = 0;
  for (const run of redirected) redirectedBlocks += runBlockCount(run, cache.blockSize);
  if (blocks.length + redirectedBlocks > 0) {
    journal.checkDeltaSize(delta.number, blocks.length, redirectedBlocks);
    await journal.log(delta.number, blocks, redirected);
  }
  if (previous) await previous.durable;
  counters.deltasCommitted++;
  counters.writeoutMs += performance.now() - start;
  delta.markLogged();
  if (previous) await previous.written;
  if (blocks.length > 0) await journal.writeHome(blocks);
  for (const mapping of delta.mappings) cache.written(mapping, delta.slot);
  // Counted once at home (or at their new homes): each logged block also went to the log, which the journal counts.
  counters.bytesWritten += (blocks.length + redirectedBlocks) * cache.blockSize;
  delta.markWritten();
  journal.homeWritten(delta.number);
}
