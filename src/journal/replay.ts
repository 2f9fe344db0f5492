/**
 * Replay: walk the log from the checkpoint and redo every committed delta.
 *
 * A delta is replayed only if its descriptor is of this volume and this lap
 * (volume id and position match), its checksum holds, every image matches
 * its checksum, and its commit record names exactly that descriptor. The
 * first delta that fails any of these ends the walk: it and everything
 * after it are ignored, because the writer never starts a delta's log
 * writes before the previous delta is durable, so nothing after a torn
 * delta can have been acknowledged.
 *
 * Replay writes only home blocks and, at the end, the superblock; it never
 * writes the log. So a crash during replay leaves the log as it was, and the
 * next replay starts from the same checkpoint and writes the same images
 * (idempotent). The superblock moves only after the home writes are flushed.
 *
 * Three modes, one walk:
 *   replayJournal   writes home, flushes, checkpoints (a writable open)
 *   inspectJournal  writes nothing, reports what replay would do (`blockfork check`)
 *   replayInMemory  writes nothing, returns home → newest image (a read-only
 *                   open: the volume reads through this map before the device;
 *                   it holds at most one log's worth of blocks)
 */
import { BlockforkError } from '../io/errors';
import type { BlockIo } from '../io/request';
import type { Slab } from '../io/slab';
import { allocBlocks } from './block-memory';
import { crc32c } from './crc32c';
import { homeRequests, type JournalBlock } from './home-area';
import { LogRing } from './log-ring';
import {
  checkCommit,
  decodeDescriptor,
  decodeDescriptorHeader,
  logBlocksFor,
  maxDeltaBlocks,
  type Descriptor,
  type RecordFault,
} from './log-record';
import { readSuperblock, writeSuperblock, type Superblock, type SuperblockCopy } from './superblock';

export interface ReplayedDelta {
  readonly delta: number;
  /** Log position of its descriptor. */
  readonly position: number;
  /** Home blocks, ascending. */
  readonly homes: readonly number[];
}

export interface JournalReport {
  /** The superblock in force when the walk began. */
  readonly superblock: Superblock;
  readonly copies: readonly SuperblockCopy[];
  /** The committed deltas after the checkpoint, in order. */
  readonly deltas: readonly ReplayedDelta[];
  /** Why the walk ended, at which log position. */
  readonly stop: RecordFault & { readonly position: number };
  /** Log position after the last committed delta: where the next one goes. */
  readonly endPosition: number;
  /** The last committed delta (the checkpoint's if none follow it). */
  readonly lastDelta: number;
}

export interface ReplayResult {
  readonly report: JournalReport;
  /** The superblock in force after replay (a new checkpoint if anything was replayed). */
  readonly superblock: Superblock;
}

export interface InMemoryReplay {
  readonly report: JournalReport;
  /** Home block → its image after the last committed delta, for blocks the log holds. */
  readonly blocks: ReadonlyMap<number, Uint8Array>;
}

/** Replays onto the device: home writes, flush, new checkpoint, flush. */
export async function replayJournal(io: BlockIo): Promise<ReplayResult> {
  if (io.geometry.readOnly) {
    throw new BlockforkError('ERR_READ_ONLY', `'${io.path}' is open read-only: replay it in memory, or open it writable`);
  }
  const found = await readSuperblock(io);
  const sb = found.superblock;
  const report = await walkLog(io, found.superblock, found.copies, async (_descriptor, blocks, slab) => {
    try {
      await io.run(homeRequests(sb.dataStart, sb.blockSize, blocks));
    } finally {
      slab.release();
    }
  });
  if (report.deltas.length === 0) return { report, superblock: sb };
  await io.flush();
  const next: Superblock = { ...sb, sequence: sb.sequence + 1, checkpointDelta: report.lastDelta, replayPosition: report.endPosition };
  await writeSuperblock(io, next);
  await io.flush();
  return { report, superblock: next };
}

