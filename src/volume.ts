import { Cache } from './cache/cache';
import { bread, type BlockHandle } from './cache/handle';
import type { BlockMap, Mapping } from './cache/mapping';
import { MAX_SLOTS } from './cache/page';
import { Change, volumeFailed } from './delta/change';
import { slotCountFor } from './delta/number';
import { Deltas } from './delta/transition';
import { describe } from './io/describe';
import { Device, type EngineKind } from './io/device';
import { BlockforkError } from './io/errors';
import type { BlockIo } from './io/request';
import { BlockWindow } from './io/window';
import { loadBlockMap, VolumeMap, type LoadedMap } from './journal/block-map';
import { JournalPipeline, type JournalStats } from './journal/checkpoints';
import { DEFAULT_REDIRECT_BYTES, Redirector } from './journal/redirect';
import { JournalWriter } from './journal/journal-writer';
import { replayInMemory } from './journal/replay';
import { ReplayedView } from './journal/replayed-view';
import { homeBlocks, readSuperblock, VERSION_2, type Superblock } from './journal/superblock';
import { formatVolume, MIN_LOG_BLOCKS } from './journal/volume-format';

export interface VolumeOptions {
  /** Block size in bytes: a power of two from 512 to `pageSize`, at least the device's sector size (default 4096). */
  blockSize?: number;
  /** Page size of the cache in bytes: a power of two from 512 to 1 MiB, at least `blockSize` (default the larger of 4096 and `blockSize`). */
  pageSize?: number;
  /**
   * `true`: a journaled volume, atomic across crashes (G5): each delta goes to
   * a log before its home writes, and open replays the log. `false`: ordered
   * mode, no on-disk metadata. Unset: whatever the device holds (journaled
   * if it has a blockfork superblock, else ordered).
   */
  journal?: boolean;
  /** Bytes of cached pages (default 256 MiB); frozen copies of deltas in flight come on top. */
  cacheSize?: number;
  /** Bytes dirtied in one delta past which a transition starts by itself (default half of `cacheSize`). */
  highWater?: number;
  /** Closed deltas being written at once, at most (default 2, at most 64). */
  maxDeltas?: number;
  /** Fork pages under writeout (default true); `false` waits for the writeout instead (Linux's stable pages). */
  fork?: boolean;
  /**
   * Bytes of the largest readahead window (default 8 MiB, at most an eighth
   * of `cacheSize`); 0 turns readahead off. A sequential reader's window
   * starts small and grows to this while the stream lasts.
   */
  readahead?: number;
}

export interface MountOptions extends VolumeOptions {
  /**
   * Journal mode: format the device even though it is not a file that this
   * open created (a block device, an existing file, an existing volume).
   * Its contents are lost. A new file is formatted without it.
   */
  format?: boolean;
  /** Bytes of the log when formatting, a multiple of blockSize (default an eighth of the device, at most 64 MiB). */
  logSize?: number;
  /**
   * The on-disk format when formatting (docs/FORMAT.md): 1 (the default)
   * writes every block twice, to the log and then home; 2 writes long runs
   * of a delta once, redirected through a block map, and logs the rest. An
   * existing volume keeps its version.
   */
  formatVersion?: 1 | 2;
  /** Version 2, when formatting: bytes of physical space beyond the volume's, a multiple of blockSize (default an eighth of the device, from one to four times the log). */
  reserveSize?: number;
  /**
   * Version 2: runs of a delta's consecutive blocks at least this many
   * bytes long are redirected, shorter ones logged (default 64 KiB; at
   * least two blocks).
   */
  redirectMin?: number;
}

