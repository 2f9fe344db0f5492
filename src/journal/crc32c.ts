import { crc32c as nativeCrc32c } from '@node-rs/crc32';

/**
 * CRC32C (Castagnoli, reflected, as iSCSI and ext4 use it) of `data`,
 * continuing from `previous` so that a checksum can span separate ranges:
 * crc32c(b, crc32c(a)) === crc32c(a ‖ b).
 *
 * Why @node-rs/crc32: it ships prebuilt binaries (no compiler at install)
 * and uses the SSE4.2/ARMv8 CRC instructions: about 1 µs per 4 KiB block
 * here, against 2.7 µs for a slicing-by-8 table in JS and 10 µs for a
 * byte-at-a-time table (measurements in docs/FORMAT.md).
 */
export function crc32c(data: Uint8Array, previous = 0): number {
  return nativeCrc32c(data, previous) >>> 0;
}