/** Reports what replay would do; writes nothing. */
export async function inspectJournal(io: BlockIo): Promise<JournalReport> {
  const found = await readSuperblock(io);
  return walkLog(io, found.superblock, found.copies, async (_descriptor, _blocks, slab) => slab.release());
}

/** Replays into memory; writes nothing. */
export async function replayInMemory(io: BlockIo): Promise<InMemoryReplay> {
  const found = await readSuperblock(io);
  const blocks = new Map<number, Uint8Array>();
  // Each delta's slab stays alive (it is freed by GC) while the map holds any of its images.
  const report = await walkLog(io, found.superblock, found.copies, async (_descriptor, images) => {
    for (const b of images) blocks.set(b.home, b.image);
  });
  return { report, blocks };
}

type Visit = (descriptor: Descriptor, blocks: JournalBlock[], slab: Slab) => Promise<void>;

async function walkLog(io: BlockIo, sb: Superblock, copies: readonly SuperblockCopy[], visit: Visit): Promise<JournalReport> {
  const B = sb.blockSize;
  const ring = new LogRing(sb.logStart, sb.logBlocks, B);
  const deltas: ReplayedDelta[] = [];
  let position = sb.replayPosition;
  let last = sb.checkpointDelta;
  const probe = allocBlocks(B, 1);
  try {
    for (;;) {
      const stop = await readDelta(io, sb, ring, probe, position, last, visit);
      if (stop.fault !== undefined) {
        return { superblock: sb, copies, deltas, stop: { ...stop.fault, position }, endPosition: position, lastDelta: last };
      }
      const { descriptor } = stop;
      deltas.push({ delta: descriptor.delta, position, homes: descriptor.homes });
      position += logBlocksFor(descriptor.count, B);
      last = descriptor.delta;
    }
  } finally {
    probe.release();
  }
}

type Step = { fault: RecordFault; descriptor?: undefined } | { fault?: undefined; descriptor: Descriptor };

/** Reads, checks and visits the delta at `position`, or says why there is none. */
async function readDelta(io: BlockIo, sb: Superblock, ring: LogRing, probe: Slab, position: number, after: number, visit: Visit): Promise<Step> {
  const B = sb.blockSize;
  // Live records never span more than one lap from the checkpoint.
  const remaining = sb.logBlocks - (position - sb.replayPosition);
  if (remaining < logBlocksFor(0, B)) return { fault: { kind: 'end', reason: `the log is full up to position ${position}` } };
  const expected = { volumeId: sb.volumeId, position, after };
  const first = probe.page(0);
  await io.run(ring.requests('read', position, [first]));
  const header = decodeDescriptorHeader(first, B, maxDeltaBlocks(remaining, B), expected);
  if (!header.ok) return { fault: header };
  const { count, blocks: d, delta } = header.value;
  const total = logBlocksFor(count, B);
  const slab = allocBlocks(B, total);
  let visited = false;
  try {
    const whole = Buffer.from(slab.memory, 0, total * B);
    await io.run(ring.requests('read', position, [whole]));
    const decoded = decodeDescriptor(whole.subarray(0, d * B), header.value, expected);
    if (!decoded.ok) return { fault: decoded };
    const descriptor = decoded.value;
    const blocks: JournalBlock[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const home = descriptor.homes[i];
      if (home >= sb.blockCount || (i > 0 && home <= descriptor.homes[i - 1])) {
        return { fault: { kind: 'torn', reason: `delta ${delta} at log position ${position} names home block ${home}, outside the data area or out of order` } };
      }
      const image = whole.subarray((d + i) * B, (d + i + 1) * B);
      const crc = crc32c(image);
      if (crc !== descriptor.checksums[i]) {
        return { fault: { kind: 'torn', reason: `image ${i} (home block ${home}) of delta ${delta} at log position ${position + d + i} fails its checksum` } };
      }
      blocks[i] = { home, image };
    }
    const commit = checkCommit(whole.subarray((total - 1) * B), descriptor, B);
    if (!commit.ok) return { fault: commit };
    visited = true;
    await visit(descriptor, blocks, slab);
    return { descriptor };
  } finally {
    if (!visited) slab.release();
  }
}