export interface OpenOptions extends MountOptions {
  /** A regular file that does not exist is created, sparse, at this many bytes. */
  size?: number;
  /** O_DIRECT (default true); `false` for file systems that refuse it, such as tmpfs. */
  direct?: boolean;
  readOnly?: boolean;
  /** I/O engine: 'auto' (default), 'io_uring' or 'threads'. */
  engine?: EngineKind | 'auto';
  /** Requests in flight at once (default 32). */
  queueDepth?: number;
  /**
   * Milliseconds to wait for the device's lock while another handle holds it
   * (default 5000; 0 fails at once with EAGAIN): a process killed while
   * writing keeps its lock until its I/O in flight drains.
   */
  lockTimeout?: number;
}

export interface MappingOptions {
  /** Logical block -> physical block, or -1 for a hole (reads as zeros). */
  map: BlockMap;
  /** Blocks of the mapping (default 2^48): indexes run from 0 to blockCount - 1. */
  blockCount?: number;
}

export interface VolumeStats {
  /** The open delta's number. */
  delta: number;
  /** The last delta that is durable. */
  durableDelta: number;
  deltasInFlight: number;
  deltasCommitted: number;
  forks: number;
  /** Writes that waited for writeout (`fork: false`). */
  stableWaits: number;
  /** Deltas asked to close by the high-water mark. */
  autoTransitions: number;
  /** Commits that joined a delta already asked to close and resolved with it (group commit). */
  groupedCommits: number;
  /** Commits that found nothing to close: no I/O, no delta. */
  emptyCommits: number;
  /**
   * Changes that waited at their start for the open delta to close: with a
   * journal, a delta that has reached its share of the log takes no more
   * changes while `maxDeltas` deltas are in flight (a delta must fit the log).
   */
  fullDeltaWaits: number;
  pagesCached: number;
  pagesDirty: number;
  pagesFrozen: number;
  /** Native page memory held, in bytes. */
  cacheBytes: number;
  pagesRead: number;
  evictions: number;
  /** Times a page waited for writeout to free room in a full cache. */
  spaceWaits: number;
  /** Pages read by readahead windows and prefetches. */
  readaheadPages: number;
  /** Of those, pages used before they were evicted. */
  readaheadUsed: number;
  /** Of those, pages evicted unused. */
  readaheadWasted: number;
  bytesWritten: number;
  /** Time from writeout start to durability, summed over deltas, in milliseconds. */
  writeoutMs: number;
  /** The log (journal mode), undefined in ordered mode or read-only. */
  journal: JournalStats | undefined;
}

const DEFAULT_BLOCK_SIZE = 4096;
const DEFAULT_PAGE_SIZE = 4096;
const DEFAULT_CACHE_SIZE = 256 << 20;
const DEFAULT_MAX_DELTAS = 2;
const MAX_MAX_DELTAS = MAX_SLOTS / 2;
const DEFAULT_MAPPING_BLOCKS = 2 ** 48;
/**
 * 8 MiB: a window goes down as 1 MiB requests (where fio reaches the
 * device's sequential speed), and with the next window started a window
 * ahead a stream keeps 8 to 16 MiB in flight. Measured on a 1 GiB stream
 * (a 64 MiB cache for the reads, shared machine, a few runs each): the
 * awaited vol.read loop ran at 0.76 to 0.99 GB/s with 2 MiB windows and 0.95
 * to 1.2 with 8 MiB (the per-window work is spread over more pages), and a
 * tx.write stream, whose reads queue behind the writeout's 1 MiB writes,
 * at 0.70 to 0.74 against 0.72 to 1.0. Small beside the default cache;
 * an eighth of the cache bounds it when the cache is small.
 */
const DEFAULT_READAHEAD = 8 << 20;

interface Settings {
  /** Undefined: take what the device holds. */
  journal: boolean | undefined;
  format: boolean;
  /** Bytes of the log when formatting, if given. */
  logSize: number | undefined;
  formatVersion: 1 | 2;
  /** Bytes of the reserve when formatting version 2, if given. */
  reserveSize: number | undefined;
  /** Blocks of the shortest run a version 2 volume redirects. */
  redirectBlocks: number;
  blockSize: number;
  pageSize: number;
  cacheSize: number;
  highWater: number;
  maxDeltas: number;
  fork: boolean;
  readahead: number;
}

