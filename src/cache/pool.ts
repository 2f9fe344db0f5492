import assert from 'node:assert/strict';
import { BlockforkError } from '../io/errors';
import { Slab, copyPage } from '../io/slab';

/** Slabs are at most this big: few mmaps, and little memory beyond a small cache's budget. */
const SLAB_BYTES = 2 << 20;

/**
 * Page memory: frames of `pageSize` bytes cut from native slabs (outside the
 * V8 heap, page-aligned for O_DIRECT), with a free list per slab. Frame
 * numbers are stable: frame f is page `f % slabPages` of slab
 * `f / slabPages`.
 *
 * The cache keeps at most `budget` frames of cached pages; frozen copies
 * pinned by deltas in flight may take more (guarantee G7). Allocation takes
 * the lowest slab with a free frame, so that frames beyond the budget gather
 * in the high slabs, and a high slab is returned to the system as soon as all
 * of its frames are free again: the pool shrinks back after a burst of forks.
 */
export class PagePool {
  readonly slabPages: number;
  private readonly budgetSlabs: number;
  private readonly slabs: (Slab | undefined)[] = [];
  /** Per slab: a stack of its free page numbers, and how many are on it. */
  private readonly freePages: Int32Array[] = [];
  private readonly freeCount: number[] = [];
  /** Every slab below this one has no free frame. */
  private lowest = 0;
  /**
   * Per frame: 1 while it is allocated. A frame freed twice, or one used after
   * it was freed, would be handed to two pages at once (or read in a slab
   * already returned to the system): free and view refuse it with an internal
   * error instead, where the mistake is made.
   */
  private allocated = new Uint8Array(0);
  private released = false;

  constructor(readonly pageSize: number, budget: number) {
    // A slab is mmap'd: a whole number of system pages, which may hold several cache pages.
    const perSystemPage = Math.max(1, Slab.systemPageSize / pageSize);
    const pages = Math.min(budget, SLAB_BYTES / pageSize);
    this.slabPages = Math.ceil(pages / perSystemPage) * perSystemPage;
    this.budgetSlabs = Math.ceil(budget / this.slabPages);
  }

  /** One past the highest frame number that may be in use: the size of per-frame records. */
  get frameLimit(): number {
    return this.slabs.length * this.slabPages;
  }

  /** Bytes of native memory held now. */
  get byteLength(): number {
    let bytes = 0;
    for (const slab of this.slabs) if (slab) bytes += slab.byteLength;
    return bytes;
  }

  alloc(): number {
    let s = this.lowest;
    while (s < this.slabs.length && (this.slabs[s] === undefined || this.freeCount[s] === 0)) s++;
    if (s === this.slabs.length) s = this.addSlab();
    this.lowest = s;
    const frame = s * this.slabPages + this.freePages[s][--this.freeCount[s]];
    this.allocated[frame] = 1;
    return frame;
  }

  free(frame: number): void {
    // An operation that outlived close() lets go of a frame of a released slab: nothing to free.
    if (this.released) return;
    if (this.allocated[frame] !== 1) assert.fail(`page frame ${frame} freed twice (or never allocated)`);
    this.allocated[frame] = 0;
    const s = Math.floor(frame / this.slabPages);
    this.freePages[s][this.freeCount[s]++] = frame - s * this.slabPages;
    if (s < this.lowest) this.lowest = s;
    if (s >= this.budgetSlabs && this.freeCount[s] === this.slabPages) {
      (this.slabs[s] as Slab).release();
      this.slabs[s] = undefined;
    }
  }

  /** A zero-copy view of `length` bytes at `offset` in a frame. */
  view(frame: number, offset: number, length: number): Buffer {
    return Buffer.from(this.memoryOf(frame), this.byteOffsetOf(frame, offset), length);
  }

  /**
   * `view` as a plain Uint8Array, for the cache's own I/O (a delta's images):
   * no Buffer's argument checks, which a writeout would pay for every block.
   */
  image(frame: number, offset: number, length: number): Uint8Array {
    return new Uint8Array(this.memoryOf(frame), this.byteOffsetOf(frame, offset), length);
  }

  /** The slab memory a frame lies in, refused for a frame not allocated. */
  memoryOf(frame: number): ArrayBuffer {
    const slab = this.slabs[Math.floor(frame / this.slabPages)];
    // Only an operation that outlived close() finds its slab gone; any other view of a free frame is a use after free.
    if (this.released) throw new BlockforkError('ERR_VOLUME_CLOSED', 'the page memory has been released: the volume is closed');
    if (this.allocated[frame] !== 1 || slab === undefined) assert.fail(`page frame ${frame} used after it was freed`);
    return slab.memory;
  }

  /** Where byte `offset` of a frame lies in its slab's memory. */
  byteOffsetOf(frame: number, offset: number): number {
    return (frame % this.slabPages) * this.pageSize + offset;
  }

  copy(target: number, source: number): void {
    copyPage(this.view(target, 0, this.pageSize), this.view(source, 0, this.pageSize));
  }

  /** Frees every slab now: the volume is closing. Views of them become empty. */
  release(): void {
    this.released = true;
    this.allocated.fill(0);
    for (let s = 0; s < this.slabs.length; s++) {
      this.slabs[s]?.release();
      this.slabs[s] = undefined;
      this.freeCount[s] = 0;
    }
  }

  /** Adds a slab in the lowest empty place; its pages go on its stack lowest first. */
  private addSlab(): number {
    let s = this.slabs.indexOf(undefined);
    if (s === -1) s = this.slabs.length;
    this.slabs[s] = Slab.alloc(this.pageSize, this.slabPages);
    const stack = this.freePages[s] ?? new Int32Array(this.slabPages);
    for (let i = 0; i < this.slabPages; i++) stack[i] = this.slabPages - 1 - i;
    this.freePages[s] = stack;
    this.freeCount[s] = this.slabPages;
    if (this.allocated.length < this.slabs.length * this.slabPages) {
      const allocated = new Uint8Array(this.slabs.length * this.slabPages);
      allocated.set(this.allocated);
      this.allocated = allocated;
    }
    return s;
  }
}
