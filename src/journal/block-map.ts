/**
 * The block map of a version 2 volume: where each volume block lives in the
 * physical area (map-block.ts has the bytes).
 *
 *   home area:  [ summary S ][ map M ][ physical area P = volume blocks + reserve ]
 *
 * The map is metadata paged through the cache, as an internal mapping of
 * its own over the summary and the map (device blocks 0 .. S + M − 1 of the
 * home area): a lookup reads the map block it needs on demand, so memory
 * stays within `cacheSize` whatever the device's size. The summary (one bit
 * per map block) is also kept in memory, 1 bit per map block (32 KiB for a
 * TiB of 4 KiB blocks): a volume block whose map block's bit is clear is at
 * its identity place without reading anything, and open rebuilds the free
 * space from the map blocks whose bit is set only.
 *
 * Who changes it: only the writeout's plan (redirect.ts), in the delta being
 * written out, through `MetadataDirty`; plans run in delta order. A change
 * of the map is logged with its delta (the map blocks are logged images), so
 * replay restores it; the map blocks then go home like any logged block.
 *
 * Why lookups need no lock against the plan: a volume block is looked up to
 * read it into an EMPTY page, under that page's lock. The plan moves only
 * blocks dirty in its delta, whose pages are cached and not EMPTY; and its
 * map update lands before their data is written, so by the time such a page
 * is clean and may be evicted, the map already says where it went.
 */
import type { Cache } from '../cache/cache';
import type { Mapping } from '../cache/mapping';
import { EMPTY } from '../cache/page';
import { BlockforkError } from '../io/errors';
import type { BlockIo } from '../io/request';
import { Allocator, appendRun, type GrowingRun } from './allocator';
import { allocBlocks } from './block-memory';
import { homeReads, type JournalBlock } from './home-area';
import {
  bitsPerSummaryBlock,
  blockProblem,
  entriesPerMapBlock,
  getBit,
  getEntry,
  IDENTITY,
  initBlock,
  isWritten,
  MAP_MAGIC,
  sealBlock,
  setBit,
  setEntry,
  SUMMARY_MAGIC,
} from './map-block';
import type { Superblock } from './superblock';

/** Dirties a block of the map's mapping in the delta being written out (writeout.ts's MetadataDirty). */
export type MapDirty = (mapping: Mapping, block: number, overwrite: boolean) => Buffer | Promise<Buffer>;

/** What open reads of the map from the device: the summary bits, and the free space rebuilt from the map. */
export interface LoadedMap {
  /** One bit per map block, as the summary blocks hold them (their headers left out). */
  readonly summary: Uint8Array;
  readonly allocator: Allocator;
  /** Map blocks read (their summary bit set). */
  readonly mapBlocksRead: number;
}

/** Map blocks read at once while open rebuilds the free space. */
const LOAD_CHUNK_BLOCKS = 64;

/**
 * Reads the summary and every map block it flags, checks each, and rebuilds
 * the free space (Allocator.fromMap). A flagged map block that is not this
 * volume's, or fails its checksum, is ERR_MAP_CORRUPT: the map is lost there.
 * `home` is the home area (its byte 0 is home block 0).
 */
export async function loadBlockMap(io: BlockIo, sb: Superblock): Promise<LoadedMap> {
  const B = sb.blockSize;
  const bits = bitsPerSummaryBlock(B);
  const summary = new Uint8Array(Math.ceil(sb.mapBlocks / 8));
  const flagged: number[] = [];
  const chunk = allocBlocks(B, LOAD_CHUNK_BLOCKS);
  try {
    for (let j = 0; j < sb.summaryBlocks; j += LOAD_CHUNK_BLOCKS) {
      const n = Math.min(LOAD_CHUNK_BLOCKS, sb.summaryBlocks - j);
      await readHome(io, sb, j, n, chunk.memory);
      for (let i = 0; i < n; i++) {
        const block = chunk.page(i);
        // Format writes every summary block: one that is not this volume's is damaged, not new.
        if (!isWritten(block, SUMMARY_MAGIC, sb.volumeId)) throw mapCorrupt(`summary block ${j + i} (home block ${j + i}) is not this volume's (its magic or volume id is wrong)`);
        const problem = blockProblem(block);
        if (problem !== undefined) throw mapCorrupt(`summary block ${j + i} (home block ${j + i}): ${problem}`);
        for (let b = 0; b < bits; b++) {
          const k = (j + i) * bits + b;
          if (k >= sb.mapBlocks) break;
          if (getBit(block, b)) {
            summary[k >>> 3] |= 1 << (k & 7);
            flagged.push(k);
          }
        }
      }
    }
    const E = entriesPerMapBlock(B);
    const entries: [number, number][] = [];
    for (let f = 0; f < flagged.length; ) {
      // Consecutive flagged map blocks are read together.
      let n = 1;
      while (f + n < flagged.length && n < LOAD_CHUNK_BLOCKS && flagged[f + n] === flagged[f] + n) n++;
      await readHome(io, sb, sb.summaryBlocks + flagged[f], n, chunk.memory);
      for (let i = 0; i < n; i++) {
        const k = flagged[f + i];
        const block = chunk.page(i);
        if (!isWritten(block, MAP_MAGIC, sb.volumeId)) throw mapCorrupt(`map block ${k} is flagged in the summary but was never written`);
        const problem = blockProblem(block);
        if (problem !== undefined) throw mapCorrupt(`map block ${k} (home block ${sb.summaryBlocks + k}): ${problem}`);
        const first = k * E;
        for (let e = 0; e < E && first + e < sb.blockCount; e++) {
          const value = getEntry(block, e);
          if (value !== IDENTITY) entries.push([first + e, value - 1]);
        }
      }
      f += n;
    }
    const allocator = Allocator.fromMap(sb.physicalBlocks, sb.blockCount, entries);
    return { summary, allocator, mapBlocksRead: flagged.length };
  } finally {
    chunk.release();
  }
}

