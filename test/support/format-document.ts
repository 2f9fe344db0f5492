import assert from 'node:assert/strict';

/**
 * What the format-document tests read bytes with, written from docs/FORMAT.md
 * itself rather than taken from the code's constants, so that the code is
 * checked against the document and not against itself.
 */

// FORMAT.md, "Checksum": CRC32C, reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF.
const TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  return c >>> 0;
});

export function crc32c(...parts: Uint8Array[]): number {
  let c = 0xffffffff;
  for (const part of parts) for (const byte of part) c = TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** u64 little-endian, as a number (FORMAT.md: values above 2^53 are refused). */
export function u64(bytes: Buffer, at: number): number {
  const value = bytes.readBigUInt64LE(at);
  assert.ok(value <= BigInt(Number.MAX_SAFE_INTEGER), `u64 at ${at} is below 2^53`);
  return Number(value);
}