function noop(): void {}

/**
 * A block device or file as numbered blocks, cached, changed in atomic
 * deltas and written out in order (DESIGN.md). Ordered mode (`journal:
 * false`): no on-disk metadata, `blockCount = floor(size / blockSize)`.
 * Journal mode: superblocks and a log come first (docs/FORMAT.md), the
 * cache sees only the data area after them, and each delta reaches the log
 * before its home writes.
 */
export class Volume {
  readonly blockSize: number;
  readonly pageSize: number;
  /** Usable data blocks: indexes 0 .. blockCount - 1. */
  readonly blockCount: number;
  /** The physical mapping of the whole volume, for the lower layer. */
  readonly mapping: Mapping;
  /** Whether the volume is journaled (atomic deltas across crashes). */
  readonly journaled: boolean;
  /** Deltas that open found committed in the log and replayed (in memory when read-only). */
  readonly replayedDeltas: number;
  private readonly cache: Cache;
  private readonly deltas: Deltas;
  private readonly journal: JournalPipeline | undefined;
  private closing: Promise<void> | undefined;

  /** `device` is what the volume owns and closes; `data` the part of it the cache sees. */
  private constructor(
    private readonly device: BlockIo,
    data: BlockIo,
    settings: Settings,
    mounted: Mounted = { journaled: false, firstDelta: 1, replayedDeltas: 0 },
  ) {
    this.blockSize = settings.blockSize;
    this.pageSize = settings.pageSize;
    this.journaled = mounted.journaled;
    this.replayedDeltas = mounted.replayedDeltas;
    this.journal = mounted.pipeline;
    const mapped = mounted.map;
    // Version 2: volume blocks reach the device through the block map, which pages through this cache.
    let blockMap: VolumeMap | undefined;
    // The cache waits for writeout when full; `deltas` exists by the time it asks.
    const cache: Cache = new Cache({
      device: data,
      pageSize: settings.pageSize,
      blockSize: settings.blockSize,
      cacheSize: settings.cacheSize,
      slotCount: slotCountFor(settings.maxDeltas),
      readahead: settings.readahead,
      whenFull: () => deltas.whenWritten(),
      volumeBlocks: mapped?.superblock.blockCount,
      lower: mapped === undefined ? undefined : (block) => (blockMap as VolumeMap).home(block),
    });
    if (mapped !== undefined) {
      blockMap = new VolumeMap(cache, mapped.superblock, mapped.loaded);
      const pipeline = mounted.pipeline;
      if (pipeline !== undefined) {
        const redirector = new Redirector(
          blockMap,
          mapped.loaded.allocator,
          settings.redirectBlocks,
          () => pipeline.askCheckpoint(),
          (logged, redirected) => pipeline.fitsLog(logged, redirected),
        );
        pipeline.redirectWith(redirector, mapped.superblock.physicalBlocks - mapped.superblock.blockCount);
      }
    }
    let highWater = Math.max(1, Math.floor(settings.highWater / settings.pageSize));
    if (mounted.maxDeltaBlocks !== undefined) {
      // A delta must fit in the log: start a transition by itself at a third of what it holds,
      // so that a stream keeps two deltas in the log at once (one logging, one going home and
      // being checkpointed) even when the change that crosses the mark overshoots it. At half,
      // a delta of a stream (the mark, plus the rest of a change, plus its descriptor) came
      // out a little over half the log: the next append waited for every checkpoint.
      const perPage = settings.pageSize / settings.blockSize;
      // Version 2: a delta's long runs go to the reserve rather than the log; its plan redirects short
      // runs too when they would not fit the log, and logs whole what the reserve cannot take. The
      // reserve is freed sooner than the log: a redirected block's old copy is free once its delta is
      // durable (the log waits for a checkpoint), and a delta is planned only once a place among
      // maxDeltas is free, the delta before it durable. So a share of 1/maxDeltas of the reserve
      // fits beside the deltas still in flight (a plan that finds it short by an overshoot waits for
      // the one before to be durable); at a third, a stream's 64 MiB commit on a 128 MiB reserve came
      // out as two deltas, the second short, and the pipeline ran a delta behind.
      const reserve = mapped === undefined ? 0 : mapped.superblock.physicalBlocks - mapped.superblock.blockCount;
      const deltaRoom = Math.max(mounted.maxDeltaBlocks / 3, reserve / settings.maxDeltas);
      highWater = Math.max(1, Math.min(highWater, Math.floor(deltaRoom / perPage)));
    }
    const deltas: Deltas = new Deltas({
      cache,
      maxDeltas: settings.maxDeltas,
      fork: settings.fork,
      highWater,
      // With a journal, the share of the log that sets the high-water mark is
      // also where a delta waiting for a place stops taking changes.
      deltaLimit: mounted.maxDeltaBlocks === undefined ? Infinity : highWater,
      firstDelta: mounted.firstDelta,
      journal: mounted.pipeline,
    });
    if (mounted.pipeline) mounted.pipeline.onFailure = (error) => deltas.fail(error);
    this.cache = cache;
    this.deltas = deltas;
    this.mapping = cache.volume;
    this.blockCount = cache.volumeBlocks;
  }

