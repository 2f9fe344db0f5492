/**
 * The journal's write side: appends deltas to the log ring, and checkpoints.
 *
 *   tail ──────────── used ─────────────► head ───── free ─────► tail + logBlocks
 *   (superblock's replayPosition)         (next delta's descriptor)
 *
 * Positions only grow. `tail` moves only after a checkpoint superblock is
 * durable, so the log space of a delta is reused only once no replay could
 * start before it: replay from a stale checkpoint must find every delta
 * after it intact, or it would rewrite older images over newer home blocks.
 *
 * Appends go in delta order: a delta's descriptor, images and commit record
 * go out in one batch, then one flush. The next delta's batch is submitted
 * as soon as this one's writes have completed, behind the flush (a flush is
 * a barrier in both engines: the next batch reaches the device once it is
 * done), so the device goes from one delta to the next without waiting for
 * the JS thread; a delta is durable once its own flush and every earlier
 * delta's have returned. Were the next batch to reach the disk first, a
 * crash could keep it and lose part of this one: replay stops at this
 * delta's damaged records and never reaches the next, which no one had
 * acknowledged either. The commit record is not
 * ordered before the images by a flush of its own; instead it carries the
 * descriptor's checksum, which carries every image's, and replay checks them
 * all. A power cut that keeps the commit record and loses an image leaves a
 * delta that fails its checksums: it is ignored, and it was not acknowledged
 * (the flush had not returned). One flush per delta, as `fio --fsync=1` pays;
 * a delta that fits in one request is written with RWF_DSYNC instead.
 *
 * Each opening starts its history a lap of the ring ahead. Replay stops at
 * the first damaged record, and whatever follows it in the log belongs to a
 * history that did not happen. Had the new history started at the same
 * position, its records would take the places of the old ones, and after a
 * later crash a surviving old record could line up behind them, its position
 * and its delta number just what replay expects: a delta of the lost history
 * replayed over the new one. Moving the replay position on by logBlocks
 * (the log is empty then: replay checkpointed it) keeps the ring offsets and
 * makes every position expected from now on one that no earlier record says.
 */
import { performance } from 'node:perf_hooks';
import { joinAdjacent } from '../io/adjacent';
import { describe } from '../io/describe';
import { BlockforkError } from '../io/errors';
import type { BlockIo, IoRequest } from '../io/request';
import type { Slab } from '../io/slab';
import { runBlockCount } from '../io/write-runs';
import { allocBlocks } from './block-memory';
import { crc32c, crc32cOfChunks } from './crc32c';
import type { DeltaJournal, LogPressure, LogSpace } from './delta-journal';
import { homeRequests, homeRunRequests, type JournalBlock, type JournalRun } from './home-area';
import { LogRing } from './log-ring';
import { descriptorBlocks, encodeCommit, encodeDescriptor, logBlocksFor, maxDeltaBlocks } from './log-record';
import { replayJournal, type JournalReport } from './replay';
import { homeBlocks, writeSuperblock, type Superblock } from './superblock';

export interface OpenedJournal {
  readonly journal: JournalWriter;
  /** What replay found and did. */
  readonly report: JournalReport;
}

/**
 * Below this many blocks a delta's checksums are taken on the JS thread at
 * once: the thread pool's round trip (tens of microseconds) would cost an
 * awaited one-block commit more than the checksums themselves (half a
 * microsecond per 4 KiB block with the CPU's instruction).
 */
const POOL_CHECKSUM_BLOCKS = 64;

/**
 * The checksums of a delta's logged images, then of its redirected blocks,
 * in that order (the descriptor's): the redirected ones taken from the
 * requests that write them (`writes`, a few views of consecutive blocks).
 */
function checksumsOf(images: readonly Uint8Array[], writes: readonly IoRequest[], redirected: number, blockSize: number): Uint32Array | Promise<Uint32Array> {
  if (images.length + redirected >= POOL_CHECKSUM_BLOCKS) {
    const views: Uint8Array[] = images.slice();
    for (const request of writes) for (const buffer of request.buffers) views.push(buffer);
    // Joined across the requests' cuts: the addon checks each view it is given (a few microseconds each).
    return crc32cOfChunks(joinAdjacent(views), blockSize);
  }
  const checksums = new Uint32Array(images.length + redirected);
  let k = 0;
  for (; k < images.length; k++) checksums[k] = crc32c(images[k]);
  for (const request of writes) {
    for (const buffer of request.buffers) {
      for (let at = 0; at < buffer.byteLength; at += blockSize) checksums[k++] = crc32c(buffer.subarray(at, at + blockSize));
    }
  }
  return checksums;
}

