/**
 * The two records a delta leaves in the log, around its block images:
 *
 *   position p:          descriptor   (d blocks: header + one entry per image)
 *   p + d .. p + d+n-1:  images       (n blocks, in the descriptor's order)
 *   p + d + n:           commit record (1 block)
 *
 * Positions are absolute (blocks since format, never reset); a record lies
 * in ring block logStart + position % logBlocks and carries its own position
 * and the volume id, so that a record left by an earlier lap of the ring, or
 * by an earlier format of the device, never passes for the one expected.
 *
 * Descriptor header (little-endian):
 *   off size field
 *     0    8 magic      "bfdelta\0"
 *     8    8 volumeId
 *    16    8 position   of this descriptor's first block
 *    24    8 delta
 *    32    4 count      images that follow (n)
 *    36    4 blocks     descriptor blocks (d)
 *    40    4 redirected r: version 2, entries of blocks written in place of
 *                       the log (redirected, no image here); version 1: 0
 *    44    4 crc32c     of bytes 0..43 then of the n + r entries
 *    48 12·(n+r) entries: home u64 (home-area block), crc32c u32 of the block;
 *                       the n logged images first, then the r redirected blocks
 *
 * Commit record:
 *   off size field
 *     0    8 magic          "bfcommit"
 *     8    8 volumeId
 *    16    8 position       of the delta's descriptor
 *    24    8 delta
 *    32    4 count
 *    36    4 descriptorCrc  the descriptor's crc32c (which covers every image's)
 *    40    4 totalBlocks    d + n + 1 (log blocks; d counts the r entries too)
 *    44    4 crc32c         of bytes 0..43
 *
 * The rest of every record block is zero. Each header and its checksum lie
 * within the first 48 bytes, so inside the first sector of the block.
 */
import { crc32c } from './crc32c';

export const DESCRIPTOR_MAGIC = Buffer.from('bfdelta\0', 'latin1');
export const COMMIT_MAGIC = Buffer.from('bfcommit', 'latin1');
export const DESCRIPTOR_HEADER_BYTES = 48;
export const DESCRIPTOR_ENTRY_BYTES = 12;
export const COMMIT_BYTES = 48;
/** Redirected entries one descriptor may hold (a bound on what a damaged header can make replay allocate). */
export const MAX_REDIRECTED = 1 << 24;

export interface DescriptorHeader {
  readonly volumeId: bigint;
  readonly position: number;
  readonly delta: number;
  readonly count: number;
  readonly blocks: number;
  /** Entries of redirected blocks after the images' (version 2; 0 in version 1). */
  readonly redirected: number;
}

export interface Descriptor extends DescriptorHeader {
  /** count + redirected entries: the logged images' homes, then the redirected blocks'. */
  readonly homes: readonly number[];
  readonly checksums: readonly number[];
  /** The descriptor's own crc32c, which the commit record repeats. */
  readonly crc: number;
}

export interface CommitRecord {
  readonly volumeId: bigint;
  readonly position: number;
  readonly delta: number;
  readonly count: number;
  readonly descriptorCrc: number;
  readonly totalBlocks: number;
}

/**
 * Why a record was not accepted. `end`: no record of this lap is there (a
 * clean end of the log). `torn`: a record of this lap is incomplete or
 * damaged (a crash during its write, or rot).
 */
export interface RecordFault {
  readonly kind: 'end' | 'torn';
  readonly reason: string;
}

export type Decoded<T> = { readonly ok: true; readonly value: T } | ({ readonly ok: false } & RecordFault);

/** What the reader expects at a position: anything else is refused. */
export interface Expected {
  readonly volumeId: bigint;
  readonly position: number;
  /** The delta must be greater than this one. */
  readonly after: number;
  /** Version 2: descriptors may list redirected blocks (default false). */
  readonly redirects?: boolean;
}

export function descriptorBlocks(count: number, blockSize: number, redirected = 0): number {
  return Math.ceil((DESCRIPTOR_HEADER_BYTES + (count + redirected) * DESCRIPTOR_ENTRY_BYTES) / blockSize);
}

/** Log blocks one delta of `count` images (and `redirected` blocks written elsewhere) takes: descriptor, images, commit. */
export function logBlocksFor(count: number, blockSize: number, redirected = 0): number {
  return descriptorBlocks(count, blockSize, redirected) + count + 1;
}

