import { randomBytes } from 'node:crypto';
import { describe } from '../io/describe';
import { BlockforkError } from '../io/errors';
import type { BlockIo } from '../io/request';
import { allocBlocks } from './block-memory';
import { homeRequests } from './home-area';
import { initBlock, MAX_PHYSICAL_BLOCKS, mapBlocksFor, sealBlock, SUMMARY_MAGIC, summaryBlocksFor } from './map-block';
import {
  FORMAT_VERSION,
  LOG_START,
  VERSION_1,
  VERSION_2,
  MAX_BLOCK_SIZE,
  MIN_BLOCK_SIZE,
  readSuperblock,
  writeSuperblock,
  type Superblock,
} from './superblock';

export interface FormatOptions {
  /** A power of two from 512 to 65536, and a multiple of the device's sector size. */
  blockSize: number;
  /** Blocks in the log ring; default: an eighth of the device, at most 64 MiB, at least MIN_LOG_BLOCKS. */
  logBlocks?: number;
  /** 2 (the default): redirect-on-write with a block map; 1: every block through the log. */
  version?: 1 | 2;
  /** Version 2: physical blocks beyond the volume's, for new copies whose old ones are not free yet (default: as many as the log has). */
  reserveBlocks?: number;
  /**
   * Formatting is never silent: a device that already holds a valid
   * blockfork superblock is refused (ERR_VOLUME_EXISTS) unless this is true.
   * Whether to format a device that holds something else is the caller's
   * decision, made before calling (`open` with `format: true`, or
   * `blockfork format`).
   */
  overwrite?: boolean;
}

/** Small enough for tests of the ring's wrap-around, large enough for a delta of a few blocks. */
export const MIN_LOG_BLOCKS = 8;
const DEFAULT_LOG_BYTES_MAX = 64 << 20;

export interface Layout {
  readonly version: 1 | 2;
  readonly logStart: number;
  readonly logBlocks: number;
  readonly dataStart: number;
  readonly blockCount: number;
  readonly summaryBlocks: number;
  readonly mapBlocks: number;
  readonly physicalBlocks: number;
}

/**
 * Where the log and the home area go on a device of `deviceSize` bytes.
 * Throws RangeError naming what does not fit.
 *
 * The default reserve of version 2 is an eighth of the device, at least
 * the log's size and at most four times it (256 MiB with the default log),
 * and never more than a quarter of what the log leaves.
 * A version 2 delta holds about a 1/maxDeltas share of the reserve (the
 * high-water mark of version 2, as a third of the log is version 1's; see
 * Volume's constructor): its new copies need room while the deltas before
 * it are in flight, and a freed block is reused once its delta is durable.
 * Larger deltas mean fewer flushes: a stream measured with a reserve of one
 * log ran at about half the speed it did with four.
 */
export function planLayout(deviceSize: number, blockSize: number, logBlocks?: number, version: 1 | 2 = FORMAT_VERSION, reserveBlocks?: number): Layout {
  const total = Math.floor(deviceSize / blockSize);
  const log = logBlocks ?? Math.max(MIN_LOG_BLOCKS, Math.min(Math.floor(total / 8), Math.floor(DEFAULT_LOG_BYTES_MAX / blockSize)));
  if (!Number.isSafeInteger(log) || log < MIN_LOG_BLOCKS) {
    throw new RangeError(`logBlocks must be an integer of at least ${MIN_LOG_BLOCKS}, got ${describe(logBlocks)}`);
  }
  const dataStart = LOG_START + log;
  if (total <= dataStart) {
    throw new RangeError(
      `a device of ${deviceSize} bytes has ${total} blocks of ${blockSize}: too few for 2 superblocks, a log of ${log} blocks and any data`,
    );
  }
  const home = total - dataStart;
  if (version === VERSION_1) {
    return { version, logStart: LOG_START, logBlocks: log, dataStart, blockCount: home, summaryBlocks: 0, mapBlocks: 0, physicalBlocks: 0 };
  }
  const reserve = reserveBlocks ?? Math.max(1, Math.min(Math.max(log, Math.floor(total / 8)), 4 * log, Math.floor(home / 4)));
  if (!Number.isSafeInteger(reserve) || reserve < 1) throw new RangeError(`reserveBlocks must be a positive integer, got ${describe(reserveBlocks)}`);
  // The map's size depends on the volume's, which is what the map and the reserve leave: shrink to a fixed point.
  let blockCount = home - reserve;
  for (;;) {
    const mapBlocks = mapBlocksFor(Math.max(1, blockCount), blockSize);
    const summaryBlocks = summaryBlocksFor(mapBlocks, blockSize);
    const fits = home - reserve - mapBlocks - summaryBlocks;
    if (fits < 1) {
      throw new RangeError(
        `a device of ${deviceSize} bytes has ${total} blocks of ${blockSize}: too few for 2 superblocks, a log of ${log} blocks, ` +
          `a reserve of ${reserve} blocks, the block map and any data`,
      );
    }
    if (fits >= blockCount) {
      const physicalBlocks = blockCount + reserve;
      if (physicalBlocks > MAX_PHYSICAL_BLOCKS) {
        throw new RangeError(`a volume of version 2 holds at most ${MAX_PHYSICAL_BLOCKS} physical blocks; this one would need ${physicalBlocks}: use a larger block size`);
      }
      return { version, logStart: LOG_START, logBlocks: log, dataStart, blockCount, summaryBlocks, mapBlocks, physicalBlocks };
    }
    blockCount = fits;
  }
}