interface Logged {
  readonly delta: number;
  /** Log position just after its commit record. */
  readonly end: number;
}

export class JournalWriter implements DeltaJournal {
  onPressure: ((pressure: LogPressure) => void) | undefined;
  readonly blockSize: number;
  readonly blockCount: number;
  readonly maxDeltaBlocks: number;
  /** Blocks of the home area, which homes index (the data area in version 1). */
  readonly homeBlocks: number;
  /** Version 2: the first home block of the physical area, where redirected blocks go. */
  readonly physicalStart: number;

  private superblock: Superblock;
  private readonly ring: LogRing;
  private head: number;
  private tail: number;
  /** Highest delta handed to appendDelta (maybe still queued). */
  private queuedDelta: number;
  private durableDelta: number;
  /** Logged deltas not yet checkpointed, oldest first. */
  private readonly logged: Logged[] = [];
  /** Resolves once the last append's writes have completed (or it failed): the next may submit its own. */
  private appendsWritten: Promise<void> = Promise.resolve();
  /** Resolves once the last append is durable (true) or has failed (false). */
  private appendsDurable: Promise<boolean> = Promise.resolve(true);
  private checkpoints: Promise<void> = Promise.resolve();
  private wanted = 0;
  private wakeAppend: (() => void) | undefined;
  /** Descriptor and commit record pages of the append being submitted (one at a time: the last one's writes have completed). */
  private scratch: Slab | undefined;
  private failed: Error | undefined;
  private closing: Promise<void> | undefined;
  private spaceWaitMs = 0;

  /**
   * `superblock` must be the one in force with an empty log after it (just
   * formatted, or just replayed): use JournalWriter.open on an existing volume.
   */
  constructor(
    private readonly io: BlockIo,
    superblock: Superblock,
  ) {
    this.superblock = superblock;
    this.blockSize = superblock.blockSize;
    this.blockCount = superblock.blockCount;
    this.maxDeltaBlocks = maxDeltaBlocks(superblock.logBlocks, superblock.blockSize);
    this.homeBlocks = homeBlocks(superblock);
    this.physicalStart = superblock.summaryBlocks + superblock.mapBlocks;
    this.ring = new LogRing(superblock.logStart, superblock.logBlocks, superblock.blockSize);
    this.head = this.tail = superblock.replayPosition;
    this.queuedDelta = this.durableDelta = superblock.checkpointDelta;
  }

  /**
   * Replays the volume's log onto the device, then returns a writer
   * positioned a lap after it (see the header). Both superblock copies get
   * the new position, one after the other: a copy damaged later must not
   * leave the other one pointing at the lap before, whose positions the
   * new records no longer carry.
   */
  static async open(io: BlockIo): Promise<OpenedJournal> {
    const { report, superblock } = await replayJournal(io);
    const ahead = superblock.replayPosition + superblock.logBlocks;
    let fresh = superblock;
    for (let copy = 0; copy < 2; copy++) {
      fresh = { ...fresh, sequence: fresh.sequence + 1, replayPosition: ahead };
      await writeSuperblock(io, fresh);
      await io.flush();
    }
    return { journal: new JournalWriter(io, fresh), report };
  }

  get checkpointedDelta(): number {
    return this.superblock.checkpointDelta;
  }

  get lastDurableDelta(): number {
    return this.durableDelta;
  }

  get failure(): Error | undefined {
    return this.failed;
  }

  /** Milliseconds appends have spent waiting for log space (backpressure), summed. */
  get waitedForSpaceMs(): number {
    return this.spaceWaitMs;
  }

  space(): LogSpace {
    const used = this.head - this.tail;
    return { capacity: this.superblock.logBlocks, used, free: this.superblock.logBlocks - used, wanted: this.wanted };
  }

