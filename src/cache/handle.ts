import { BlockforkError } from '../io/errors';
import type { Cache } from './cache';
import type { Mapping } from './mapping';

/**
 * A reference to a cached block (Linux's buffer_head as `bread` returns it):
 * it keeps the block's page in the cache until `release()`. The handle names
 * the block, not its memory, so it follows the page to its copy when the page
 * is forked, as Tux3's buffer heads do.
 *
 * `data` is the cache's own memory for the block, not a copy: read it, and
 * take it again after any await (a fork may have moved the block). Write only
 * through the view `tx.blockdirty(handle)` returns: writing `data` directly
 * could change an image an earlier delta is writing out (guarantee G1).
 */
export class BlockHandle {
  private released = false;

  /** Made by `bread`, which has pinned the page with a hold for it. */
  constructor(
    private readonly cache: Cache,
    readonly mapping: Mapping,
    readonly block: number,
  ) {}

  get data(): Buffer {
    if (this.released) throw new BlockforkError('ERR_HANDLE_RELEASED', `the handle of block ${this.block} has been released`);
    const pageIndex = Math.floor(this.block / this.cache.perPage);
    const frame = this.mapping.table.get(pageIndex);
    if (frame === undefined) throw new BlockforkError('ERR_VOLUME_CLOSED', 'the volume of this handle is closed');
    return this.cache.view(frame, this.block - pageIndex * this.cache.perPage);
  }

  /** Lets the page go; a second release does nothing. */
  release(): void {
    if (this.released) return;
    this.released = true;
    // The hold kept the page in the table, under the frame of its latest copy;
    // only a closed volume has emptied the table.
    const frame = this.mapping.table.get(Math.floor(this.block / this.cache.perPage));
    if (frame !== undefined) this.cache.unhold(frame);
  }
}

/** Brings a block into the cache (reading it if needed) and returns a handle that holds it there. */
export async function bread(cache: Cache, mapping: Mapping, block: number): Promise<BlockHandle> {
  const frame = await cache.uptodate(mapping, block);
  cache.hold(frame);
  cache.unpin(frame);
  return new BlockHandle(cache, mapping, block);
}