async function readHome(io: BlockIo, sb: Superblock, first: number, count: number, memory: ArrayBuffer): Promise<void> {
  const B = sb.blockSize;
  const blocks: JournalBlock[] = [];
  for (let i = 0; i < count; i++) blocks.push({ home: first + i, image: new Uint8Array(memory, i * B, B) });
  await io.run(homeReads(0, B, blocks));
}

function mapCorrupt(what: string): BlockforkError {
  return new BlockforkError('ERR_MAP_CORRUPT', `the block map is damaged: ${what}`);
}

export class VolumeMap {
  /** The internal mapping over the summary and the map (home blocks 0 .. S + M − 1). */
  readonly mapping: Mapping;
  /** Home block of physical block 0. */
  readonly physicalStart: number;
  private readonly entries: number;
  private readonly bits: number;
  private readonly perPage: number;

  constructor(
    private readonly cache: Cache,
    private readonly sb: Superblock,
    private readonly loaded: LoadedMap,
  ) {
    this.mapping = cache.createMapping(undefined, sb.summaryBlocks + sb.mapBlocks, true);
    this.physicalStart = sb.summaryBlocks + sb.mapBlocks;
    this.entries = entriesPerMapBlock(sb.blockSize);
    this.bits = bitsPerSummaryBlock(sb.blockSize);
    this.perPage = cache.perPage;
  }

  /** The physical block (0 .. P − 1) of a volume block. */
  physical(volumeBlock: number): number | Promise<number> {
    const k = Math.floor(volumeBlock / this.entries);
    if (!this.flagged(k)) return volumeBlock;
    const block = this.sb.summaryBlocks + k;
    const index = volumeBlock - k * this.entries;
    const view = this.cachedView(block);
    if (view !== undefined) return entryPhysical(getEntry(view, index), volumeBlock);
    return this.readEntry(block, index, volumeBlock);
  }

  /**
   * Appends to `out` the physical blocks of volume blocks first .. first +
   * count − 1, as runs: a block that follows the last run's end extends it
   * (the old copies of a stream's blocks come back as a few runs, not an
   * entry each). A map block at a time: synchronous (undefined) when every
   * map block it needs is cached or unflagged, as in a stream's plan, else a
   * promise that reads the others.
   */
  physicals(first: number, count: number, out: GrowingRun[]): void | Promise<void> {
    const end = first + count;
    for (let b = first; b < end; ) {
      const k = Math.floor(b / this.entries);
      const upto = Math.min(end, (k + 1) * this.entries);
      if (!this.flagged(k)) {
        appendRun(out, b, upto - b);
        b = upto;
        continue;
      }
      const view = this.cachedView(this.sb.summaryBlocks + k);
      if (view === undefined) return this.readPhysicals(b, end, out);
      for (let index = b - k * this.entries; b < upto; b++, index++) appendRun(out, entryPhysical(getEntry(view, index), b), 1);
    }
    return undefined;
  }

  /**
   * Starts reading, in one batch, the map blocks that the lookups of volume
   * blocks in `runs` (ascending [from, to) ranges) will need and the cache
   * does not hold: map pages compete with data pages for the cache, and a
   * stream's plan that met each evicted one in turn would wait for one 4 KiB
   * read after another. Map blocks never written (unflagged) need no read.
   */
  prefetch(runs: readonly (readonly [number, number])[]): void {
    let first = -1;
    let count = 0;
    let last = -1;
    for (const [from, to] of runs) {
      for (let k = Math.max(this.mapBlockOf(from), last + 1); k <= this.mapBlockOf(to - 1); k++) {
        last = k;
        const wanted = this.flagged(k) && this.cachedView(this.sb.summaryBlocks + k) === undefined;
        if (wanted && first >= 0 && first + count === k) {
          count++;
          continue;
        }
        if (count > 0) this.cache.prefetch(this.mapping, this.sb.summaryBlocks + first, count);
        first = wanted ? k : -1;
        count = wanted ? 1 : 0;
      }
    }
    if (count > 0) this.cache.prefetch(this.mapping, this.sb.summaryBlocks + first, count);
  }

