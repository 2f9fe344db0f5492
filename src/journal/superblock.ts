/**
 * The superblock: what a journaled volume is (block size, where the log and
 * the data area lie) and where replay starts (the checkpoint). The byte
 * layout is drawn in docs/FORMAT.md; the field table here must match it.
 *
 * Two copies, LMDB's two meta pages: copy 0 in block 0, copy 1 in block 1.
 * Sequence number s is always written to copy s % 2, so a new superblock
 * overwrites the *older* copy and never the one that is currently in force.
 * A torn write therefore damages at most the copy being replaced; the other
 * still holds the last durable checkpoint. On read, the valid copy with the
 * highest sequence wins.
 *
 *   off size field
 *     0    8 magic            "blkfork\0"
 *     8    4 version          1 or 2 (VERSION_1, VERSION_2)
 *    12    4 headerBytes      SUPERBLOCK_BYTES (the bytes the CRC covers, plus 4)
 *    16    8 sequence         bumped by every superblock write
 *    24    8 volumeId         random at format; stamped on every log record
 *    32    4 blockSize
 *    36    4 sectorSize       the device's logical sector size at format
 *    40    8 deviceSize       bytes of the device at format
 *    48    8 logStart         first block of the log ring
 *    56    8 logBlocks        blocks in the log ring
 *    64    8 dataStart        first block of the home area (v1: the data area)
 *    72    8 blockCount       volume (logical) data blocks
 *    80    8 checkpointDelta  last delta whose home writes are durable
 *    88    8 replayPosition   log position where replay starts
 *    96    4 flags            0
 *   100    4 summaryBlocks    v2: blocks of the map summary (v1: 0, reserved)
 *   104    4 mapBlocks        v2: blocks of the block map (v1: 0, reserved)
 *   108    8 physicalBlocks   v2: blocks of the physical data area (v1: 0, reserved)
 *   116    8 reserved         0
 *   124    4 crc32c           of bytes 0..123
 *
 * Version 2 (redirect-on-write, block-map.ts): the home area after the log
 * holds the map summary, then the block map, then the physical data area of
 * physicalBlocks = blockCount + a reserve. Version 1: the home area is the
 * data area itself, blockCount blocks, volume block i at home block i.
 */
import { BlockforkError } from '../io/errors';
import type { BlockIo } from '../io/request';
import { Slab } from '../io/slab';
import { allocBlocks } from './block-memory';
import { crc32c } from './crc32c';
import { MAX_PHYSICAL_BLOCKS, mapBlocksFor, summaryBlocksFor } from './map-block';

export const VERSION_1 = 1;
export const VERSION_2 = 2;
/** The version `format` writes unless told otherwise; both are read. */
export const FORMAT_VERSION = VERSION_1;
export const SUPERBLOCK_BYTES = 128;
export const SUPERBLOCK_MAGIC = Buffer.from('blkfork\0', 'latin1');
/** Block sizes a volume may have: powers of two in this range. */
export const MIN_BLOCK_SIZE = 512;
export const MAX_BLOCK_SIZE = 65536;
/** Blocks 0 and 1 hold the two superblock copies; the log follows. */
export const LOG_START = 2;

const CRC_OFFSET = SUPERBLOCK_BYTES - 4;
const NO_MAGIC = 'no superblock magic "blkfork"';

export interface Superblock {
  readonly version: number;
  readonly sequence: number;
  /** 64 bits, random at format: log records of an earlier format never match it. */
  readonly volumeId: bigint;
  readonly blockSize: number;
  readonly sectorSize: number;
  readonly deviceSize: number;
  readonly logStart: number;
  readonly logBlocks: number;
  readonly dataStart: number;
  readonly blockCount: number;
  /** Every delta up to this one is at home and durable; 0 before the first. */
  readonly checkpointDelta: number;
  /** Absolute log position (blocks since format) of the first delta after the checkpoint. */
  readonly replayPosition: number;
  /** Version 2: blocks of the map summary, of the block map, and of the physical data area (0 in version 1). */
  readonly summaryBlocks: number;
  readonly mapBlocks: number;
  readonly physicalBlocks: number;
}

/**
 * Blocks of the home area, the part after the log that descriptors' home
 * numbers index: the data area in version 1; the map summary, the block map
 * and the physical data area in version 2.
 */
export function homeBlocks(sb: Superblock): number {
  return sb.version === VERSION_1 ? sb.blockCount : sb.summaryBlocks + sb.mapBlocks + sb.physicalBlocks;
}