/** The most images one delta can have in a log of `logBlocks`. */
export function maxDeltaBlocks(logBlocks: number, blockSize: number): number {
  let count = Math.max(0, logBlocks - 2);
  while (count > 0 && logBlocksFor(count, blockSize) > logBlocks) count--;
  return count;
}

/**
 * Encodes the descriptor into `target` (descriptorBlocks(count, redirected)
 * blocks of contiguous memory) and returns its crc32c. `homes` and
 * `checksums` list the images, then the `redirected` blocks.
 */
export function encodeDescriptor(
  header: Omit<DescriptorHeader, 'count' | 'blocks' | 'redirected'>,
  homes: readonly number[],
  checksums: ArrayLike<number>,
  blockSize: number,
  target: Uint8Array,
  redirected = 0,
): number {
  const entries = homes.length;
  const count = entries - redirected;
  const length = DESCRIPTOR_HEADER_BYTES + entries * DESCRIPTOR_ENTRY_BYTES;
  const blocks = descriptorBlocks(count, blockSize, redirected);
  if (target.byteLength !== blocks * blockSize) throw new RangeError(`a descriptor of ${entries} entries takes ${blocks * blockSize} bytes, got ${target.byteLength}`);
  target.fill(0);
  const view = new DataView(target.buffer, target.byteOffset, target.byteLength);
  target.set(DESCRIPTOR_MAGIC, 0);
  view.setBigUint64(8, header.volumeId, true);
  view.setBigUint64(16, BigInt(header.position), true);
  view.setBigUint64(24, BigInt(header.delta), true);
  view.setUint32(32, count, true);
  view.setUint32(36, blocks, true);
  view.setUint32(40, redirected, true);
  for (let i = 0; i < entries; i++) {
    const at = DESCRIPTOR_HEADER_BYTES + i * DESCRIPTOR_ENTRY_BYTES;
    // Two 32-bit halves of the little-endian u64 (a home is a safe integer): no BigInt per entry.
    view.setUint32(at, homes[i] % 0x1_0000_0000, true);
    view.setUint32(at + 4, Math.floor(homes[i] / 0x1_0000_0000), true);
    view.setUint32(at + 8, checksums[i], true);
  }
  const crc = descriptorCrc(target, length);
  view.setUint32(44, crc, true);
  return crc;
}

function descriptorCrc(bytes: Uint8Array, length: number): number {
  return crc32c(bytes.subarray(DESCRIPTOR_HEADER_BYTES, length), crc32c(bytes.subarray(0, 44)));
}

/**
 * Reads the header from the descriptor's first block, enough to know how
 * many blocks the descriptor spans. The checksum is checked by
 * decodeDescriptor once all of them are read.
 */
export function decodeDescriptorHeader(first: Uint8Array, blockSize: number, maxCount: number, expected: Expected): Decoded<DescriptorHeader> {
  const at = `log position ${expected.position}`;
  if (!DESCRIPTOR_MAGIC.equals(first.subarray(0, 8))) return { ok: false, kind: 'end', reason: `no delta descriptor at ${at}` };
  const view = new DataView(first.buffer, first.byteOffset, DESCRIPTOR_HEADER_BYTES);
  const volumeId = view.getBigUint64(8, true);
  const position = Number(view.getBigUint64(16, true));
  const delta = Number(view.getBigUint64(24, true));
  const count = view.getUint32(32, true);
  const blocks = view.getUint32(36, true);
  // Version 1 has flags here, 0; decodeDescriptor refuses anything else once the checksum holds.
  const redirected = expected.redirects === true ? view.getUint32(40, true) : 0;
  if (count > maxCount || redirected > MAX_REDIRECTED || blocks !== descriptorBlocks(count, blockSize, redirected)) {
    const what = redirected > 0 ? `${count} images and ${redirected} redirected blocks` : `${count} images`;
    return { ok: false, kind: 'torn', reason: `descriptor at ${at} is damaged: ${what} in ${blocks} blocks cannot be` };
  }
  if (volumeId !== expected.volumeId) {
    return { ok: false, kind: 'end', reason: `descriptor at ${at} is from another format of this device (volume id ${volumeId.toString(16)})` };
  }
  if (position !== expected.position) {
    return { ok: false, kind: 'end', reason: `descriptor at ${at} is a stale one from position ${position} (an earlier lap of the ring)` };
  }
  return { ok: true, value: { volumeId, position, delta, count, blocks, redirected } };
}

