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
 * Version 2: a delta's redirected blocks went to the physical area, not the
 * log, before the same flush as its records; their checksums are in the
 * descriptor. They are read back and checked only for the last delta of the
 * walk: a delta followed by another whose records are whole was durable
 * (the writer issues a delta's writes only once the one before it is), so
 * a delta is visited (written home) only once the next one's records check
 * or its own redirected blocks do. A last delta whose redirected blocks did
 * not all reach the disk is torn like any other: ignored, never acknowledged.
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
import { homeReads, homeRequests, type JournalBlock } from './home-area';
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
import { homeBlocks, readSuperblock, writeSuperblock, VERSION_2, type Superblock, type SuperblockCopy } from './superblock';

export interface ReplayedDelta {
  readonly delta: number;
  /** Log position of its descriptor. */
  readonly position: number;
  /** Home blocks of its logged images, ascending. */
  readonly homes: readonly number[];
  /** Home blocks it wrote in place of the log (version 2: redirected), ascending. */
  readonly redirected: readonly number[];
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
      if (blocks.length > 0) await io.run(homeRequests(sb.dataStart, sb.blockSize, blocks));
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
  // The delta read last, not visited yet: it is durable once the next one's records check (see the header).
  let pending: { read: DeltaRead; position: number; before: number } | undefined;
  const probe = allocBlocks(B, 1);
  try {
    for (;;) {
      const step = await readDelta(io, sb, ring, probe, position, last);
      if (step.fault !== undefined) {
        let fault = step.fault;
        if (pending !== undefined) {
          const torn = await redirectedFault(io, sb, pending.read.descriptor, pending.position);
          if (torn === undefined) {
            await visit(pending.read.descriptor, pending.read.blocks, pending.read.slab);
          } else {
            pending.read.slab.release();
            deltas.pop();
            fault = torn;
            position = pending.position;
            last = pending.before;
          }
        }
        return { superblock: sb, copies, deltas, stop: { ...fault, position }, endPosition: position, lastDelta: last };
      }
      if (pending !== undefined) await visit(pending.read.descriptor, pending.read.blocks, pending.read.slab);
      const { descriptor } = step.read;
      deltas.push({
        delta: descriptor.delta,
        position,
        homes: descriptor.homes.slice(0, descriptor.count),
        redirected: descriptor.homes.slice(descriptor.count),
      });
      pending = { read: step.read, position, before: last };
      position += logBlocksFor(descriptor.count, B, descriptor.redirected);
      last = descriptor.delta;
    }
  } catch (error) {
    pending?.read.slab.release();
    throw error;
  } finally {
    probe.release();
  }
}

interface DeltaRead {
  readonly descriptor: Descriptor;
  readonly blocks: JournalBlock[];
  /** Holds the images; the visit releases it (or keeps it, in memory). */
  readonly slab: Slab;
}

/** Blocks read at once when a delta's redirected blocks are checked. */
const CHECK_CHUNK_BLOCKS = 256;

/** Reads a delta's redirected blocks back and checks each against the descriptor: a fault if one did not reach the disk. */
async function redirectedFault(io: BlockIo, sb: Superblock, descriptor: Descriptor, position: number): Promise<RecordFault | undefined> {
  if (descriptor.redirected === 0) return undefined;
  const B = sb.blockSize;
  const chunk = allocBlocks(B, Math.min(CHECK_CHUNK_BLOCKS, descriptor.redirected));
  try {
    for (let from = descriptor.count; from < descriptor.homes.length; from += CHECK_CHUNK_BLOCKS) {
      const to = Math.min(from + CHECK_CHUNK_BLOCKS, descriptor.homes.length);
      const blocks: JournalBlock[] = [];
      for (let i = from; i < to; i++) blocks.push({ home: descriptor.homes[i], image: chunk.page(i - from) });
      await io.run(homeReads(sb.dataStart, B, blocks));
      for (let i = from; i < to; i++) {
        if (crc32c(chunk.page(i - from)) !== descriptor.checksums[i]) {
          return {
            kind: 'torn',
            reason: `redirected block ${i - descriptor.count} (home block ${descriptor.homes[i]}) of delta ${descriptor.delta} at log position ${position} fails its checksum: it did not reach the disk`,
          };
        }
      }
    }
    return undefined;
  } finally {
    chunk.release();
  }
}

type Step = { fault: RecordFault; read?: undefined } | { fault?: undefined; read: DeltaRead };

/** Reads and checks the delta at `position` (its records, not its redirected blocks), or says why there is none. */
async function readDelta(io: BlockIo, sb: Superblock, ring: LogRing, probe: Slab, position: number, after: number): Promise<Step> {
  const B = sb.blockSize;
  // Live records never span more than one lap from the checkpoint.
  const remaining = sb.logBlocks - (position - sb.replayPosition);
  if (remaining < logBlocksFor(0, B)) return { fault: { kind: 'end', reason: `the log is full up to position ${position}` } };
  const expected = { volumeId: sb.volumeId, position, after, redirects: sb.version === VERSION_2 };
  const first = probe.page(0);
  await io.run(ring.requests('read', position, [first]));
  const header = decodeDescriptorHeader(first, B, maxDeltaBlocks(remaining, B), expected);
  if (!header.ok) return { fault: header };
  const { count, blocks: d, delta, redirected } = header.value;
  const total = logBlocksFor(count, B, redirected);
  if (total > remaining) return { fault: { kind: 'torn', reason: `delta ${delta} at log position ${position} would take ${total} log blocks, more than the ${remaining} left` } };
  const slab = allocBlocks(B, total);
  let kept = false;
  try {
    const whole = Buffer.from(slab.memory, 0, total * B);
    await io.run(ring.requests('read', position, [whole]));
    const decoded = decodeDescriptor(whole.subarray(0, d * B), header.value, expected);
    if (!decoded.ok) return { fault: decoded };
    const descriptor = decoded.value;
    const home = homeBlocks(sb);
    // Redirected blocks live in the physical area, after the map summary and the map.
    const physicalStart = sb.summaryBlocks + sb.mapBlocks;
    for (let i = 0; i < descriptor.homes.length; i++) {
      const h = descriptor.homes[i];
      const ordered = i === 0 || i === count || h > descriptor.homes[i - 1];
      if (h >= home || !ordered || (i >= count && h < physicalStart)) {
        return { fault: { kind: 'torn', reason: `delta ${delta} at log position ${position} names home block ${h}, outside its area or out of order` } };
      }
    }
    const blocks: JournalBlock[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const image = whole.subarray((d + i) * B, (d + i + 1) * B);
      const crc = crc32c(image);
      if (crc !== descriptor.checksums[i]) {
        return { fault: { kind: 'torn', reason: `image ${i} (home block ${descriptor.homes[i]}) of delta ${delta} at log position ${position + d + i} fails its checksum` } };
      }
      blocks[i] = { home: descriptor.homes[i], image };
    }
    const commit = checkCommit(whole.subarray((total - 1) * B), descriptor, B);
    if (!commit.ok) return { fault: commit };
    kept = true;
    return { read: { descriptor, blocks, slab } };
  } finally {
    if (!kept) slab.release();
  }
}