/** Which copy lives where, and what was wrong with it if it was not used. */
export interface SuperblockCopy {
  readonly copy: 0 | 1;
  readonly offset: number;
  readonly superblock?: Superblock;
  readonly error?: string;
  /** No magic at all there: not damaged, simply not a superblock. */
  readonly missing?: boolean;
}

export interface ReadSuperblock {
  /** The valid copy with the highest sequence. */
  readonly superblock: Superblock;
  readonly copies: readonly SuperblockCopy[];
}

export function superblockOffset(copy: 0 | 1, blockSize: number): number {
  return copy * blockSize;
}

/** The copy a superblock of this sequence number is written to. */
export function copyFor(sequence: number): 0 | 1 {
  return (sequence % 2) as 0 | 1;
}

/** Writes `sb` into the first SUPERBLOCK_BYTES of `target` and zeroes the rest of it. */
export function encodeSuperblock(sb: Superblock, target: Uint8Array): void {
  if (target.byteLength < SUPERBLOCK_BYTES) throw new RangeError(`a superblock needs ${SUPERBLOCK_BYTES} bytes, got ${target.byteLength}`);
  target.fill(0);
  const view = new DataView(target.buffer, target.byteOffset, SUPERBLOCK_BYTES);
  target.set(SUPERBLOCK_MAGIC, 0);
  view.setUint32(8, sb.version, true);
  view.setUint32(12, SUPERBLOCK_BYTES, true);
  setU64(view, 16, sb.sequence);
  view.setBigUint64(24, sb.volumeId, true);
  view.setUint32(32, sb.blockSize, true);
  view.setUint32(36, sb.sectorSize, true);
  setU64(view, 40, sb.deviceSize);
  setU64(view, 48, sb.logStart);
  setU64(view, 56, sb.logBlocks);
  setU64(view, 64, sb.dataStart);
  setU64(view, 72, sb.blockCount);
  setU64(view, 80, sb.checkpointDelta);
  setU64(view, 88, sb.replayPosition);
  view.setUint32(96, 0, true);
  if (sb.version === VERSION_2) {
    view.setUint32(100, sb.summaryBlocks, true);
    view.setUint32(104, sb.mapBlocks, true);
    setU64(view, 108, sb.physicalBlocks);
  }
  view.setUint32(CRC_OFFSET, crc32c(target.subarray(0, CRC_OFFSET)), true);
}

/**
 * Decodes and validates one copy. Throws a BlockforkError whose message says
 * what is wrong (code ERR_NOT_A_VOLUME when the magic is absent, else
 * ERR_SUPERBLOCK_CORRUPT), so that `open` and `check` can name it.
 */
export function decodeSuperblock(bytes: Uint8Array, copy: 0 | 1): Superblock {
  if (bytes.byteLength < SUPERBLOCK_BYTES) throw corrupt(`only ${bytes.byteLength} bytes, a superblock has ${SUPERBLOCK_BYTES}`);
  if (!SUPERBLOCK_MAGIC.equals(bytes.subarray(0, 8))) {
    throw new BlockforkError('ERR_NOT_A_VOLUME', NO_MAGIC);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, SUPERBLOCK_BYTES);
  const version = view.getUint32(8, true);
  if (version !== VERSION_1 && version !== VERSION_2) {
    throw corrupt(`format version ${version}; this blockfork reads versions ${VERSION_1} and ${VERSION_2}`);
  }
  const headerBytes = view.getUint32(12, true);
  if (headerBytes !== SUPERBLOCK_BYTES) throw corrupt(`header size ${headerBytes}, expected ${SUPERBLOCK_BYTES}`);
  const stored = view.getUint32(CRC_OFFSET, true);
  const computed = crc32c(bytes.subarray(0, CRC_OFFSET));
  if (stored !== computed) {
    throw corrupt(`checksum mismatch (stored crc32c ${hex(stored)}, computed ${hex(computed)}): torn or damaged`);
  }
  const sb: Superblock = {
    version,
    sequence: getU64(view, 16, 'sequence'),
    volumeId: view.getBigUint64(24, true),
    blockSize: view.getUint32(32, true),
    sectorSize: view.getUint32(36, true),
    deviceSize: getU64(view, 40, 'deviceSize'),
    logStart: getU64(view, 48, 'logStart'),
    logBlocks: getU64(view, 56, 'logBlocks'),
    dataStart: getU64(view, 64, 'dataStart'),
    blockCount: getU64(view, 72, 'blockCount'),
    checkpointDelta: getU64(view, 80, 'checkpointDelta'),
    replayPosition: getU64(view, 88, 'replayPosition'),
    summaryBlocks: version === VERSION_2 ? view.getUint32(100, true) : 0,
    mapBlocks: version === VERSION_2 ? view.getUint32(104, true) : 0,
    physicalBlocks: version === VERSION_2 ? getU64(view, 108, 'physicalBlocks') : 0,
  };
  const flags = view.getUint32(96, true);
  if (flags !== 0) throw corrupt(`unknown flags ${hex(flags)}`);
  const problem = layoutProblem(sb);
  if (problem !== undefined) throw corrupt(problem);
  if (copyFor(sb.sequence) !== copy) {
    throw corrupt(`sequence ${sb.sequence} belongs in copy ${copyFor(sb.sequence)}, found in copy ${copy}`);
  }
  return sb;
}

