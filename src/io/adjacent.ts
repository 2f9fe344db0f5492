/**
 * Views that follow one another in the same memory, joined into one: a
 * delta's images usually sit in consecutive frames of a slab, and a request
 * of a few large buffers costs the addon (which checks every buffer) and the
 * kernel (which walks every iovec) far less than one of a thousand 4 KiB
 * buffers: measured on a 32 MiB log write (8192 images), submission fell
 * from about 1.9 ms to 0.2 ms.
 */
export function joinAdjacent(buffers: readonly Uint8Array[]): Uint8Array[] {
  return joinWith(0, buffers.length, (i) => buffers[i]);
}

/** `joinAdjacent` over the images of `blocks[from]` to `blocks[to - 1]`, with no array of them made first. */
export function joinImages(blocks: readonly { readonly image: Uint8Array }[], from: number, to: number): Uint8Array[] {
  return joinWith(from, to, (i) => blocks[i].image);
}

function joinWith(from: number, to: number, viewAt: (i: number) => Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let memory: ArrayBufferLike | undefined;
  let start = 0;
  let length = 0;
  for (let i = from; i < to; i++) {
    const b = viewAt(i);
    if (b.buffer === memory && b.byteOffset === start + length) {
      length += b.byteLength;
      continue;
    }
    if (memory !== undefined) out.push(new Uint8Array(memory, start, length));
    memory = b.buffer;
    start = b.byteOffset;
    length = b.byteLength;
  }
  if (memory !== undefined) out.push(new Uint8Array(memory, start, length));
  return out;
}
