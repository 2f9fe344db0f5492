import type { Superblock } from '../journal/superblock';
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
  };
}

/** Table rows for a volume's geometry and checkpoint; `indent` nests them under a heading row. */
export function volumeRows(v: VolumeFields, indent = ''): [string, string][] {
  return [
    [`${indent}format version`, String(v.version)],
    [`${indent}block size`, `${v.blockSize} B`],
    [`${indent}data blocks`, `${v.blockCount} (${formatBytes(v.blockCount * v.blockSize)}): volume blocks 0 .. ${v.blockCount - 1}`],
    [`${indent}data start`, `block ${v.dataStart} (byte ${v.dataStart * v.blockSize})`],
    [`${indent}log`, `${v.logBlocks} blocks (${formatBytes(v.logBytes)}) from block ${v.logStart}`],
    [`${indent}checkpoint`, v.checkpointDelta === 0 ? 'none yet (delta 0)' : `delta ${v.checkpointDelta}`],
    [`${indent}volume id`, v.volumeId],
  ];
}