  /**
   * `physicals` from volume block `from` on, whose map block must be read:
   * once that one entry has been read, its map block is cached, and the
   * rest goes on a map block at a time again (reading the next one it lacks
   * the same way), not an entry at a time.
   */
  private async readPhysicals(from: number, end: number, out: GrowingRun[]): Promise<void> {
    const physical = this.physical(from);
    appendRun(out, typeof physical === 'number' ? physical : await physical, 1);
    if (from + 1 < end) await this.physicals(from + 1, end - from - 1, out);
  }

  /**
   * Sets volume blocks first .. first + count − 1 to physical blocks
   * physical .. physical + count − 1, as `set` does one by one: one map
   * block dirtied (and awaited) per map block, not per entry.
   */
  async setRun(first: number, physical: number, count: number, dirty: MapDirty, touched: Map<number, Buffer>): Promise<void> {
    const end = first + count;
    for (let b = first; b < end; ) {
      const k = Math.floor(b / this.entries);
      const upto = Math.min(end, (k + 1) * this.entries);
      // The first entry through set() dirties (and, if new, starts) the map block; the rest land in its view.
      await this.set(b, physical + (b - first), dirty, touched);
      const view = touched.get(this.sb.summaryBlocks + k) as Buffer;
      for (b++; b < upto; b++) {
        setEntry(view, b - k * this.entries, entryValue(physical + (b - first), b));
      }
    }
  }

  /** The map block (0 .. M − 1) that holds a volume block's entry. */
  mapBlockOf(volumeBlock: number): number {
    return Math.floor(volumeBlock / this.entries);
  }

  /** The home block of a volume block: what the cache's lower map gives. */
  home(volumeBlock: number): number | Promise<number> {
    const physical = this.physical(volumeBlock);
    if (typeof physical === 'number') return this.physicalStart + physical;
    return physical.then((p) => this.physicalStart + p);
  }

  /**
   * Sets the physical block of a volume block, in the delta `dirty` writes
   * in; `touched` collects the map and summary blocks it dirtied (home block
   * → writable view), which the plan seals and logs.
   */
  async set(volumeBlock: number, physical: number, dirty: MapDirty, touched: Map<number, Buffer>): Promise<void> {
    const k = Math.floor(volumeBlock / this.entries);
    const block = this.sb.summaryBlocks + k;
    let view = touched.get(block);
    if (view === undefined) {
      const fresh = !this.flagged(k);
      view = await dirty(this.mapping, block, fresh);
      if (fresh) {
        // A map block whose bit is clear holds identity only, whatever its bytes say: it starts anew.
        initBlock(view, MAP_MAGIC, this.sb.volumeId);
        await this.flag(k, dirty, touched);
      }
      touched.set(block, view);
    }
    setEntry(view, volumeBlock - k * this.entries, entryValue(physical, volumeBlock));
  }

  /** Seals every block a plan dirtied (their checksums), as they are about to be logged. */
  seal(touched: Map<number, Buffer>): JournalBlock[] {
    const blocks: JournalBlock[] = [];
    for (const [home, view] of touched) {
      sealBlock(view);
      blocks.push({ home, image: view });
    }
    return blocks;
  }

  private flagged(k: number): boolean {
    return (this.loaded.summary[k >>> 3] & (1 << (k & 7))) !== 0;
  }

  /** Sets map block k's summary bit, in memory and in its summary block. */
  private async flag(k: number, dirty: MapDirty, touched: Map<number, Buffer>): Promise<void> {
    this.loaded.summary[k >>> 3] |= 1 << (k & 7);
    const j = Math.floor(k / this.bits);
    let view = touched.get(j);
    if (view === undefined) {
      // Format wrote every summary block: this one is read and changed, never started anew.
      view = await dirty(this.mapping, j, false);
      touched.set(j, view);
    }
    setBit(view, k - j * this.bits);
  }

  /** The cached, up-to-date view of a map block, or undefined when it must be read. */
  private cachedView(block: number): Buffer | undefined {
    const pageIndex = Math.floor(block / this.perPage);
    const frame = this.mapping.table.get(pageIndex);
    if (frame === undefined) return undefined;
    const head = block - pageIndex * this.perPage;
    if (this.cache.pages.states[frame * this.perPage + head] === EMPTY) return undefined;
    return this.cache.view(frame, head);
  }

  private async readEntry(block: number, index: number, volumeBlock: number): Promise<number> {
    const frame = await this.cache.uptodate(this.mapping, block);
    try {
      const head = block - Math.floor(block / this.perPage) * this.perPage;
      return entryPhysical(getEntry(this.cache.view(frame, head), index), volumeBlock);
    } finally {
      this.cache.unpin(frame);
    }
  }
}

function entryPhysical(value: number, volumeBlock: number): number {
  return value === IDENTITY ? volumeBlock : value - 1;
}

/** The entry that puts a volume block at a physical block (entryPhysical's inverse). */
function entryValue(physical: number, volumeBlock: number): number {
  return physical === volumeBlock ? IDENTITY : physical + 1;
}
