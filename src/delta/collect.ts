import type { Cache } from '../cache/cache';
import { HOLE, type Mapping } from '../cache/mapping';
import { dirtyIn } from '../cache/page';
import { AdjacentViews } from '../io/adjacent';
import { BlockforkError } from '../io/errors';
import type { IoRequest } from '../io/request';
import { WriteRunBuilder, type BlockList } from '../io/write-runs';
import type { Delta } from './delta';

/**
 * A closed delta's dirty blocks, gathered for its writeout: where each one
 * goes (its home) and where its image lies (a frame, a block of it).
 *
 * A stream's delta holds thousands of blocks, and nothing per block needs
 * an object of its own: the writes take a view per stretch of adjacent
 * memory, a version 2 plan reads homes and redirects whole runs. So blocks
 * are kept as parallel arrays (a stream's delta of one block per page keeps
 * only a copy of its dirty list: the frames, whose page indexes are the
 * homes), and an object or a view is made only when one is asked for (a
 * block logged whole, a version 1 delta's log). Objects made per block and
 * kept while the delta's writes are in flight outlive the collector's young
 * generation and cost it a copy each: a stream's delta makes none.
 */

/** A dirty block of a closed delta: its physical (home) block, and its image in page memory. */
export interface DirtyBlock {
  readonly home: number;
  readonly image: Uint8Array;
}

/** A closed delta's dirty blocks sorted by home, read by index. */
export type DirtyBlockList = BlockList;

/**
 * The blocks `collect` found, sorted by home. Without `homes` and `heads`
 * (a stream's delta of one block per page), each block is block 0 of its
 * frame and its home is the frame's page index.
 */
export class CollectedBlocks implements DirtyBlockList {
  constructor(
    private readonly cache: Cache,
    private readonly frames: readonly number[],
    private readonly homes?: readonly number[],
    private readonly heads?: readonly number[],
  ) {}

  get length(): number {
    return this.frames.length;
  }

  home(i: number): number {
    return this.homes === undefined ? this.cache.pages.index[this.frames[i]] : this.homes[i];
  }

  image(i: number): Uint8Array {
    return this.cache.image(this.frames[i], this.head(i));
  }

  images(from: number, to: number): Uint8Array[] {
    const joined = new AdjacentViews();
    const { cache, frames } = this;
    for (let i = from; i < to; i++) joined.add(cache.frameMemory(frames[i]), cache.imageOffset(frames[i], this.head(i)), cache.blockSize);
    return joined.finish();
  }

  /** Every block as an object of its own, in order (what a version 1 journal logs whole). */
  toArray(): DirtyBlock[] {
    const out: DirtyBlock[] = new Array(this.frames.length);
    for (let i = 0; i < out.length; i++) out[i] = { home: this.home(i), image: this.image(i) };
    return out;
  }

  /** The home writes: consecutive homes as one request, memory joined where adjacent. */
  writes(): IoRequest[] {
    const runs = new WriteRunBuilder(this.cache.blockSize);
    for (let i = 0; i < this.frames.length; i++) runs.add(this.home(i), this.cache.frameMemory(this.frames[i]), this.cache.imageOffset(this.frames[i], this.head(i)));
    return runs.finish();
  }

  private head(i: number): number {
    return this.heads === undefined ? 0 : this.heads[i];
  }
}

/**
 * Ordered mode: the delta's home writes when its blocks come from the
 * volume's own mapping with their homes strictly ascending in its dirty list
 * (a stream's delta): one pass, with nothing kept per block. Undefined
 * otherwise (random writes, a logical mapping, whose BlockMap may have to be
 * awaited): collect then sorts them.
 */
export function collectWrites(delta: Delta, cache: Cache): { requests: IoRequest[]; blocks: number } | undefined {
  for (const mapping of delta.mappings) if (mapping.translated) return undefined;
  const { pages, perPage } = cache;
  const runs = new WriteRunBuilder(cache.blockSize);
  let last = -1;
  const inOrder = eachDirtyBlock(delta, cache, (_mapping, frame, head) => {
    // Untranslated: the volume block is the block, and the device block in ordered mode.
    const home = pages.index[frame] * perPage + head;
    if (home <= last) return false;
    last = home;
    runs.add(home, cache.frameMemory(frame), cache.imageOffset(frame, head));
    return true;
  });
  return inOrder ? { requests: runs.finish(), blocks: runs.blocks } : undefined;
}

