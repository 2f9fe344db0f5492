/**
 * The blocks of a version 2 volume's block map (docs/FORMAT.md), as bytes:
 *
 *   map block k      covers volume blocks k·E .. k·E + E − 1, E = (blockSize − 16) / 4
 *   summary block j  one bit per map block: bit b of byte 16 + i is map block
 *                    (j·(blockSize − 16) + i)·8 + b, set once that map block
 *                    holds an entry that is not identity
 *
 * Both start with the same 16-byte header (little-endian):
 *
 *   off size field
 *     0    4 magic      "bfmp" (map) or "bfsm" (summary)
 *     4    4 crc32c     of bytes 8 .. blockSize − 1
 *     8    8 volumeId   the superblock's
 *
 * A map entry is a u32: 0 is identity (volume block i lives at physical
 * block i), anything else is the physical block plus one. A map block
 * without this volume's magic and id was never written: every entry in it
 * is identity, so a new volume needs no map written and a sparse file stays
 * sparse. Format writes every summary block (a few per TiB), so that a
 * summary block without them is damage, not "nothing redirected".
 */
import { crc32c } from './crc32c';

export const MAP_MAGIC = 0x706d6662; // "bfmp" read as a little-endian u32
export const SUMMARY_MAGIC = 0x6d736662; // "bfsm"
export const MAP_HEADER_BYTES = 16;
/** An entry names physical + 1 in 32 bits, and 0 means identity. */
export const MAX_PHYSICAL_BLOCKS = 0xffff_fffe;
export const IDENTITY = 0;

export function entriesPerMapBlock(blockSize: number): number {
  return (blockSize - MAP_HEADER_BYTES) / 4;
}

export function mapBlocksFor(volumeBlocks: number, blockSize: number): number {
  return Math.ceil(volumeBlocks / entriesPerMapBlock(blockSize));
}

export function bitsPerSummaryBlock(blockSize: number): number {
  return (blockSize - MAP_HEADER_BYTES) * 8;
}

export function summaryBlocksFor(mapBlocks: number, blockSize: number): number {
  return Math.ceil(mapBlocks / bitsPerSummaryBlock(blockSize));
}

/** Whether `block` carries this volume's header with `magic` (it was written by this volume). */
export function isWritten(block: Uint8Array, magic: number, volumeId: bigint): boolean {
  const view = new DataView(block.buffer, block.byteOffset, MAP_HEADER_BYTES);
  return view.getUint32(0, true) === magic && view.getBigUint64(8, true) === volumeId;
}

/** Makes `block` an empty block of this volume (every entry identity, every bit clear). */
export function initBlock(block: Uint8Array, magic: number, volumeId: bigint): void {
  block.fill(0);
  const view = new DataView(block.buffer, block.byteOffset, MAP_HEADER_BYTES);
  view.setUint32(0, magic, true);
  view.setBigUint64(8, volumeId, true);
}

/** Stores the checksum of a block whose entries are final (just before it is written). */
export function sealBlock(block: Uint8Array): void {
  new DataView(block.buffer, block.byteOffset, 8).setUint32(4, crc32c(block.subarray(8)), true);
}

/** Why a block that carries this volume's header is damaged, or undefined. */
export function blockProblem(block: Uint8Array): string | undefined {
  const stored = new DataView(block.buffer, block.byteOffset, 8).getUint32(4, true);
  const computed = crc32c(block.subarray(8));
  return stored === computed ? undefined : `checksum mismatch (stored crc32c 0x${stored.toString(16)}, computed 0x${computed.toString(16)})`;
}

export function getEntry(block: Uint8Array, index: number): number {
  const at = MAP_HEADER_BYTES + index * 4;
  return (block[at] | (block[at + 1] << 8) | (block[at + 2] << 16)) + block[at + 3] * 0x1000000;
}

export function setEntry(block: Uint8Array, index: number, value: number): void {
  const at = MAP_HEADER_BYTES + index * 4;
  block[at] = value & 0xff;
  block[at + 1] = (value >>> 8) & 0xff;
  block[at + 2] = (value >>> 16) & 0xff;
  block[at + 3] = (value >>> 24) & 0xff;
}

export function getBit(block: Uint8Array, index: number): boolean {
  return (block[MAP_HEADER_BYTES + (index >>> 3)] & (1 << (index & 7))) !== 0;
}

export function setBit(block: Uint8Array, index: number): void {
  block[MAP_HEADER_BYTES + (index >>> 3)] |= 1 << (index & 7);
}