/** Decodes the whole descriptor (all its blocks, contiguous) and checks its checksum and delta number. */
export function decodeDescriptor(bytes: Uint8Array, header: DescriptorHeader, expected: Expected): Decoded<Descriptor> {
  const entries = header.count + header.redirected;
  const length = DESCRIPTOR_HEADER_BYTES + entries * DESCRIPTOR_ENTRY_BYTES;
  const view = new DataView(bytes.buffer, bytes.byteOffset, length);
  const stored = view.getUint32(44, true);
  const computed = descriptorCrc(bytes, length);
  if (stored !== computed) {
    return { ok: false, kind: 'torn', reason: `descriptor at log position ${header.position} fails its checksum (torn or damaged)` };
  }
  if (expected.redirects !== true && view.getUint32(40, true) !== 0) {
    return { ok: false, kind: 'torn', reason: `descriptor at log position ${header.position} has unknown flags` };
  }
  if (header.delta <= expected.after) {
    return { ok: false, kind: 'torn', reason: `descriptor at log position ${header.position} is for delta ${header.delta}, not after delta ${expected.after}` };
  }
  const homes: number[] = new Array(entries);
  const checksums: number[] = new Array(entries);
  for (let i = 0; i < entries; i++) {
    const at = DESCRIPTOR_HEADER_BYTES + i * DESCRIPTOR_ENTRY_BYTES;
    homes[i] = Number(view.getBigUint64(at, true));
    checksums[i] = view.getUint32(at + 8, true);
  }
  return { ok: true, value: { ...header, homes, checksums, crc: computed } };
}

export function encodeCommit(record: CommitRecord, target: Uint8Array): void {
  target.fill(0);
  const view = new DataView(target.buffer, target.byteOffset, COMMIT_BYTES);
  target.set(COMMIT_MAGIC, 0);
  view.setBigUint64(8, record.volumeId, true);
  view.setBigUint64(16, BigInt(record.position), true);
  view.setBigUint64(24, BigInt(record.delta), true);
  view.setUint32(32, record.count, true);
  view.setUint32(36, record.descriptorCrc, true);
  view.setUint32(40, record.totalBlocks, true);
  view.setUint32(44, crc32c(target.subarray(0, 44)), true);
}

/** Checks that `bytes` is the commit record of exactly this descriptor. */
export function checkCommit(bytes: Uint8Array, descriptor: Descriptor, blockSize: number): Decoded<CommitRecord> {
  const at = `commit record of delta ${descriptor.delta} (log position ${descriptor.position + descriptor.blocks + descriptor.count})`;
  if (!COMMIT_MAGIC.equals(bytes.subarray(0, 8))) return { ok: false, kind: 'torn', reason: `${at} is missing` };
  const view = new DataView(bytes.buffer, bytes.byteOffset, COMMIT_BYTES);
  if (view.getUint32(44, true) !== crc32c(bytes.subarray(0, 44))) return { ok: false, kind: 'torn', reason: `${at} fails its checksum` };
  const record: CommitRecord = {
    volumeId: view.getBigUint64(8, true),
    position: Number(view.getBigUint64(16, true)),
    delta: Number(view.getBigUint64(24, true)),
    count: view.getUint32(32, true),
    descriptorCrc: view.getUint32(36, true),
    totalBlocks: view.getUint32(40, true),
  };
  if (
    record.volumeId !== descriptor.volumeId ||
    record.position !== descriptor.position ||
    record.delta !== descriptor.delta ||
    record.count !== descriptor.count ||
    record.descriptorCrc !== descriptor.crc ||
    record.totalBlocks !== logBlocksFor(descriptor.count, blockSize, descriptor.redirected)
  ) {
    return { ok: false, kind: 'torn', reason: `${at} belongs to another delta (delta ${record.delta} at position ${record.position})` };
  }
  return { ok: true, value: record };
}
