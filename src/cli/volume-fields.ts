import { entriesPerMapBlock } from '../journal/map-block';
import { VERSION_2, type Superblock } from '../journal/superblock';
import { formatBytes } from '../bench/units';

/**
 * A superblock as the CLI reports it (format, check, info): JSON fields with
 * sizes in bytes beside the block counts, and the matching table rows.
 */
export interface VolumeFields {
  version: number;
  /** Bumped by every superblock write. */
  sequence: number;
  /** 16 hex digits (a u64 does not fit a JSON number). */
  volumeId: string;
  blockSize: number;
  /** Data blocks: volume block indexes 0 .. blockCount-1. */
  blockCount: number;
  /** Device block where the data area starts (volume block 0). */
  dataStart: number;
  logStart: number;
  logBlocks: number;
  logBytes: number;
  /** Bytes of the device when it was formatted. */
  deviceSize: number;
  sectorSize: number;
  checkpointDelta: number;
  replayPosition: number;
  /**
   * Version 2 only (docs/FORMAT.md, "Version 2"): the home area from
   * `dataStart` holds the map summary, the block map and the physical
   * area, in that order; counts in blocks, starts as device blocks.
   */
  summaryBlocks?: number;
  mapBlocks?: number;
  mapStart?: number;
  /** Volume blocks one map block covers. */
  mapEntriesPerBlock?: number;
  physicalBlocks?: number;
  /** Device block of physical block 0. */
  physicalStart?: number;
  /** Physical blocks beyond the volume's: physicalBlocks − blockCount. */
  reserveBlocks?: number;
  reserveBytes?: number;
}

export function volumeFields(sb: Superblock): VolumeFields {
  return {
    version: sb.version,
    sequence: sb.sequence,
    volumeId: sb.volumeId.toString(16).padStart(16, '0'),
    blockSize: sb.blockSize,
    blockCount: sb.blockCount,
    dataStart: sb.dataStart,
    logStart: sb.logStart,
    logBlocks: sb.logBlocks,
    logBytes: sb.logBlocks * sb.blockSize,
    deviceSize: sb.deviceSize,
    sectorSize: sb.sectorSize,
    checkpointDelta: sb.checkpointDelta,
    replayPosition: sb.replayPosition,
    ...(sb.version === VERSION_2 ? version2Fields(sb) : {}),
  };
}

function version2Fields(sb: Superblock): Partial<VolumeFields> {
  const reserveBlocks = sb.physicalBlocks - sb.blockCount;
  return {
    summaryBlocks: sb.summaryBlocks,
    mapBlocks: sb.mapBlocks,
    mapStart: sb.dataStart + sb.summaryBlocks,
    mapEntriesPerBlock: entriesPerMapBlock(sb.blockSize),
    physicalBlocks: sb.physicalBlocks,
    physicalStart: sb.dataStart + sb.summaryBlocks + sb.mapBlocks,
    reserveBlocks,
    reserveBytes: reserveBlocks * sb.blockSize,
  };
}

/** Table rows for a volume's geometry and checkpoint; `indent` nests them under a heading row. */
export function volumeRows(v: VolumeFields, indent = ''): [string, string][] {
  const at = (block: number) => `block ${block} (byte ${block * v.blockSize})`;
  const area: [string, string][] =
    v.physicalBlocks === undefined
      ? [[`${indent}data start`, at(v.dataStart)]]
      : [
          [`${indent}home area`, `from ${at(v.dataStart)}: map summary, block map, physical area`],
          [`${indent}map summary`, `${v.summaryBlocks} ${plural(v.summaryBlocks!, 'block')} from block ${v.dataStart}`],
          [`${indent}block map`, `${v.mapBlocks} ${plural(v.mapBlocks!, 'block')} from block ${v.mapStart} (${v.mapEntriesPerBlock} volume blocks each)`],
          [
            `${indent}physical area`,
            `${v.physicalBlocks} blocks (${formatBytes(v.physicalBlocks * v.blockSize)}) from block ${v.physicalStart}: the ${v.blockCount} volume blocks and the reserve`,
          ],
          [`${indent}reserve`, `${v.reserveBlocks} ${plural(v.reserveBlocks!, 'block')} (${formatBytes(v.reserveBytes!)})`],
        ];
  return [
    [`${indent}format version`, String(v.version)],
    [`${indent}block size`, `${v.blockSize} B`],
    [`${indent}data blocks`, `${v.blockCount} (${formatBytes(v.blockCount * v.blockSize)}): volume blocks 0 .. ${v.blockCount - 1}`],
    ...area,
    [`${indent}log`, `${v.logBlocks} blocks (${formatBytes(v.logBytes)}) from block ${v.logStart}`],
    [`${indent}checkpoint`, v.checkpointDelta === 0 ? 'none yet (delta 0)' : `delta ${v.checkpointDelta}`],
    [`${indent}volume id`, v.volumeId],
  ];
}

function plural(n: number, word: string): string {
  return n === 1 ? word : `${word}s`;
}
