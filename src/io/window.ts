import { describe } from './describe';
import type { Geometry } from './geometry';
import type { BlockIo, IoRequest, IoResult } from './request';

/**
 * A byte range of another BlockIo, seen as a device of its own: offset 0 of
 * the window is `start` on the device. A journaled volume's data area is a
 * window past its superblocks and log, so that the cache numbers its blocks
 * from 0 whatever the layout. Requests that reach past the window's end are
 * refused (RangeError) before they reach the device: the log and
 * superblocks are out of the cache's reach.
 *
 * The window does not own the device: close() is a no-op, and the owner
 * closes the device.
 */
export class BlockWindow implements BlockIo {
  readonly geometry: Geometry;

  constructor(
    private readonly device: BlockIo,
    private readonly start: number,
    size: number,
  ) {
    if (!Number.isSafeInteger(start) || start < 0 || !Number.isSafeInteger(size) || size < 0 || start + size > device.geometry.size) {
      throw new RangeError(`a window of ${describe(size)} bytes at ${describe(start)} does not fit in '${device.path}' (${device.geometry.size} bytes)`);
    }
    this.geometry = { ...device.geometry, size };
  }

  get path(): string {
    return this.device.path;
  }

  submit(requests: readonly IoRequest[]): Promise<IoResult[]> {
    try {
      return this.device.submit(requests.map((request) => this.translate(request)));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  run(requests: readonly IoRequest[]): Promise<void> {
    try {
      return this.device.run(requests.map((request) => this.translate(request)));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  flush(): Promise<void> {
    return this.device.flush();
  }

  holeAt(offset: number, length: number): boolean {
    return this.device.holeAt?.(this.start + offset, length) ?? false;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private translate(request: IoRequest): IoRequest {
    const { offset } = request;
    let length = 0;
    for (const buffer of request.buffers) length += buffer.byteLength;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > this.geometry.size) {
      throw new RangeError(
        `a ${request.op} of ${length} bytes at offset ${describe(offset)} reaches past the end of the data area (${this.geometry.size} bytes) of '${this.path}'`,
      );
    }
    return { ...request, offset: this.start + offset };
  }
}