/**
 * The delta's dirty blocks, mapped to their homes (volume blocks: device
 * blocks unless the volume has a block map, which the plan applies) and
 * sorted by them. A BlockMap that must be awaited is, one block at a time,
 * in dirty-list order.
 */
export async function collect(delta: Delta, cache: Cache): Promise<CollectedBlocks> {
  const stream = streamBlocks(delta, cache);
  if (stream) return stream;
  const { pages, perPage } = cache;
  let homes: number[] = [];
  let frames: number[] = [];
  let heads: number[] = [];
  // Blocks of logical mappings: their BlockMap gives the home, and may have to be awaited.
  const translated: { at: number; mapping: Mapping }[] = [];
  eachDirtyBlock(delta, cache, (mapping, frame, head) => {
    // Untranslated: the volume block is the block itself.
    if (mapping.translated) translated.push({ at: homes.length, mapping });
    homes.push(pages.index[frame] * perPage + head);
    frames.push(frame);
    heads.push(head);
    return true;
  });
  const count = homes.length;
  for (const { at, mapping } of translated) {
    const block = homes[at];
    let home = mapping.volumeBlock(block);
    if (typeof home !== 'number') home = await home;
    if (home === HOLE) {
      throw new BlockforkError('ERR_UNMAPPED_BLOCK', `block ${block} of mapping ${mapping.id} is dirty but its block map gives a hole`);
    }
    homes[at] = home;
  }
  let ascending = true;
  for (let i = 1; i < count && ascending; i++) ascending = homes[i] > homes[i - 1];
  // A stream dirties its pages in order: strictly ascending already, it needs no sort (and no
  // comparator call per block), and no two of its blocks can share a home.
  if (!ascending) {
    const order = Array.from(homes.keys()).sort((x, y) => homes[x] - homes[y]);
    homes = order.map((i) => homes[i]);
    frames = order.map((i) => frames[i]);
    heads = order.map((i) => heads[i]);
    for (let i = 1; i < count; i++) {
      if (homes[i] === homes[i - 1]) {
        throw new BlockforkError('ERR_BLOCK_ALIASED', `two dirty blocks of delta ${delta.number} map to physical block ${homes[i]}`);
      }
    }
  }
  return new CollectedBlocks(cache, frames, homes, heads);
}

/**
 * A stream's delta of one block per page, from the volume's own mapping (or
 * another untranslated one): its dirty list, homes strictly ascending, is
 * the sorted list already, and a copy of it is all `collect` needs to keep.
 * Undefined for any other delta.
 */
function streamBlocks(delta: Delta, cache: Cache): CollectedBlocks | undefined {
  if (cache.perPage !== 1) return undefined;
  let list: readonly number[] | undefined;
  for (const mapping of delta.mappings) {
    if (mapping.internal) continue;
    if (mapping.translated || list !== undefined) return undefined;
    list = mapping.dirty[delta.slot];
  }
  if (list === undefined) return undefined;
  const { index, states } = cache.pages;
  const state = dirtyIn(delta.slot);
  for (let i = 0; i < list.length; i++) {
    if (states[list[i]] !== state || (i > 0 && index[list[i]] <= index[list[i - 1]])) return undefined;
  }
  // Copied: the list is the slot's, emptied once the delta is written.
  return new CollectedBlocks(cache, list.slice());
}

/**
 * Calls `visit` for each block dirty in the delta on its data mappings (the
 * internal ones are the plan's own), in the order of their dirty lists, until
 * it returns false; whether it visited every one.
 */
function eachDirtyBlock(delta: Delta, cache: Cache, visit: (mapping: Mapping, frame: number, head: number) => boolean): boolean {
  const { pages, perPage } = cache;
  const state = dirtyIn(delta.slot);
  for (const mapping of delta.mappings) {
    if (mapping.internal) continue;
    for (const frame of mapping.dirty[delta.slot]) {
      const base = frame * perPage;
      for (let head = 0; head < perPage; head++) if (pages.states[base + head] === state && !visit(mapping, frame, head)) return false;
    }
  }
  return true;
}
