import type { BlockIo, IoRequest, IoResult } from '../../src/io/request';

/** One read request as the device saw it. */
export interface ReadSeen {
  readonly offset: number;
  readonly bytes: number;
  readonly buffers: number;
}

/**
 * Wraps a BlockIo and changes nothing it does: it records the read requests
 * of each submit, in order, so that a test can see how the cache's reads
 * reach the device (how many submits, how large, how sorted).
 */
export class ReadLog implements BlockIo {
  /** Per submit that held reads: its read requests, in the order given. */
  readonly submits: ReadSeen[][] = [];

  /**
   * `holes`: pass the inner device's holeAt through, so that the cache skips
   * the holes it names; without it the cache reads every block it misses.
   */
  constructor(
    readonly inner: BlockIo,
    holes = false,
  ) {
    if (holes && inner.holeAt) this.holeAt = (offset, length) => (inner.holeAt as NonNullable<BlockIo['holeAt']>)(offset, length);
  }

  holeAt?: BlockIo['holeAt'];

  get path(): string {
    return this.inner.path;
  }

  get geometry(): BlockIo['geometry'] {
    return this.inner.geometry;
  }

  /** Every read request seen, in order. */
  get reads(): ReadSeen[] {
    return this.submits.flat();
  }

  /** Bytes read at each offset, summed: a block read twice shows here. */
  timesRead(blockSize: number): Map<number, number> {
    const times = new Map<number, number>();
    for (const r of this.reads) {
      for (let o = r.offset; o < r.offset + r.bytes; o += blockSize) times.set(o / blockSize, (times.get(o / blockSize) ?? 0) + 1);
    }
    return times;
  }

  submit(requests: readonly IoRequest[]): Promise<IoResult[]> {
    this.note(requests);
    return this.inner.submit(requests);
  }

  run(requests: readonly IoRequest[]): Promise<void> {
    this.note(requests);
    return this.inner.run(requests);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private note(requests: readonly IoRequest[]): void {
    const reads = requests.filter((r) => r.op === 'read');
    if (reads.length === 0) return;
    this.submits.push(
      reads.map((r) => ({ offset: r.offset, bytes: r.buffers.reduce((n, b) => n + b.byteLength, 0), buffers: r.buffers.length })),
    );
  }
}
