/**
 * A mapping's page table: page index -> frame, for every page of the
 * mapping that the cache holds.
 *
 * Every block operation looks its page up here, and every page that comes
 * in or goes out is added or removed, so a stream through the cache makes
 * three calls per block (a lookup that misses, the new page, the evicted
 * one). A JS Map spent 230-300 ns on those three in a 65,536-page table;
 * this table spends 40-75 (a microbenchmark of that pattern).
 *
 * Open addressing with linear probing over two typed arrays (keys as
 * float64, since a page index may pass 2^32; frames as int32), at most half
 * full, so that a probe ends soon on an empty slot. Removal shifts the
 * entries after the removed one back (no tombstones), so the table never
 * fills with dead slots however long a stream runs.
 *
 * Where a key goes: the Fibonacci hash of its eight-page group, then the
 * key's place in the group. Pages that follow one another land in
 * neighbouring slots (a stream walks the arrays in order rather than at
 * random), while groups are spread over the table, so that keys at a
 * regular stride (one page in every 2^k) do not pile up in one place.
 */
const EMPTY_KEY = -1;
/** Pages of a group, whose keys lie side by side. */
const GROUP_BITS = 3;
const MIN_SLOTS = 16;

export class PageTable {
  private keys!: Float64Array;
  private frames!: Int32Array;
  private mask!: number;
  /** 32 minus log2 of the slots (and of a group): the hash's top bits pick a group. */
  private shift!: number;
  private count = 0;

  constructor() {
    this.allocate(MIN_SLOTS);
  }

  get size(): number {
    return this.count;
  }

  /** The frame of page `pageIndex`, or undefined if it is not cached. */
  get(pageIndex: number): number | undefined {
    const keys = this.keys;
    const mask = this.mask;
    for (let i = this.slotOf(pageIndex); ; i = (i + 1) & mask) {
      const key = keys[i];
      if (key === pageIndex) return this.frames[i];
      if (key === EMPTY_KEY) return undefined;
    }
  }

  has(pageIndex: number): boolean {
    return this.get(pageIndex) !== undefined;
  }

  /** Sets the frame of `pageIndex` (a non-negative integer), adding it or replacing its frame. */
  set(pageIndex: number, frame: number): void {
    // A key that is not one would never be found again (NaN equals nothing), or would be taken for an empty slot (-1).
    if (!Number.isSafeInteger(pageIndex) || pageIndex < 0) throw new RangeError(`page index must be a non-negative integer, got ${String(pageIndex)}`);
    if (2 * (this.count + 1) > this.keys.length) this.rehash(2 * this.keys.length);
    this.put(pageIndex, frame);
  }

  /** Removes `pageIndex`; whether it was there. */
  delete(pageIndex: number): boolean {
    const keys = this.keys;
    const frames = this.frames;
    const mask = this.mask;
    let hole = this.slotOf(pageIndex);
    for (; ; hole = (hole + 1) & mask) {
      const key = keys[hole];
      if (key === pageIndex) break;
      if (key === EMPTY_KEY) return false;
    }
    // Each later entry of the cluster whose probe from its own slot passes the hole moves into
    // it, and leaves a hole of its own: every entry stays reachable from its slot without gaps.
    for (let j = hole; ; ) {
      j = (j + 1) & mask;
      const key = keys[j];
      if (key === EMPTY_KEY) break;
      const home = this.slotOf(key);
      const passesHole = hole <= j ? home <= hole || home > j : home <= hole && home > j;
      if (passesHole) {
        keys[hole] = key;
        frames[hole] = frames[j];
        hole = j;
      }
    }
    keys[hole] = EMPTY_KEY;
    this.count--;
    return true;
  }

  clear(): void {
    this.allocate(MIN_SLOTS);
  }

  /** The frames, as a new array: the caller may change the table while it walks them. */
  values(): number[] {
    const out: number[] = [];
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) if (keys[i] !== EMPTY_KEY) out.push(this.frames[i]);
    return out;
  }

  private slotOf(pageIndex: number): number {
    const low = pageIndex >>> 0;
    const high = (pageIndex / 4294967296) >>> 0;
    const group = Math.imul((low >>> GROUP_BITS) ^ Math.imul(high, 0x85ebca6b), 0x9e3779b1) >>> (this.shift + GROUP_BITS);
    return (group << GROUP_BITS) | (low & ((1 << GROUP_BITS) - 1));
  }

  private put(pageIndex: number, frame: number): void {
    const keys = this.keys;
    const mask = this.mask;
    for (let i = this.slotOf(pageIndex); ; i = (i + 1) & mask) {
      const key = keys[i];
      if (key === pageIndex) {
        this.frames[i] = frame;
        return;
      }
      if (key === EMPTY_KEY) {
        keys[i] = pageIndex;
        this.frames[i] = frame;
        this.count++;
        return;
      }
    }
  }

  private allocate(slots: number): void {
    this.keys = new Float64Array(slots).fill(EMPTY_KEY);
    this.frames = new Int32Array(slots);
    this.mask = slots - 1;
    this.shift = 32 - Math.log2(slots);
    this.count = 0;
  }

  private rehash(slots: number): void {
    const keys = this.keys;
    const frames = this.frames;
    this.allocate(slots);
    for (let i = 0; i < keys.length; i++) if (keys[i] !== EMPTY_KEY) this.put(keys[i], frames[i]);
  }
}
