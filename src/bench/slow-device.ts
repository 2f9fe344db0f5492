import type { BlockIo, IoRequest, IoResult } from '../io/request';

/**
 * How much slower than the bench's target a slow device is: each batch of
 * writes completes `writeMs` late, each flush `flushMs` late (a write with
 * RWF_DSYNC, which is a write and a flush in one, both). Timers round up to
 * the millisecond, so a delay is at least what it says.
 */
export interface Slowness {
  /** Short name for the table. */
  readonly name: string;
  readonly writeMs: number;
  readonly flushMs: number;
}

/** A SATA SSD without power-loss protection: its flush empties a volatile write cache. */
export const SATA_SSD: Slowness = { name: 'SATA SSD, +1 ms write, +4 ms flush', writeMs: 1, flushMs: 4 };

/** Network block storage (a cloud volume): every request is a round trip, a flush one more. */
export const NETWORK_VOLUME: Slowness = { name: 'network volume, +0.5 ms write, +1 ms flush', writeMs: 0.5, flushMs: 1 };

/**
 * A real device made slow: every request still goes to the device (the data
 * and the durability are real); its completion is only reported late. This
 * is how the bench shows what happens when commits come faster than the
 * device can finish them, on a machine whose device is fast.
 */
export class SlowDevice implements BlockIo {
  constructor(
    private readonly inner: BlockIo,
    private readonly slowness: Slowness,
  ) {}

  get path(): string {
    return this.inner.path;
  }

  get geometry(): BlockIo['geometry'] {
    return this.inner.geometry;
  }

  async submit(requests: readonly IoRequest[]): Promise<IoResult[]> {
    const results = await this.inner.submit(requests);
    await this.late(requests);
    return results;
  }

  async run(requests: readonly IoRequest[]): Promise<void> {
    await this.inner.run(requests);
    await this.late(requests);
  }

  async flush(): Promise<void> {
    await this.inner.flush();
    await sleep(this.slowness.flushMs);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private late(requests: readonly IoRequest[]): Promise<void> {
    let ms = 0;
    if (requests.some((r) => r.op === 'write')) ms += this.slowness.writeMs;
    if (requests.some((r) => r.dsync === true)) ms += this.slowness.flushMs;
    return ms > 0 ? sleep(ms) : Promise.resolve();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise<void>((resolve) => setTimeout(resolve, ms));
}
