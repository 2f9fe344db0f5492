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
 * The CRC32C of each block, on libuv's thread pool, off the JS thread: what
 * the journal writes a delta with. The blocks' memory is held until the
 * checksums are taken; they must not change meanwhile.
 */
export function crc32cOfBlocks(blocks: readonly Uint8Array[]): Promise<Uint32Array> {
  if (blocks.length === 0) return Promise.resolve(new Uint32Array(0));
  return new Promise((resolve) => native.crc32cBatch(blocks, resolve));
}