  checkDeltaSize(delta: number, count: number, redirected = 0): void {
    const needed = logBlocksFor(count, this.blockSize, redirected);
    if (needed > this.superblock.logBlocks) {
      const what = redirected > 0 ? `${count} logged and ${redirected} redirected blocks` : `${count} blocks`;
      throw new BlockforkError(
        'ERR_DELTA_TOO_LARGE',
        `delta ${delta} has ${what} and needs ${needed} log blocks, but the log holds ${this.superblock.logBlocks} ` +
          `(at most ${this.maxDeltaBlocks} blocks per delta): commit more often, or format the volume with a larger log`,
      );
    }
  }

  appendDelta(delta: number, blocks: readonly JournalBlock[], redirected: readonly JournalRun[] = []): Promise<void> {
    let redirectedBlocks: number;
    try {
      this.checkUsable();
      redirectedBlocks = this.checkAppend(delta, blocks, redirected);
    } catch (error) {
      return Promise.reject(error);
    }
    this.queuedDelta = delta;
    const homes: number[] = new Array(blocks.length + redirectedBlocks);
    const images: Uint8Array[] = new Array(blocks.length);
    for (let i = 0; i < blocks.length; i++) {
      homes[i] = blocks[i].home;
      images[i] = blocks[i].image;
    }
    let k = blocks.length;
    for (const run of redirected) {
      const end = k + runBlockCount(run, this.blockSize);
      for (let home = run.home; k < end; k++, home++) homes[k] = home;
    }
    const writes = redirected.length === 0 ? [] : homeRunRequests(this.superblock.dataStart, this.blockSize, redirected);
    // The images are frozen: their checksums can be taken now, while an earlier append waits on
    // the device; a large delta's on the thread pool, off the JS thread (see checksumsOf).
    const checksums = checksumsOf(images, writes, redirectedBlocks, this.blockSize);
    // Awaited by the append; should it end first (an earlier delta failed), a failed job is not left unhandled.
    if (checksums instanceof Promise) checksums.catch(() => undefined);
    const previous = { written: this.appendsWritten, durable: this.appendsDurable };
    let written!: () => void;
    this.appendsWritten = new Promise<void>((resolve) => (written = resolve));
    const run = this.append(delta, homes, checksums, images, writes, redirectedBlocks, previous, written);
    this.appendsDurable = run.then(
      () => true,
      () => false,
    );
    return run;
  }

  homeRequests(blocks: readonly JournalBlock[]): IoRequest[] {
    return homeRequests(this.superblock.dataStart, this.blockSize, blocks);
  }

  async writeHome(blocks: readonly JournalBlock[]): Promise<void> {
    this.checkUsable();
    try {
      await this.io.run(this.homeRequests(blocks));
    } catch (error) {
      throw this.fail(error);
    }
  }