/**
 * Formats `io` as a journaled volume: both superblock copies (sequence 1 in
 * copy 1, sequence 2 in copy 0, identical otherwise), then a flush. The log
 * is not cleared: the new random volume id makes every record already there
 * foreign, and replay starts at position 0 of the new id.
 */
export async function formatVolume(io: BlockIo, options: FormatOptions): Promise<Superblock> {
  if (typeof options !== 'object' || options === null) throw new TypeError(`options must be an object, got ${describe(options)}`);
  const { blockSize } = options;
  if (!Number.isInteger(blockSize) || blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw new RangeError(`blockSize must be a power of two from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE}, got ${describe(blockSize)}`);
  }
  const { geometry } = io;
  if (blockSize % geometry.logicalSectorSize !== 0) {
    throw new RangeError(`blockSize ${blockSize} is not a multiple of the sector size ${geometry.logicalSectorSize} of '${io.path}'`);
  }
  if (options.overwrite !== undefined && typeof options.overwrite !== 'boolean') {
    throw new TypeError(`overwrite must be a boolean, got ${describe(options.overwrite)}`);
  }
  if (options.version !== undefined && options.version !== VERSION_1 && options.version !== VERSION_2) {
    throw new RangeError(`version must be 1 or 2, got ${describe(options.version)}`);
  }
  if (options.reserveBlocks !== undefined && options.version === VERSION_1) throw new RangeError('reserveBlocks goes with version 2 only');
  const layout = planLayout(geometry.size, blockSize, options.logBlocks, options.version ?? FORMAT_VERSION, options.reserveBlocks);
  if (options.overwrite !== true) {
    // Only "there is no valid volume" lets the format go on; an I/O error must not.
    const existing = await readSuperblock(io).then(
      (found) => found.superblock,
      (error: unknown) => {
        if (error instanceof BlockforkError) return undefined;
        throw error;
      },
    );
    if (existing !== undefined) {
      throw new BlockforkError(
        'ERR_VOLUME_EXISTS',
        `'${io.path}' already holds a blockfork volume (block size ${existing.blockSize}, ${existing.blockCount} data blocks); pass overwrite: true to format it anew`,
      );
    }
  }
  const base: Superblock = {
    sequence: 1,
    volumeId: randomBytes(8).readBigUInt64LE(0),
    blockSize,
    sectorSize: geometry.logicalSectorSize,
    deviceSize: geometry.size,
    ...layout,
    checkpointDelta: 0,
    replayPosition: 0,
  };
  if (base.version === VERSION_2) await writeEmptySummary(io, base);
  await writeSuperblock(io, base);
  const current: Superblock = { ...base, sequence: 2 };
  await writeSuperblock(io, current);
  await io.flush();
  return current;
}

/**
 * Version 2: every summary block, all bits clear (no map block written yet).
 * The map blocks need nothing (a clear bit means identity), but the summary
 * must be there from the start: a summary block open cannot read as this
 * volume's is damage (ERR_MAP_CORRUPT), never taken for "nothing redirected".
 */
async function writeEmptySummary(io: BlockIo, sb: Superblock): Promise<void> {
  const chunk = 64;
  const slab = allocBlocks(sb.blockSize, Math.min(chunk, sb.summaryBlocks));
  try {
    for (let first = 0; first < sb.summaryBlocks; first += chunk) {
      const blocks = [];
      for (let j = first; j < Math.min(first + chunk, sb.summaryBlocks); j++) {
        const image = slab.page(j - first);
        initBlock(image, SUMMARY_MAGIC, sb.volumeId);
        sealBlock(image);
        blocks.push({ home: j, image });
      }
      await io.run(homeRequests(sb.dataStart, sb.blockSize, blocks));
    }
  } finally {
    slab.release();
  }
}
