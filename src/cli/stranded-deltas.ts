import type { BlockIo } from '../io/request';
import type { Slab } from '../io/slab';
import { allocBlocks } from '../journal/block-memory';
import { LogRing } from '../journal/log-ring';
import { DESCRIPTOR_MAGIC, decodeDescriptor, decodeDescriptorHeader, maxDeltaBlocks } from '../journal/log-record';
import { VERSION_2, type Superblock } from '../journal/superblock';

/**
 * Deltas logged *after* the point where the replay walk stopped.
 *
 * The writer starts a delta's log writes only once the previous delta's
 * flush has returned, so a crash can tear only the last delta in the log:
 * nothing of this lap lies beyond it. A valid descriptor of this volume,
 * stamped with the position it lies at, beyond the stop therefore means the
 * record at the stop had been flushed (and its commit acknowledged) and was
 * damaged afterwards. Replay, which ends at the first bad record, would drop
 * that delta and these silently: `blockfork check` reports them instead.
 */
export interface StrandedDelta {
  readonly delta: number;
  /** Log position of its descriptor. */
  readonly position: number;
  readonly blocks: number;
}

/** Blocks read per request while scanning. */
const SCAN_CHUNK_BLOCKS = 256;

/** Scans log positions after `stop` up to the end of the lap that starts at the checkpoint; reads only. */
export async function strandedDeltas(io: BlockIo, sb: Superblock, stop: number): Promise<StrandedDelta[]> {
  const B = sb.blockSize;
  const ring = new LogRing(sb.logStart, sb.logBlocks, B);
  // Live records never reach past one lap from the checkpoint (head − tail ≤ logBlocks).
  const end = sb.replayPosition + sb.logBlocks;
  const found: StrandedDelta[] = [];
  const chunk = allocBlocks(B, SCAN_CHUNK_BLOCKS);
  try {
    for (let start = stop + 1; start < end; start += SCAN_CHUNK_BLOCKS) {
      const count = Math.min(SCAN_CHUNK_BLOCKS, end - start);
      await io.run(ring.requests('read', start, [Buffer.from(chunk.memory, 0, count * B)]));
      for (let i = 0; i < count; i++) {
        const block = chunk.page(i);
        if (!DESCRIPTOR_MAGIC.equals(block.subarray(0, DESCRIPTOR_MAGIC.length))) continue;
        const delta = await validDescriptorAt(io, sb, ring, start + i, end, block);
        if (delta !== undefined) found.push(delta);
      }
    }
  } finally {
    chunk.release();
  }
  return found;
}

async function validDescriptorAt(io: BlockIo, sb: Superblock, ring: LogRing, position: number, end: number, first: Buffer): Promise<StrandedDelta | undefined> {
  const B = sb.blockSize;
  // after: -1 accepts any delta number: what matters is that this lap's writer put a whole descriptor here.
  const expected = { volumeId: sb.volumeId, position, after: -1, redirects: sb.version === VERSION_2 };
  const header = decodeDescriptorHeader(first, B, maxDeltaBlocks(end - position, B), expected);
  if (!header.ok) return undefined;
  let slab: Slab | undefined;
  try {
    let bytes: Uint8Array = first;
    if (header.value.blocks > 1) {
      slab = allocBlocks(B, header.value.blocks);
      const whole = Buffer.from(slab.memory, 0, header.value.blocks * B);
      await io.run(ring.requests('read', position, [whole]));
      bytes = whole;
    }
    const descriptor = decodeDescriptor(bytes, header.value, expected);
    return descriptor.ok ? { delta: descriptor.value.delta, position, blocks: descriptor.value.count } : undefined;
  } finally {
    slab?.release();
  }
}
