import { native } from '../native';

/**
 * A run of page-aligned memory outside the V8 heap (mmap'd by the addon),
 * cut into equal pages. The cache takes its pages from slabs; the Device
 * takes any aligned view of them for I/O. V8 is told of the memory
 * (napi_adjust_external_memory) so that it weighs it when it collects.
 */
export class Slab {
  /** The system's page size: slabs are mmap'd in whole system pages. */
  static readonly systemPageSize: number = native.pageSize;

  readonly memory: ArrayBuffer;
  private released = false;

  private constructor(readonly pageSize: number, readonly pageCount: number) {
    // mmap hands out whole system pages: a slab of small pages whose total is not a
    // multiple of the system page gets the tail of its last system page unused.
    const bytes = pageSize * pageCount;
    const system = Slab.systemPageSize;
    this.memory = native.allocSlab(Math.ceil(bytes / system) * system);
  }

  /**
   * `pageSize` is a power of two from 512 to 1 MiB (the memory is aligned to
   * the system page, so any such page is aligned to every sector size).
   */
  static alloc(pageSize: number, pageCount: number): Slab {
    if (!Number.isInteger(pageSize) || pageSize < 512 || pageSize > 1 << 20 || (pageSize & (pageSize - 1)) !== 0) {
      throw new RangeError(`pageSize must be a power of two from 512 to 1048576, got ${String(pageSize)}`);
    }
    if (!Number.isInteger(pageCount) || pageCount < 1) {
      throw new RangeError(`pageCount must be a positive integer, got ${String(pageCount)}`);
    }
    return new Slab(pageSize, pageCount);
  }

  get byteLength(): number {
    return this.released ? 0 : this.memory.byteLength;
  }

  /** A zero-copy view of page `index`. */
  page(index: number): Buffer {
    if (this.released) throw new RangeError('slab has been released');
    if (!Number.isInteger(index) || index < 0 || index >= this.pageCount) {
      throw new RangeError(`page index must be an integer from 0 to ${this.pageCount - 1}, got ${String(index)}`);
    }
    return Buffer.from(this.memory, index * this.pageSize, this.pageSize);
  }

  /**
   * Frees the memory now rather than at garbage collection. Every view of it
   * becomes empty; I/O that still uses it makes this throw.
   */
  release(): void {
    if (this.released) return;
    native.releaseSlab(this.memory);
    this.released = true;
  }
}

/** memcpy of one page (or any views of equal length) in native code. */
export function copyPage(target: Uint8Array, source: Uint8Array): void {
  native.copy(target, source);
}
