import { NO_FRAME } from './page';

/** `next` of a frame that is not on the list. */
const OFF = -2;

/**
 * The eviction order of clean, unpinned cached pages: a doubly linked list
 * threaded through two typed arrays indexed by frame, newest at the head.
 * Dirty and pinned pages are kept off it, so the oldest page on it can always
 * be evicted and eviction never scans.
 */
export class Lru {
  private next: Int32Array;
  private prev: Int32Array;
  private head = NO_FRAME;
  private tail = NO_FRAME;
  private count = 0;

  constructor(frames: number) {
    this.next = new Int32Array(frames).fill(OFF);
    this.prev = new Int32Array(frames).fill(NO_FRAME);
  }

  get length(): number {
    return this.count;
  }

  grow(frames: number): void {
    if (frames <= this.next.length) return;
    const next = new Int32Array(frames).fill(OFF);
    const prev = new Int32Array(frames).fill(NO_FRAME);
    next.set(this.next);
    prev.set(this.prev);
    this.next = next;
    this.prev = prev;
  }

  has(frame: number): boolean {
    return this.next[frame] !== OFF;
  }

  /** Puts a frame at the head (newest); it must not be on the list. */
  insert(frame: number): void {
    this.prev[frame] = NO_FRAME;
    this.next[frame] = this.head;
    if (this.head !== NO_FRAME) this.prev[this.head] = frame;
    else this.tail = frame;
    this.head = frame;
    this.count++;
  }

  remove(frame: number): void {
    if (this.next[frame] === OFF) return;
    const next = this.next[frame];
    const prev = this.prev[frame];
    if (prev !== NO_FRAME) this.next[prev] = next;
    else this.head = next;
    if (next !== NO_FRAME) this.prev[next] = prev;
    else this.tail = prev;
    this.next[frame] = OFF;
    this.prev[frame] = NO_FRAME;
    this.count--;
  }

  /** Marks a frame on the list as just used. */
  touch(frame: number): void {
    if (this.head === frame || this.next[frame] === OFF) return;
    this.remove(frame);
    this.insert(frame);
  }

  /** The least recently used frame, or NO_FRAME. */
  oldest(): number {
    return this.tail;
  }
}
