import * as fs from 'node:fs';
import { native } from '../native';
import { Device } from '../io/device';
import { BlockforkError, systemError, type SystemError } from '../io/errors';
import type { Geometry } from '../io/geometry';
import { readSuperblock } from '../journal/superblock';
import { oneLine } from '../io/error-chain';
import { CliError } from './failure';
import { deviceUse } from './mounts';
import { findSignature, type Signature } from './signatures';
import { formatBytes } from '../bench/units';
import { volumeFields, volumeRows, type VolumeFields } from './volume-fields';

/**
 * `blockfork info PATH`: what blockfork would see of a device or file before
 * it writes anything. It only reads (a read-only open and the first blocks),
 * including whether a blockfork volume is formatted there, and its superblock.
 */
export interface InfoReport {
  path: string;
  type: 'block device' | 'file';
  size: number;
  logicalSectorSize: number;
  physicalSectorSize: number;
  memoryAlignment: number;
  /** O_DIRECT works here; when not, why (the geometry then comes from a buffered open). */
  direct: boolean;
  directRefused?: string;
  /** What `engine: 'auto'` picks here, and why not io_uring where it does not. */
  engine: 'io_uring' | 'threads';
  engineNote?: string;
  /** For a block device: why it is in use (mounted, swap, held), empty if it is not; null for a file. */
  inUse: string[] | null;
  signature: Signature | null;
  volume: VolumeReport;
}

/**
 * Whether a blockfork volume is there. `formatted: false` with a `problem`:
 * the superblock magic is there but no copy is valid, or the volume does not
 * fit the device (`blockfork check` says more).
 */
export type VolumeReport = ({ formatted: true; superblockCopy: 0 | 1 } & VolumeFields) | { formatted: false; problem?: string };

export async function info(path: string, options: { json: boolean }): Promise<void> {
  const report = await inspect(path);
  process.stdout.write(options.json ? JSON.stringify(report, null, 2) + '\n' : render(report));
}

async function inspect(path: string): Promise<InfoReport> {
  const stats = fs.statSync(path);
  if (!stats.isFile() && !stats.isBlockDevice()) throw new CliError(`${path} is neither a regular file nor a block device`);
  let seen: { geometry: Geometry; volume: VolumeReport };
  let directRefused: string | undefined;
  try {
    seen = await look(path, true);
  } catch (error) {
    // Only a refusal of O_DIRECT itself is worth a second, buffered open.
    if ((error as SystemError).code !== 'EINVAL') throw error;
    directRefused = oneLine(error);
    seen = await look(path, false);
  }
  const { geometry, volume } = seen;
  const probe = native.probeIoUring();
  const signature = findSignature(path);
  return {
    path,
    type: geometry.isBlockDevice ? 'block device' : 'file',
    size: geometry.size,
    logicalSectorSize: geometry.logicalSectorSize,
    physicalSectorSize: geometry.physicalSectorSize,
    memoryAlignment: geometry.memoryAlignment,
    direct: directRefused === undefined,
    ...(directRefused === undefined ? {} : { directRefused }),
    engine: probe === 0 ? 'io_uring' : 'threads',
    ...(probe === 0 ? {} : { engineNote: `io_uring unavailable: ${systemError(probe, 'io_uring_setup').message}` }),
    inUse: geometry.isBlockDevice ? [...deviceUse(path).reasons] : null,
    signature: signature ?? null,
    volume,
  };
}

async function look(path: string, direct: boolean): Promise<{ geometry: Geometry; volume: VolumeReport }> {
  const device = await Device.open(path, { readOnly: true, direct, engine: 'threads', queueDepth: 1 });
  try {
    return { geometry: device.geometry, volume: await volumeOf(device) };
  } finally {
    await device.close();
  }
}

async function volumeOf(device: Device): Promise<VolumeReport> {
  try {
    const { superblock, copies } = await readSuperblock(device);
    const inForce = copies.find((c) => c.superblock?.sequence === superblock.sequence)!.copy;
    return { formatted: true, superblockCopy: inForce, ...volumeFields(superblock) };
  } catch (error) {
    // Not a volume, or a damaged one, is an answer; an I/O error is not.
    if (!(error instanceof BlockforkError)) throw error;
    return error.code === 'ERR_NOT_A_VOLUME' ? { formatted: false } : { formatted: false, problem: oneLine(error) };
  }
}

function render(r: InfoReport): string {
  const fields: [string, string][] = [
    ['path', r.path],
    ['type', r.type],
    ['size', `${r.size} bytes (${formatBytes(r.size)})`],
    ['logical sector', `${r.logicalSectorSize} B`],
    ['physical sector', `${r.physicalSectorSize} B`],
    [
      'O_DIRECT',
      r.direct
        ? `yes: offsets and lengths in multiples of ${r.logicalSectorSize} B, buffers aligned to ${r.memoryAlignment} B`
        : `refused (${r.directRefused}); open with direct: false`,
    ],
    ['engine (auto)', r.engineNote ? `${r.engine} (${r.engineNote})` : r.engine],
    ['in use', r.inUse === null ? 'n/a (a file)' : r.inUse.length === 0 ? 'no' : r.inUse.join('; ')],
    ['signature', r.signature ? `${r.signature.name} (${r.signature.where})` : 'none known in the first blocks'],
    ...volumeFieldRows(r.volume),
  ];
  const width = Math.max(...fields.map(([key]) => key.length));
  return fields.map(([key, value]) => `${key.padEnd(width)}  ${value}`).join('\n') + '\n';
}

function volumeFieldRows(v: VolumeReport): [string, string][] {
  if (!v.formatted) return [['blockfork volume', v.problem === undefined ? 'no' : `damaged: ${v.problem} (run blockfork check)`]];
  return [['blockfork volume', `yes (superblock copy ${v.superblockCopy} in force, sequence ${v.sequence})`], ...volumeRows(v, '  ')];
}
