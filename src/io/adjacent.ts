/**
 * Views that follow one another in the same memory, joined into one: a
 * delta's images usually sit in consecutive frames of a slab, and a request
 * of a few large buffers costs the addon (which checks every buffer) and the
 * kernel (which walks every iovec) far less than one of a thousand 4 KiB
 * buffers: measured on a 32 MiB log write (8192 images), submission fell
 * from about 1.9 ms to 0.2 ms.
 */
export function joinAdjacent(buffers: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let memory: ArrayBufferLike | undefined;
  let start = 0;
  let length = 0;
  for (const b of buffers) {
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

/** `joinAdjacent` over the images of `blocks[from]` to `blocks[to - 1]`. */
export function joinImages(blocks: readonly { readonly image: Uint8Array }[], from: number, to: number): Uint8Array[] {
  // A plain array first: one loop over views of one kind keeps joinAdjacent's optimized code stable
  // (a loop generic over a getter was deoptimized again and again at its rare construct site).
  const images: Uint8Array[] = new Array(to - from);
  for (let i = from; i < to; i++) images[i - from] = blocks[i].image;
  return joinAdjacent(images);
}