/** Why a superblock's layout cannot be right, or undefined. Checked after the CRC: it catches bugs, not rot. */
export function layoutProblem(sb: Superblock): string | undefined {
  const { blockSize } = sb;
  if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    return `block size ${blockSize} is not a power of two from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE}`;
  }
  if (sb.logStart !== LOG_START) return `log starts at block ${sb.logStart}, expected ${LOG_START}`;
  if (sb.logBlocks < 3) return `log of ${sb.logBlocks} blocks cannot hold a delta`;
  if (sb.dataStart !== sb.logStart + sb.logBlocks) return `data area starts at block ${sb.dataStart}, expected ${sb.logStart + sb.logBlocks} (after the log)`;
  if (sb.blockCount < 1) return 'data area is empty';
  if (sb.version === VERSION_2) {
    const problem = mapLayoutProblem(sb);
    if (problem !== undefined) return problem;
  }
  const end = (sb.dataStart + homeBlocks(sb)) * blockSize;
  if (end > sb.deviceSize) {
    return `data area ends at byte ${end}, past the device size ${sb.deviceSize} recorded at format`;
  }
  if (!Number.isSafeInteger(end)) return 'volume size overflows';
  return undefined;
}

/** Version 2: the map must cover every volume block, the summary every map block, and the physical area hold every volume block. */
function mapLayoutProblem(sb: Superblock): string | undefined {
  const need = mapBlocksFor(sb.blockCount, sb.blockSize);
  if (sb.mapBlocks !== need) return `block map of ${sb.mapBlocks} blocks, but ${sb.blockCount} volume blocks need ${need}`;
  const summary = summaryBlocksFor(sb.mapBlocks, sb.blockSize);
  if (sb.summaryBlocks !== summary) return `map summary of ${sb.summaryBlocks} blocks, but ${sb.mapBlocks} map blocks need ${summary}`;
  if (sb.physicalBlocks < sb.blockCount) return `physical area of ${sb.physicalBlocks} blocks is smaller than the ${sb.blockCount} volume blocks`;
  if (sb.physicalBlocks > MAX_PHYSICAL_BLOCKS) return `physical area of ${sb.physicalBlocks} blocks exceeds the ${MAX_PHYSICAL_BLOCKS} a map entry can name`;
  return undefined;
}

/** Powers of two where copy 1 may sit (it is at byte `blockSize`): probed when copy 0 is unreadable. */
function copyOneCandidates(sectorSize: number, deviceSize: number): number[] {
  const offsets: number[] = [];
  for (let o = Math.max(MIN_BLOCK_SIZE, sectorSize); o <= MAX_BLOCK_SIZE && o + SUPERBLOCK_BYTES <= deviceSize; o *= 2) offsets.push(o);
  return offsets;
}

/**
 * Reads both copies and returns the one in force. Copy 1 lies at byte
 * `blockSize`, which copy 0 tells; if copy 0 is unreadable, every possible
 * block size is probed, and a copy found at byte o must declare blockSize o.
 * The chosen superblock is also checked against the device (sector size,
 * size), so that a volume copied onto a smaller device is refused by name.
 */