  /**
   * An ordered-mode volume over the whole of any BlockIo (a Device, or a
   * test's stand-in), without looking at what it holds. The volume owns it
   * from here: `close()` closes it. For journal mode, use `mount`.
   */
  static over(device: BlockIo, options: VolumeOptions = {}): Volume {
    const settings = volumeSettings(options);
    if (settings.journal === true) {
      throw new BlockforkError('ERR_NOT_SUPPORTED', 'Volume.over opens ordered mode only: use Volume.mount for journal: true');
    }
    checkGeometry(device, settings);
    return new Volume(device, device, settings);
  }

  /**
   * A volume over any BlockIo, as `open` makes one: it reads the superblock
   * if there is one, formats or replays the journal as the options say, and
   * refuses options that contradict what the device holds. `created`: the
   * device is a file that was just created (journal mode formats it). The
   * volume owns the device from here, but if this rejects, the caller still
   * closes it.
   */
  static async mount(device: BlockIo, options: MountOptions = {}, created = false): Promise<Volume> {
    volumeSettings(options);
    const found = await findSuperblock(device, options.journal);
    const format = options.format === true || (options.journal === true && found === undefined && created);
    if (options.journal === false || (options.journal === undefined && !format && found === undefined)) {
      if (found !== undefined) throw journaledVolume(device, found);
      return Volume.over(device, options);
    }
    if (format) {
      if (device.geometry.readOnly) throw new BlockforkError('ERR_READ_ONLY', `'${device.path}' is open read-only: it cannot be formatted`);
      const settings = volumeSettings(options);
      const logBlocks = settings.logSize === undefined ? undefined : settings.logSize / settings.blockSize;
      const reserveBlocks = settings.reserveSize === undefined ? undefined : settings.reserveSize / settings.blockSize;
      const superblock = await formatVolume(device, { blockSize: settings.blockSize, logBlocks, overwrite: true, version: settings.formatVersion, reserveBlocks });
      return Volume.journaled(device, superblock, settings, new JournalWriter(device, superblock), 0);
    }
    if (found === undefined) {
      throw new BlockforkError(
        'ERR_NOT_A_VOLUME',
        `'${device.path}' holds no blockfork volume: open it with format: true to format it (its contents are lost), or run blockfork format`,
      );
    }
    const settings = volumeSettings(options, found);
    if (device.geometry.readOnly) {
      // Read-only never writes: the log is replayed in memory, over the blocks read from the device.
      const replay = await replayInMemory(device);
      const data = new ReplayedView(dataArea(device, found), found.blockSize, replay.blocks);
      checkGeometry(data, settings);
      return new Volume(device, data, settings, {
        journaled: true,
        firstDelta: replay.report.lastDelta + 1,
        replayedDeltas: replay.report.deltas.length,
        map: found.version === VERSION_2 ? { superblock: found, loaded: await loadBlockMap(data, found) } : undefined,
      });
    }
    const { journal, report } = await JournalWriter.open(device);
    return Volume.journaled(device, found, settings, journal, report.deltas.length);
  }

