import { native } from '../native';

/**
 * CRC32C (Castagnoli, reflected, as iSCSI and ext4 use it) of `data`,
 * continuing from `previous` so that a checksum can span separate ranges:
 * crc32c(b, crc32c(a)) === crc32c(a ‖ b).
 *
 * The addon computes it (native/crc32c.cc): with the CPU's CRC32C
 * instruction where it has one (SSE4.2, arm64's CRC extension), else with
 * slicing-by-8 tables; measurements in docs/FORMAT.md.
 */
export function crc32c(data: Uint8Array, previous = 0): number {
  return native.crc32c(data, previous);
}

/**
 * The CRC32C of each `blockSize` bytes of `views` in turn (each a whole
 * number of blocks), on the thread pool: the checksums of blocks given as
 * the few large views of the requests that write them, rather than a view
 * per block, which costs the JS thread a call into the addon's checks each.
 */
export function crc32cOfChunks(views: readonly Uint8Array[], blockSize: number): Promise<Uint32Array> {
  if (views.length === 0) return Promise.resolve(new Uint32Array(0));
  return new Promise((resolve) => native.crc32cBatch(views, resolve, blockSize));
}
