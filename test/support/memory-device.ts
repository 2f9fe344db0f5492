import { BlockforkError } from '../../src/io/errors';
import type { Geometry } from '../../src/io/geometry';
import type { BlockIo, IoRequest, IoResult } from '../../src/io/request';

export interface MemoryDeviceOptions {
  size: number;
  /** Offsets, lengths and buffer addresses must be multiples of this (default 512), as O_DIRECT asks. */
  sectorSize?: number;
  path?: string;
}

/**
 * A device in memory with a volatile write cache: a completed write lands
 * in `volatile`; `flush()` copies it to `durable`, which is what a power
 * cut would leave. It checks alignment and bounds as the real Device does,
 * so that a misaligned request fails here too.
 */
export class MemoryDevice implements BlockIo {
  readonly path: string;
  readonly geometry: Geometry;
  readonly volatile: Buffer;
  readonly durable: Buffer;
  closed = false;

  constructor(options: MemoryDeviceOptions) {
    const sectorSize = options.sectorSize ?? 512;
    this.path = options.path ?? 'memory';
    this.geometry = Object.freeze({
      size: options.size,
      logicalSectorSize: sectorSize,
      physicalSectorSize: sectorSize,
      memoryAlignment: sectorSize,
      isBlockDevice: false,
      direct: true,
      readOnly: false,
    });
    this.volatile = Buffer.alloc(options.size);
    this.durable = Buffer.alloc(options.size);
  }

  submit(requests: readonly IoRequest[]): Promise<IoResult[]> {
    this.checkOpen();
    const sector = this.geometry.logicalSectorSize;
    for (const [i, r] of requests.entries()) {
      let length = 0;
      for (const b of r.buffers) {
        if (b.byteLength % sector !== 0 || b.byteOffset % sector !== 0) throw new RangeError(`request ${i}: buffer not aligned to ${sector}`);
        length += b.byteLength;
      }
      if (r.offset % sector !== 0 || r.offset < 0 || r.offset + length > this.geometry.size) {
        throw new RangeError(`request ${i}: offset ${r.offset} + ${length} misaligned or past the end`);
      }
    }
    const results = requests.map((r): IoResult => {
      let offset = r.offset;
      for (const b of r.buffers) {
        const bytes = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
        if (r.op === 'read') this.volatile.copy(bytes, 0, offset, offset + b.byteLength);
        else {
          bytes.copy(this.volatile, offset);
          // RWF_DSYNC: durable when it completes.
          if (r.dsync) bytes.copy(this.durable, offset);
        }
        offset += b.byteLength;
      }
      return { bytes: offset - r.offset };
    });
    return Promise.resolve(results);
  }

  async run(requests: readonly IoRequest[]): Promise<void> {
    for (const result of await this.submit(requests)) if (result.error) throw result.error;
  }

  flush(): Promise<void> {
    this.checkOpen();
    this.volatile.copy(this.durable);
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }

  private checkOpen(): void {
    if (this.closed) throw new BlockforkError('ERR_DEVICE_CLOSED', `device '${this.path}' is closed`);
  }
}
