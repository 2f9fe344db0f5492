import { Slab } from '../../src/io/slab';
import type { BlockIo, IoRequest, IoResult } from '../../src/io/request';

/** What the device held for each block a batch of writes wrote, read back right after the batch completed. */
export interface Batch {
  readonly blocks: Map<number, Buffer>;
}

export type DeviceEvent = { readonly kind: 'batch'; readonly batch: number } | { readonly kind: 'flush' };

/**
 * Wraps a BlockIo and changes nothing it does: after each batch of writes
 * completes it reads the written blocks back from the device (before
 * returning, so before the volume can write anything else) and records
 * them, and it logs batches and flushes in the order they completed. The
 * tests compare those images with the model's snapshot of each delta (G1)
 * and check a flush followed them before the delta was reported durable
 * (G3); a batch written with RWF_DSYNC counts as flushed.
 */
export class Recorder implements BlockIo {
  readonly batches: Batch[] = [];
  readonly events: DeviceEvent[] = [];

  constructor(
    readonly inner: BlockIo,
    private readonly blockSize: number,
  ) {}

  get path(): string {
    return this.inner.path;
  }

  get geometry(): BlockIo['geometry'] {
    return this.inner.geometry;
  }

  submit(requests: readonly IoRequest[]): Promise<IoResult[]> {
    return this.inner.submit(requests);
  }

  async run(requests: readonly IoRequest[]): Promise<void> {
    await this.inner.run(requests);
    const writes = requests.filter((r) => r.op === 'write');
    if (writes.length === 0) return;
    const blocks = new Map<number, Buffer>();
    for (const write of writes) {
      const count = write.buffers.reduce((sum, b) => sum + b.byteLength, 0) / this.blockSize;
      const slab = Slab.alloc(4096, Math.ceil((count * this.blockSize) / 4096));
      try {
        const image = Buffer.from(slab.memory, 0, count * this.blockSize);
        await this.inner.run([{ op: 'read', offset: write.offset, buffers: [image] }]);
        for (let i = 0; i < count; i++) {
          blocks.set(write.offset / this.blockSize + i, Buffer.from(image.subarray(i * this.blockSize, (i + 1) * this.blockSize)));
        }
      } finally {
        slab.release();
      }
    }
    this.events.push({ kind: 'batch', batch: this.batches.length });
    this.batches.push({ blocks });
    // Writes with RWF_DSYNC were durable when they completed: as good as a flush after them.
    if (writes.every((w) => w.dsync === true)) this.events.push({ kind: 'flush' });
  }

  async flush(): Promise<void> {
    await this.inner.flush();
    this.events.push({ kind: 'flush' });
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
