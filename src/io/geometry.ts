/**
 * What a device is and what alignment O_DIRECT asks of it.
 *
 * `logicalSectorSize` is the unit every offset and length must be a multiple
 * of; `memoryAlignment` is what every buffer address must be a multiple of.
 * With `direct: false` both still hold (the cache keeps them so that switching
 * modes never changes the layout), but the kernel would not refuse a miss.
 */
export interface Geometry {
  /** Bytes addressable on the device (BLKGETSIZE64, or st_size of a file). */
  readonly size: number;
  /** BLKSSZGET; on a file, STATX_DIOALIGN's offset alignment or the fs block size. */
  readonly logicalSectorSize: number;
  /** BLKPBSZGET; 0 from the kernel falls back to the logical size. */
  readonly physicalSectorSize: number;
  /** Required alignment of buffer addresses for O_DIRECT. */
  readonly memoryAlignment: number;
  readonly isBlockDevice: boolean;
  /** Opened with O_DIRECT. */
  readonly direct: boolean;
  readonly readOnly: boolean;
}