  private static async journaled(device: BlockIo, superblock: Superblock, settings: Settings, journal: JournalWriter, replayedDeltas: number): Promise<Volume> {
    const data = dataArea(device, superblock);
    checkGeometry(data, settings);
    // After replay: the map at home is the last committed delta's.
    const map = superblock.version === VERSION_2 ? { superblock, loaded: await loadBlockMap(data, superblock) } : undefined;
    const pipeline = new JournalPipeline(journal);
    return new Volume(device, data, settings, {
      journaled: true,
      firstDelta: pipeline.firstDelta,
      replayedDeltas,
      pipeline,
      maxDeltaBlocks: journal.maxDeltaBlocks,
      map,
    });
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** The write or flush error that failed the volume, if one has. */
  get failure(): Error | undefined {
    return this.deltas.failure;
  }

  /**
   * Runs `fn` as one change: everything it dirties lands in one delta. A
   * change called before `commit()` is in the delta that commit closes; one
   * called after is in a later delta. Resolves with what `fn` returns.
   */
  async change<T>(fn: (tx: Change) => T | Promise<T>): Promise<T> {
    this.checkOpen();
    if (typeof fn !== 'function') throw new TypeError(`change() takes a function, got ${describe(fn)}`);
    this.checkWritable();
    const lock = this.deltas.lock;
    if (this.deltas.full) await this.deltas.sharedWhenRoom();
    else if (!lock.tryShared()) await lock.shared();
    const tx = new Change(this.deltas, this.deltas.current);
    try {
      // After the lock: the order of calls, not the turn, decides the delta.
      const turn = this.deltas.turnIfOverdue();
      if (turn) await turn;
      this.checkWritable();
      return await fn(tx);
    } finally {
      tx.end();
      lock.releaseShared();
    }
  }

  /** A copy of the block as the cache holds it now (read from the device if it is not cached). */
  read(block: number, mapping?: Mapping): Promise<Buffer> {
    try {
      this.checkOpen();
    } catch (error) {
      return Promise.reject(error);
    }
    return this.cache.copyOut(mapping, block);
  }

  /**
   * A copy of blocks `first` to `first + count - 1`, end to end, as the cache
   * holds them now: `read` for a run, with one await; the blocks not cached
   * are read together (one batch, merged; a sequential run as a readahead
   * window).
   */
  readRange(first: number, count: number, mapping?: Mapping): Promise<Buffer> {
    try {
      this.checkOpen();
    } catch (error) {
      return Promise.reject(error);
    }
    return this.cache.operateRange(mapping, first, count, (target) => this.cache.copyRange(target, first, count));
  }

  /**
   * Starts reading blocks `first` to `first + count - 1` into the cache and
   * returns without waiting (posix_fadvise WILLNEED): a read of one of them
   * meanwhile waits on the read in flight and never issues a second. Blocks
   * already cached are left as they are; the cache takes what fits without
   * evicting dirty or pinned pages, the rest is not read. A read that fails
   * is not reported here: the block stays unread, and the read that needs
   * it tries again and reports the error.
   */
  prefetch(first: number, count: number, mapping?: Mapping): void {
    this.checkOpen();
    const target = this.cache.target(mapping);
    target.checkRange(first, count);
    this.cache.prefetch(target, first, count);
  }

  /** Closes the open delta; resolves with its number once it and every earlier delta are durable. */
  async commit(): Promise<number> {
    this.checkOpen();
    return this.deltas.commit();
  }

  /**
   * Settles once the delta that a `commit()` just asked to close has closed:
   * changes called after this settles land in a later delta. Without it,
   * changes called after a commit may join that commit's delta while
   * `maxDeltas` deltas are in flight (group commit). For batches of several
   * changes that must be atomic together: `commit()`, then await this, then
   * the next batch. It waits for the disk only while the pipeline is full.
   */
  deltaClosed(): Promise<void> {
    this.checkOpen();
    return this.deltas.whenClosed();
  }

  /**
   * The lower layer: a handle on a cached block, which keeps it in the cache
   * until `handle.release()`. Write it with `tx.blockdirty(handle)`.
   */
  async bread(block: number, mapping?: Mapping): Promise<BlockHandle> {
    this.checkOpen();
    return this.cache.operate(mapping, block, (target) => bread(this.cache, target, block));
  }

  /**
   * The lower layer: a logical mapping (a file, a directory) cached as its
   * own address space; its blocks reach the device through `map`.
   */
  createMapping(options: MappingOptions): Mapping {
    this.checkOpen();
    if (typeof options !== 'object' || options === null) throw new TypeError(`options must be an object, got ${describe(options)}`);
    if (typeof options.map !== 'function') throw new TypeError(`map must be a function, got ${describe(options.map)}`);
    const blockCount = options.blockCount ?? DEFAULT_MAPPING_BLOCKS;
    if (!Number.isSafeInteger(blockCount) || blockCount < 1) {
      throw new RangeError(`blockCount must be a positive integer, got ${describe(blockCount)}`);
    }
    return this.cache.createMapping(options.map, blockCount);
  }

  /**
   * The lower layer: forgets a mapping once its pages are clean and released.
   * Commit first: this waits for the writeout of the deltas in flight (with a
   * journal, commit resolves once the log is durable, before the home writes
   * that make the pages clean), then rejects with ERR_MAPPING_BUSY if a page
   * is still dirty in the open delta or held by a handle, or an operation on
   * the mapping has not settled. Every later use of the mapping rejects with
   * ERR_MAPPING_DROPPED.
   */
  async dropMapping(mapping: Mapping): Promise<void> {
    this.checkOpen();
    const target = this.cache.target(mapping);
    await this.deltas.drained();
    this.checkOpen();
    this.cache.dropMapping(target);
  }

  stats(): VolumeStats {
    const { cache, deltas } = this;
    return {
      delta: deltas.current.number,
      durableDelta: deltas.durable,
      deltasInFlight: deltas.inFlight.length,
      deltasCommitted: deltas.counters.deltasCommitted,
      forks: deltas.counters.forks,
      stableWaits: deltas.counters.stableWaits,
      autoTransitions: deltas.counters.autoTransitions,
      groupedCommits: deltas.counters.groupedCommits,
      emptyCommits: deltas.counters.emptyCommits,
      fullDeltaWaits: deltas.counters.fullDeltaWaits,
      pagesCached: cache.pagesCached,
      pagesDirty: cache.pagesDirty,
      pagesFrozen: cache.pagesFrozen,
      cacheBytes: cache.pool.byteLength,
      pagesRead: cache.counters.pagesRead,
      evictions: cache.counters.evictions,
      spaceWaits: cache.counters.spaceWaits,
      readaheadPages: cache.counters.readaheadPages,
      readaheadUsed: cache.counters.readaheadUsed,
      readaheadWasted: cache.counters.readaheadWasted,
      bytesWritten: deltas.counters.bytesWritten,
      writeoutMs: deltas.counters.writeoutMs,
      journal: this.journal?.stats(),
    };
  }

  /**
   * Commits what is pending, then closes the device and frees the cache.
   * Rejects if that last commit fails (the volume is closed all the same). A
   * second call waits for the first and resolves.
   */
  close(): Promise<void> {
    if (this.closing) return this.closing.then(noop, noop);
    this.closing = this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    let error: unknown;
    try {
      await this.deltas.commit();
    } catch (failure) {
      error = failure;
    }
    try {
      await this.deltas.quiesce();
      try {
        await this.journal?.close();
      } finally {
        await this.device.close();
      }
    } finally {
      this.cache.release();
    }
    if (error !== undefined) throw error;
  }

  private checkOpen(): void {
    if (this.closing) throw new BlockforkError('ERR_VOLUME_CLOSED', `volume '${this.device.path}' is closed`);
  }

  private checkWritable(): void {
    const failure = this.deltas.failure;
    if (failure) throw volumeFailed(failure);
    if (this.device.geometry.readOnly) throw new BlockforkError('ERR_READ_ONLY', `volume '${this.device.path}' is open read-only`);
  }
}

/**
 * Opens a volume on a block device or a regular file (created, sparse, at
 * `size` bytes if it does not exist). Every option is checked before the
 * device is opened.
 */
export async function open(path: string, options: OpenOptions = {}): Promise<Volume> {
  volumeSettings(options);
  const device = await Device.open(path, {
    size: options.size,
    direct: options.direct,
    readOnly: options.readOnly,
    engine: options.engine,
    queueDepth: options.queueDepth,
    lockTimeout: options.lockTimeout,
  });
  try {
    return await Volume.mount(device, options, device.created);
  } catch (error) {
    await device.close();
    throw error;
  }
}

/** What mounting found and made: the journal stage and where the delta count resumes. */
interface Mounted {
  journaled: boolean;
  firstDelta: number;
  replayedDeltas: number;
  pipeline?: JournalPipeline;
  maxDeltaBlocks?: number;
  /** Version 2: the block map as open read it. */
  map?: { superblock: Superblock; loaded: LoadedMap };
}

/**
 * The device's superblock, or undefined where it holds none. A damaged one
 * is an error unless the caller asked for ordered mode (whose data may be
 * anything, including bytes that look like half a superblock).
 */
async function findSuperblock(device: BlockIo, journal: boolean | undefined): Promise<Superblock | undefined> {
  try {
    return (await readSuperblock(device)).superblock;
  } catch (error) {
    if (error instanceof BlockforkError && (error.code === 'ERR_NOT_A_VOLUME' || journal === false)) return undefined;
    throw error;
  }
}

/** The home area: version 1's data area; version 2's summary, map and physical area. */
function dataArea(device: BlockIo, sb: Superblock): BlockIo {
  return new BlockWindow(device, sb.dataStart * sb.blockSize, homeBlocks(sb) * sb.blockSize);
}

function describeVolume(sb: Superblock): string {
  return `a journaled blockfork volume (block size ${sb.blockSize}, ${sb.blockCount} data blocks, a log of ${sb.logBlocks} blocks)`;
}

function journaledVolume(device: BlockIo, sb: Superblock): BlockforkError {
  return new BlockforkError(
    'ERR_VOLUME_MISMATCH',
    `'${device.path}' is ${describeVolume(sb)}: open it with journal: true (or leave journal unset); journal: false would write over its log`,
  );
}

/** Checks the options; `volume`: what the device holds, which decides the block size. */
function volumeSettings(options: MountOptions, volume?: Superblock): Settings {
  if (typeof options !== 'object' || options === null) throw new TypeError(`options must be an object, got ${describe(options)}`);
  const journal = options.journal === undefined ? undefined : optionalBoolean(options.journal, 'journal', false);
  const format = optionalBoolean(options.format, 'format', false);
  if (format && journal === false) throw new RangeError('format: true formats a journaled volume: it cannot go with journal: false');
  let blockSize = powerOfTwo(options.blockSize, 'blockSize', DEFAULT_BLOCK_SIZE, 512, 1 << 20);
  if (volume !== undefined) {
    if (options.blockSize !== undefined && options.blockSize !== volume.blockSize) {
      throw new BlockforkError('ERR_VOLUME_MISMATCH', `the volume is ${describeVolume(volume)}: blockSize ${options.blockSize} contradicts it`);
    }
    blockSize = volume.blockSize;
  }
  const pageSize = powerOfTwo(options.pageSize, 'pageSize', Math.max(DEFAULT_PAGE_SIZE, blockSize), 512, 1 << 20);
  if (blockSize > pageSize) throw new RangeError(`blockSize (${blockSize}) must not exceed pageSize (${pageSize})`);
  const cacheSize = integer(options.cacheSize, 'cacheSize', DEFAULT_CACHE_SIZE, pageSize, Number.MAX_SAFE_INTEGER);
  const highWater = integer(options.highWater, 'highWater', Math.floor(cacheSize / 2), pageSize, Number.MAX_SAFE_INTEGER);
  const maxDeltas = integer(options.maxDeltas, 'maxDeltas', DEFAULT_MAX_DELTAS, 1, MAX_MAX_DELTAS);
  const fork = optionalBoolean(options.fork, 'fork', true);
  const readahead = integer(options.readahead, 'readahead', DEFAULT_READAHEAD, 0, Number.MAX_SAFE_INTEGER);
  let logSize: number | undefined;
  if (options.logSize !== undefined) {
    logSize = integer(options.logSize, 'logSize', 0, MIN_LOG_BLOCKS * blockSize, Number.MAX_SAFE_INTEGER);
    if (logSize % blockSize !== 0) throw new RangeError(`logSize must be a multiple of blockSize (${blockSize}), got ${logSize}`);
  }
  let formatVersion: 1 | 2 = 1;
  if (options.formatVersion !== undefined) {
    if (options.formatVersion !== 1 && options.formatVersion !== 2) throw new RangeError(`formatVersion must be 1 or 2, got ${describe(options.formatVersion)}`);
    formatVersion = options.formatVersion;
  }
  let reserveSize: number | undefined;
  if (options.reserveSize !== undefined) {
    reserveSize = integer(options.reserveSize, 'reserveSize', 0, blockSize, Number.MAX_SAFE_INTEGER);
    if (reserveSize % blockSize !== 0) throw new RangeError(`reserveSize must be a multiple of blockSize (${blockSize}), got ${reserveSize}`);
    if (formatVersion !== 2) throw new RangeError('reserveSize goes with formatVersion: 2');
  }
  const redirectMin = integer(options.redirectMin, 'redirectMin', DEFAULT_REDIRECT_BYTES, 1, Number.MAX_SAFE_INTEGER);
  const redirectBlocks = Math.max(2, Math.ceil(redirectMin / blockSize));
  return { journal, format, logSize, blockSize, pageSize, cacheSize, highWater, maxDeltas, fork, readahead, formatVersion, reserveSize, redirectBlocks };
}

function checkGeometry(device: BlockIo, settings: Settings): void {
  const { logicalSectorSize, memoryAlignment, direct, size } = device.geometry;
  if (settings.blockSize < logicalSectorSize) {
    throw new RangeError(`blockSize (${settings.blockSize}) must be at least the device's logical sector size (${logicalSectorSize})`);
  }
  if (direct && settings.blockSize < memoryAlignment) {
    throw new RangeError(`blockSize (${settings.blockSize}) must be at least the device's O_DIRECT memory alignment (${memoryAlignment})`);
  }
  if (size < settings.blockSize) throw new RangeError(`the device (${size} bytes) is smaller than one block (${settings.blockSize} bytes)`);
}

function powerOfTwo(value: unknown, name: string, fallback: number, min: number, max: number): number {
  const n = integer(value, name, fallback, min, max);
  if ((n & (n - 1)) !== 0) throw new RangeError(`${name} must be a power of two from ${min} to ${max}, got ${n}`);
  return n;
}

function integer(value: unknown, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, got ${describe(value)}`);
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${describe(value)}`);
  }
  return value;
}

function optionalBoolean(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${describe(value)}`);
  return value;
}
