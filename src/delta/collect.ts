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
 * are kept as parallel arrays, and an object or a view is made only when
 * one is asked for (a block logged whole, a version 1 delta's log). Objects
 * made per block and kept while the delta's writes are in flight outlive
 * the collector's young generation and cost it a copy each: a stream's
 * delta makes none.
 */

/** A dirty block of a closed delta: its physical (home) block, and its image in page memory. */
export interface DirtyBlock {
  readonly home: number;
  readonly image: Uint8Array;
}

/** A closed delta's dirty blocks sorted by home, read by index. */
export type DirtyBlockList = BlockList;

/** The blocks `collect` found, sorted by home. */
export class CollectedBlocks implements DirtyBlockList {
  constructor(
    private readonly cache: Cache,
    private readonly homes: ArrayLike<number>,
    private readonly frames: ArrayLike<number>,
    private readonly heads: ArrayLike<number>,
  ) {}

  get length(): number {
    return this.homes.length;
  }

  home(i: number): number {
    return this.homes[i];
  }

  image(i: number): Uint8Array {
    return this.cache.image(this.frames[i], this.heads[i]);
  }

  images(from: number, to: number): Uint8Array[] {
    const joined = new AdjacentViews();
    const { cache, frames, heads } = this;
    for (let i = from; i < to; i++) joined.add(cache.frameMemory(frames[i]), cache.imageOffset(frames[i], heads[i]), cache.blockSize);
    return joined.finish();
  }

  /** Every block as an object of its own, in order (what a version 1 journal logs whole). */
  toArray(): DirtyBlock[] {
    const out: DirtyBlock[] = new Array(this.homes.length);
    for (let i = 0; i < out.length; i++) out[i] = { home: this.homes[i], image: this.image(i) };
    return out;
  }

  /** The home writes: consecutive homes as one request, memory joined where adjacent. */
  writes(): IoRequest[] {
    const runs = new WriteRunBuilder(this.cache.blockSize);
    for (let i = 0; i < this.homes.length; i++) runs.add(this.homes[i], this.cache.frameMemory(this.frames[i]), this.cache.imageOffset(this.frames[i], this.heads[i]));
    return runs.finish();
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
 *
 * Typed arrays, sized for the delta's pages: their contents live outside the
 * collector's heap, so a delta's thousands of entries, kept while its writes
 * are in flight, are never copied by it (arrays grown by push would be,
 * element by element, when they outlive the young generation).
 */
export async function collect(delta: Delta, cache: Cache): Promise<CollectedBlocks> {
  const { pages, perPage } = cache;
  let room = 0;
  for (const mapping of delta.mappings) if (!mapping.internal) room += mapping.dirty[delta.slot].length * perPage;
  let homes = new Float64Array(room);
  let frames = new Int32Array(room);
  let heads = new Uint16Array(room);
  // Blocks of logical mappings: their BlockMap gives the home, and may have to be awaited.
  const translated: { at: number; mapping: Mapping }[] = [];
  let count = 0;
  eachDirtyBlock(delta, cache, (mapping, frame, head) => {
    // Untranslated: the volume block is the block itself.
    homes[count] = pages.index[frame] * perPage + head;
    if (mapping.translated) translated.push({ at: count, mapping });
    frames[count] = frame;
    heads[count] = head;
    count++;
    return true;
  });
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
  homes = homes.subarray(0, count);
  frames = frames.subarray(0, count);
  heads = heads.subarray(0, count);
  // A stream dirties its pages in order: strictly ascending already, it needs no sort (and no
  // comparator call per block), and no two of its blocks can share a home.
  if (!ascending) {
    const order = Array.from(homes.keys()).sort((x, y) => homes[x] - homes[y]);
    const sortedHomes = new Float64Array(count);
    const sortedFrames = new Int32Array(count);
    const sortedHeads = new Uint16Array(count);
    for (let i = 0; i < count; i++) {
      sortedHomes[i] = homes[order[i]];
      sortedFrames[i] = frames[order[i]];
      sortedHeads[i] = heads[order[i]];
    }
    homes = sortedHomes;
    frames = sortedFrames;
    heads = sortedHeads;
    for (let i = 1; i < count; i++) {
      if (homes[i] === homes[i - 1]) {
        throw new BlockforkError('ERR_BLOCK_ALIASED', `two dirty blocks of delta ${delta.number} map to physical block ${homes[i]}`);
      }
    }
  }
  return new CollectedBlocks(cache, homes, frames, heads);
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