export async function readSuperblock(io: BlockIo): Promise<ReadSuperblock> {
  const { geometry } = io;
  const span = Math.min(2 * MAX_BLOCK_SIZE, Math.floor(geometry.size / geometry.logicalSectorSize) * geometry.logicalSectorSize);
  if (span < SUPERBLOCK_BYTES) {
    throw new BlockforkError('ERR_NOT_A_VOLUME', `'${io.path}' holds no blockfork volume: ${geometry.size} bytes is too small for a superblock`);
  }
  const slab = Slab.alloc(MAX_BLOCK_SIZE, 2);
  try {
    const head = Buffer.from(slab.memory, 0, span);
    await io.run([{ op: 'read', offset: 0, buffers: [head] }]);
    const copies: SuperblockCopy[] = [attempt(head.subarray(0, SUPERBLOCK_BYTES), 0, 0)];
    const zero = copies[0].superblock;
    if (zero !== undefined) {
      const offset = superblockOffset(1, zero.blockSize);
      copies.push(attempt(head.subarray(offset, offset + SUPERBLOCK_BYTES), 1, offset));
    } else {
      let found: SuperblockCopy | undefined;
      for (const offset of copyOneCandidates(geometry.logicalSectorSize, span)) {
        const candidate = attempt(head.subarray(offset, offset + SUPERBLOCK_BYTES), 1, offset);
        if (candidate.superblock?.blockSize === offset) {
          found = candidate;
          break;
        }
        if (candidate.superblock !== undefined) {
          found ??= { copy: 1, offset, error: `declares block size ${candidate.superblock.blockSize} but lies at byte ${offset}` };
        } else if (!candidate.missing) {
          found ??= candidate;
        }
      }
      copies.push(found ?? { copy: 1, offset: -1, missing: true, error: `${NO_MAGIC} at any block-1 offset (${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE})` });
    }
    let best: Superblock | undefined;
    for (const c of copies) if (c.superblock && (best === undefined || c.superblock.sequence > best.sequence)) best = c.superblock;
    if (best === undefined) {
      const detail = copies.map((c) => `copy ${c.copy}${c.offset >= 0 ? ` (byte ${c.offset})` : ''}: ${c.error}`).join('; ');
      const noMagic = copies.every((c) => c.missing === true);
      throw new BlockforkError(
        noMagic ? 'ERR_NOT_A_VOLUME' : 'ERR_SUPERBLOCK_CORRUPT',
        noMagic ? `'${io.path}' holds no blockfork volume (${detail})` : `'${io.path}': no valid superblock (${detail})`,
      );
    }
    checkAgainstDevice(io, best);
    return { superblock: best, copies };
  } finally {
    slab.release();
  }
}

function attempt(bytes: Uint8Array, copy: 0 | 1, offset: number): SuperblockCopy {
  try {
    return { copy, offset, superblock: decodeSuperblock(bytes, copy) };
  } catch (error) {
    if (!(error instanceof BlockforkError)) throw error;
    return { copy, offset, error: error.message, missing: error.code === 'ERR_NOT_A_VOLUME' };
  }
}

function checkAgainstDevice(io: BlockIo, sb: Superblock): void {
  const { geometry } = io;
  if (sb.blockSize % geometry.logicalSectorSize !== 0) {
    throw new BlockforkError(
      'ERR_GEOMETRY',
      `'${io.path}': the volume's block size ${sb.blockSize} is not a multiple of the device's sector size ${geometry.logicalSectorSize}`,
    );
  }
  const end = (sb.dataStart + homeBlocks(sb)) * sb.blockSize;
  if (end > geometry.size) {
    throw new BlockforkError('ERR_GEOMETRY', `'${io.path}': the volume needs ${end} bytes but the device has ${geometry.size} (truncated?)`);
  }
}

/**
 * Writes `sb` to copy `sb.sequence % 2`. Not durable until the caller
 * flushes; the caller must not act on it (free log space) before that.
 */
export async function writeSuperblock(io: BlockIo, sb: Superblock): Promise<void> {
  const slab = allocBlocks(sb.blockSize, 1);
  try {
    const block = slab.page(0);
    encodeSuperblock(sb, block);
    await io.run([{ op: 'write', offset: superblockOffset(copyFor(sb.sequence), sb.blockSize), buffers: [block] }]);
  } finally {
    slab.release();
  }
}

function corrupt(what: string): BlockforkError {
  return new BlockforkError('ERR_SUPERBLOCK_CORRUPT', what);
}

function hex(n: number): string {
  return '0x' + n.toString(16).padStart(8, '0');
}

function setU64(view: DataView, offset: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`superblock field at byte ${offset} must be a non-negative safe integer, got ${value}`);
  view.setBigUint64(offset, BigInt(value), true);
}

function getU64(view: DataView, offset: number, name: string): number {
  const value = view.getBigUint64(offset, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`${name} ${value} exceeds 2^53`);
  return Number(value);
}
