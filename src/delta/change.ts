import { BlockHandle } from '../cache/handle';
import type { Mapping } from '../cache/mapping';
import { describe } from '../io/describe';
import { BlockforkError } from '../io/errors';
import type { Delta } from './delta';
import { blockdirty, type Writer } from './fork';
import type { Deltas } from './transition';

/** The error of a change used after its end: a caller's mistake, like a bad argument. */
function changeEnded(): TypeError {
  return Object.assign(new TypeError('this change has ended: a tx may be used only until its change() callback settles'), {
    code: 'ERR_CHANGE_ENDED',
  });
}

/** The error with which a failed volume refuses changes; the write or flush error is its cause. */
export function volumeFailed(cause: Error): BlockforkError {
  return new BlockforkError('ERR_VOLUME_FAILED', `the volume failed (${cause.message}); reopen it to write again`, { cause });
}

/**
 * One change (the `tx` of `vol.change(async (tx) => ...)`): it holds the
 * delta lock shared from start to end, so all it dirties lands in one delta.
 * It may be used only until the callback settles; an operation still waiting
 * then (not awaited by the callback) rejects rather than dirty a block in a
 * delta that may have closed.
 *
 * Changes in the same delta are not isolated from each other: they share the
 * cache, and the last write of a block wins. A change that throws keeps its
 * writes (ordered mode has no rollback).
 */
export class Change implements Writer {
  private live = true;

  constructor(
    private readonly deltas: Deltas,
    readonly delta: Delta,
  ) {}

  /**
   * A writable view of the block, dirty in this change's delta (read from
   * the device first if it is not cached). Valid until the change ends.
   */
  write(block: number, mapping?: Mapping): Promise<Buffer> {
    return this.dirty(block, mapping, false);
  }

  /**
   * A writable, zero-filled view of the block, dirty in this change's delta,
   * without reading it: for writes that replace the whole block. Valid until
   * the change ends.
   */
  overwrite(block: number, mapping?: Mapping): Promise<Buffer> {
    return this.dirty(block, mapping, true);
  }

  /**
   * The block as the cache holds it now, as a copy: writing to it changes
   * nothing, so no frozen image can be reached through it (G1).
   */
  read(block: number, mapping?: Mapping): Promise<Buffer> {
    if (!this.live) return Promise.reject(changeEnded());
    return this.deltas.cache.copyOut(mapping, block);
  }

  /**
   * `write` for a run: writable views of blocks `first` to `first + count -
   * 1`, one per block, dirty in this change's delta; the blocks not cached
   * are read first, together (one batch, merged; a sequential run as a
   * readahead window), and the call awaits once for the run. The views are
   * valid until the change ends, as `write`'s are.
   */
  writeRange(first: number, count: number, mapping?: Mapping): Promise<Buffer[]> {
    return this.dirtyRangeCounted(first, count, mapping, false);
  }

  /** `overwrite` for a run: zero-filled writable views of blocks `first` to `first + count - 1`, nothing read. Valid until the change ends. */
  overwriteRange(first: number, count: number, mapping?: Mapping): Promise<Buffer[]> {
    return this.dirtyRangeCounted(first, count, mapping, true);
  }

  /** `read` for a run: one copy of blocks `first` to `first + count - 1`, end to end, as the cache holds them now. */
  readRange(first: number, count: number, mapping?: Mapping): Promise<Buffer> {
    if (!this.live) return Promise.reject(changeEnded());
    const cache = this.deltas.cache;
    return cache.operateRange(mapping, first, count, (target) => cache.copyRange(target, first, count));
  }

  /** The lower layer's blockdirty: `write` for the block a handle holds. */
  blockdirty(handle: BlockHandle): Promise<Buffer> {
    if (!(handle instanceof BlockHandle)) return Promise.reject(new TypeError(`handle must be a BlockHandle, got ${describe(handle)}`));
    return this.dirty(handle.block, handle.mapping, false);
  }

  check(): void {
    if (!this.live) throw changeEnded();
    const failure = this.deltas.failure;
    if (failure) throw volumeFailed(failure);
  }

  /** Called by the volume when the callback has settled. */
  end(): void {
    this.live = false;
  }

  private dirty(block: number, mapping: Mapping | undefined, overwrite: boolean): Promise<Buffer> {
    try {
      this.check();
    } catch (error) {
      return Promise.reject(error);
    }
    return this.deltas.cache.operate(mapping, block, (target) => {
      // A long change of cached blocks would keep the event loop from turning while a writeout needs it.
      const turn = this.deltas.turnIfOverdue();
      if (turn) return turn.then(() => this.dirtyChecked(target, block, overwrite));
      return blockdirty(this.deltas, this, target, block, overwrite);
    });
  }

  /** A range call counted on its mapping until it settles, so that dropMapping cannot forget the mapping under it. */
  private dirtyRangeCounted(first: number, count: number, mapping: Mapping | undefined, overwrite: boolean): Promise<Buffer[]> {
    try {
      this.check();
    } catch (error) {
      return Promise.reject(error);
    }
    return this.deltas.cache.operateRange(mapping, first, count, (target) => this.dirtyRange(first, count, target, overwrite));
  }

  /**
   * The run in steps of at most the cache's range limit: each step's pages
   * are brought up to date together and stay pinned while blockdirty, which
   * then finds them cached and completes without a promise, dirties them.
   */
  private async dirtyRange(first: number, count: number, target: Mapping, overwrite: boolean): Promise<Buffer[]> {
    const cache = this.deltas.cache;
    const views: Buffer[] = new Array(count);
    const step = cache.rangeLimit * cache.perPage;
    for (let start = first; start < first + count; start += step) {
      const turn = this.deltas.turnIfOverdue();
      if (turn) await turn;
      this.check();
      const n = Math.min(step, first + count - start);
      const frames = overwrite ? [] : await cache.uptodateRun(target, start, n);
      try {
        for (let b = start; b < start + n; b++) {
          const view = blockdirty(this.deltas, this, target, b, overwrite);
          views[b - first] = view instanceof Promise ? await view : view;
        }
      } finally {
        for (const frame of frames) cache.unpin(frame);
      }
    }
    return views;
  }

  /** After a turn of the loop: the change may have ended, or the volume failed, meanwhile. */
  private dirtyChecked(target: Mapping, block: number, overwrite: boolean): Promise<Buffer> | Buffer {
    this.check();
    return blockdirty(this.deltas, this, target, block, overwrite);
  }
}