  checkpoint(delta: number): Promise<void> {
    try {
      this.checkUsable();
      if (!Number.isSafeInteger(delta) || delta < 0) throw new TypeError(`delta must be a non-negative integer, got ${describe(delta)}`);
      if (delta > this.queuedDelta) {
        throw new RangeError(`cannot checkpoint delta ${delta}: the last delta appended is ${this.queuedDelta}`);
      }
    } catch (error) {
      return Promise.reject(error);
    }
    const run = this.checkpoints.then(() => this.writeCheckpoint(delta));
    this.checkpoints = run.catch(() => undefined);
    return run;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.appendsDurable;
      await this.checkpoints;
      this.scratch?.release();
      this.scratch = undefined;
    })();
    return this.closing;
  }

  /**
   * Writes one delta: its redirected blocks to the physical area, and its
   * records to the log, then one flush. The redirected blocks need no order
   * of their own: the descriptor holds their checksums, and replay checks
   * them (replay.ts). So they go first, as soon as the earlier append has
   * completed, while their checksums are still being taken (on the thread
   * pool for a large delta): the device writes them meanwhile, and only the
   * log records wait for the checksums. `written` lets the next append
   * submit, once both have completed and this one's flush is queued.
   */
  private async append(
    delta: number,
    homes: number[],
    checksums: Uint32Array | Promise<Uint32Array>,
    images: Uint8Array[],
    writes: readonly IoRequest[],
    redirected: number,
    previous: { written: Promise<void>; durable: Promise<boolean> },
    written: () => void,
  ): Promise<void> {
    let flushed: Promise<void> | undefined;
    let end: number;
    let data: Promise<void> | undefined;
    try {
      await previous.written;
      if (writes.length > 0 && !this.failed) {
        // Blocks allocated to this delta alone: until its commit record is durable nothing reads them.
        data = this.io.run(writes);
        // Awaited below; should the log part throw first, its failure is not left unhandled.
        data.catch(() => undefined);
      }
      const sums = await checksums;
      if (this.failed) throw this.failedError();
      const B = this.blockSize;
      const count = images.length;
      const total = logBlocksFor(count, B, redirected);
      await this.waitForSpace(delta, total);
      const position = this.head;
      end = this.head = position + total;
      const d = descriptorBlocks(count, B, redirected);
      const scratch = this.scratchPages(d + 1);
      const descriptor = Buffer.from(scratch.memory, 0, d * B);
      const commit = Buffer.from(scratch.memory, d * B, B);
      const volumeId = this.superblock.volumeId;
      const descriptorCrc = encodeDescriptor({ volumeId, position, delta }, homes, sums, B, descriptor, redirected);
      encodeCommit({ volumeId, position, delta, count, descriptorCrc, totalBlocks: total }, commit);
      let requests = this.ring.requests('write', position, [descriptor, ...images, commit]);
      // A delta that goes out as one request (it does not wrap, has few images and nothing
      // redirected) is written with RWF_DSYNC: durable when it completes, one round trip
      // instead of a write and a flush.
      const durableWrite = requests.length === 1 && data === undefined;
      if (durableWrite) requests = [{ ...requests[0], dsync: true }];
      try {
        await Promise.all([this.io.run(requests), data]);
      } catch (error) {
        throw this.fail(error);
      }
      // Queued before the next append's batch, which the flush then holds back until it is done.
      if (!durableWrite) flushed = this.io.flush().catch((error: unknown) => Promise.reject(this.fail(error)));
    } finally {
      written();
    }
    if (flushed) await flushed;
    // An earlier delta failed: this one is not durable, whatever its own writes did.
    if (!(await previous.durable)) throw this.failedError();
    this.logged.push({ delta, end });
    this.durableDelta = delta;
  }

  private async waitForSpace(delta: number, needed: number): Promise<void> {
    const start = performance.now();
    try {
      await this.waitUntilFree(delta, needed);
    } finally {
      this.spaceWaitMs += performance.now() - start;
    }
  }

  private async waitUntilFree(delta: number, needed: number): Promise<void> {
    while (this.superblock.logBlocks - (this.head - this.tail) < needed) {
      const freed = new Promise<void>((resolve) => (this.wakeAppend = resolve));
      this.wanted = needed;
      this.onPressure?.({ delta, needed, free: this.superblock.logBlocks - (this.head - this.tail), checkpointable: this.durableDelta });
      await freed;
      this.wanted = 0;
      if (this.failed) throw this.failedError();
    }
  }

  private async writeCheckpoint(delta: number): Promise<void> {
    if (this.failed) throw this.failedError();
    // The append of `delta` may still be queued behind others: a checkpoint names only what is logged.
    let upto = -1;
    for (let i = 0; i < this.logged.length && this.logged[i].delta <= delta; i++) upto = i;
    if (upto < 0) return;
    const target = this.logged[upto];
    const next: Superblock = {
      ...this.superblock,
      sequence: this.superblock.sequence + 1,
      checkpointDelta: target.delta,
      replayPosition: target.end,
    };
    try {
      // Home writes durable before the superblock says so; the superblock durable before its log space is reused.
      await this.io.flush();
      await writeSuperblock(this.io, next);
      await this.io.flush();
    } catch (error) {
      throw this.fail(error);
    }
    this.superblock = next;
    this.tail = target.end;
    this.logged.splice(0, upto + 1);
    this.wake();
  }

  /** Checks an append's arguments; the number of redirected blocks. */
  private checkAppend(delta: number, blocks: readonly JournalBlock[], redirected: readonly JournalRun[]): number {
    if (!Number.isSafeInteger(delta) || delta <= this.queuedDelta) {
      throw new RangeError(`delta must be an integer greater than ${this.queuedDelta} (deltas are appended in order), got ${describe(delta)}`);
    }
    if (!Array.isArray(blocks)) throw new TypeError(`blocks must be an array, got ${describe(blocks)}`);
    if (!Array.isArray(redirected)) throw new TypeError(`redirected must be an array, got ${describe(redirected)}`);
    if (redirected.length > 0 && this.superblock.version !== 2) throw new RangeError('only a volume of version 2 redirects blocks');
    this.checkBlocks(blocks);
    const redirectedBlocks = this.checkRuns(redirected);
    this.checkDeltaSize(delta, blocks.length, redirectedBlocks);
    return redirectedBlocks;
  }

  private checkBlocks(blocks: readonly JournalBlock[]): void {
    let previous = -1;
    for (let i = 0; i < blocks.length; i++) {
      const b: unknown = blocks[i];
      if (typeof b !== 'object' || b === null) throw new TypeError(`blocks[${i}] must be { home, image }, got ${describe(b)}`);
      const { home, image } = b as JournalBlock;
      if (!Number.isSafeInteger(home) || home < 0 || home >= this.homeBlocks) {
        throw new RangeError(`blocks[${i}].home must be an integer from 0 to ${this.homeBlocks - 1}, got ${describe(home)}`);
      }
      if (home <= previous) throw new RangeError(`blocks must be sorted by strictly ascending home: blocks[${i}].home ${home} follows ${previous}`);
      previous = home;
      if (!this.isImage(image)) throw this.imageError(`blocks[${i}].image`, image);
    }
  }

  /** Runs in the physical area, sorted by home and apart; the number of blocks in them. */
  private checkRuns(runs: readonly JournalRun[]): number {
    let end = this.physicalStart;
    let count = 0;
    for (let i = 0; i < runs.length; i++) {
      const run: unknown = runs[i];
      if (typeof run !== 'object' || run === null) throw new TypeError(`redirected[${i}] must be { home, images }, got ${describe(run)}`);
      const { home, images } = run as JournalRun;
      if (!Array.isArray(images) || images.length === 0) throw new TypeError(`redirected[${i}].images must be a non-empty array, got ${describe(images)}`);
      let blocks = 0;
      for (let k = 0; k < images.length; k++) {
        const image: unknown = images[k];
        if (!(image instanceof Uint8Array) || image.byteLength === 0 || image.byteLength % this.blockSize !== 0) {
          throw new TypeError(`redirected[${i}].images[${k}] must be a Uint8Array of ${this.blockSize} bytes (or of whole blocks, joined), got ${describe(image)}`);
        }
        blocks += image.byteLength / this.blockSize;
      }
      if (!Number.isSafeInteger(home) || home < this.physicalStart || home + blocks > this.homeBlocks) {
        throw new RangeError(
          `redirected[${i}] must lie in blocks ${this.physicalStart} to ${this.homeBlocks - 1}: it has ${blocks} block(s) from ${describe(home)}`,
        );
      }
      if (home < end) throw new RangeError(`redirected runs must be sorted by home and apart: redirected[${i}] starts at ${home}, before ${end}`);
      end = home + blocks;
      count += blocks;
    }
    return count;
  }

  private isImage(image: unknown): boolean {
    return image instanceof Uint8Array && image.byteLength === this.blockSize;
  }

  /** Made only when an image is bad: its name is built per block otherwise. */
  private imageError(what: string, image: unknown): TypeError {
    return new TypeError(`${what} must be a Uint8Array of ${this.blockSize} bytes, got ${describe(image)}`);
  }

  private checkUsable(): void {
    if (this.closing) throw new BlockforkError('ERR_JOURNAL_CLOSED', `the journal of '${this.io.path}' is closed`);
    if (this.failed) throw this.failedError();
  }

  private scratchPages(pages: number): Slab {
    if (this.scratch === undefined || this.scratch.pageCount < pages) {
      this.scratch?.release();
      this.scratch = allocBlocks(this.blockSize, pages);
    }
    return this.scratch;
  }

  /** The first failure is thrown as it came (a system error); later calls get ERR_JOURNAL_FAILED. */
  private fail(error: unknown): unknown {
    this.failed ??= error instanceof Error ? error : new Error(String(error));
    this.wake();
    return error;
  }

  private failedError(): BlockforkError {
    return new BlockforkError(
      'ERR_JOURNAL_FAILED',
      `the journal of '${this.io.path}' failed (${this.failed!.message}); nothing after it is acknowledged: reopen the volume to replay`,
      { cause: this.failed },
    );
  }

  private wake(): void {
    const wake = this.wakeAppend;
    this.wakeAppend = undefined;
    wake?.();
  }
}
