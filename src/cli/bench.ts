import * as fs from 'node:fs';
import { Device } from '../io/device';
import { BlockforkError } from '../io/errors';
import { readSuperblock } from '../journal/superblock';
import { renderBench } from '../bench/bench-table';
import { writeReport } from '../bench/report';
import { runBench, type BenchReport, type TargetInfo } from '../bench/run';
import { createScratchImage, type ScratchImage } from '../bench/scratch-image';
import { formatBytes } from '../bench/units';
import { REGION_UNIT } from '../bench/workloads';
import { CliError } from './failure';
import { Progress } from './progress';
import { checkWritable } from './safety';

/**
 * `blockfork bench [PATH]`: the target (a scratch image, or a file or device
 * the guards allow writing over), the run (bench/run.ts), its output.
 */
export interface BenchOptions {
  quick: boolean;
  json: boolean;
  /** Bytes the workloads cover (the scratch image's size); a multiple of 1 MiB. */
  size?: number;
  force: boolean;
  /** A directory to write the results JSON and the charts into. */
  report?: string;
  /** Comma-separated ids of the comparisons to run. */
  only?: string;
}

const DEFAULT_SIZE = 1 << 30;
const QUICK_SIZE = 256 << 20;

export async function bench(pathArgument: string | undefined, options: BenchOptions): Promise<void> {
  const defaultSize = options.quick ? QUICK_SIZE : DEFAULT_SIZE;
  let scratch: ScratchImage | undefined;
  let info: TargetInfo;
  let region: number;
  if (pathArgument === undefined) {
    region = options.size ?? defaultSize;
    scratch = await createScratchImage(region);
    info = { path: scratch.path, kind: 'scratch image', fileSystem: scratch.fileSystem };
    process.stderr.write(`blockfork bench: scratch image ${scratch.path} (${formatBytes(region)} on ${scratch.fileSystem}), removed afterwards\n`);
  } else {
    ({ info, region } = await existingTarget(pathArgument, options, defaultSize));
  }
  let report: BenchReport;
  try {
    const only = options.only?.split(',').map((id) => id.trim()).filter((id) => id !== '');
    report = await runBench(info, region, options.quick, only, (total) => new Progress(total));
  } finally {
    scratch?.remove();
  }
  if (options.report !== undefined) {
    const files = writeReport(options.report, report);
    process.stderr.write(`blockfork bench: report written: ${files.join(', ')}\n`);
  }
  process.stdout.write(options.json ? JSON.stringify(report, null, 2) + '\n' : renderBench(report));
}

async function existingTarget(path: string, options: BenchOptions, defaultSize: number): Promise<{ info: TargetInfo; region: number }> {
  const stats = fs.statSync(path);
  if (!stats.isFile() && !stats.isBlockDevice()) throw new CliError(`${path} is neither a regular file nor a block device`);
  checkWritable(path, options.force);
  const device = await Device.open(path, { readOnly: true, engine: 'threads', queueDepth: 1 });
  const size = device.geometry.size;
  try {
    if (!options.force) await refuseVolume(device);
  } finally {
    await device.close();
  }
  if (options.size !== undefined && options.size > size) {
    throw new CliError(`--size ${formatBytes(options.size)} is more than ${path} holds (${formatBytes(size)})`);
  }
  const region = options.size ?? Math.floor(Math.min(size, defaultSize) / REGION_UNIT) * REGION_UNIT;
  if (region === 0) throw new CliError(`${path} holds ${formatBytes(size)}: the bench needs at least ${formatBytes(REGION_UNIT)}`);
  return { info: { path, kind: stats.isBlockDevice() ? 'block device' : 'file' }, region };
}

/** A blockfork volume is someone's data too: the bench writes over it only with --force. */
async function refuseVolume(device: Device): Promise<void> {
  let what: string;
  try {
    const { superblock: sb } = await readSuperblock(device);
    what = `a blockfork volume (block size ${sb.blockSize}, ${sb.blockCount} data blocks)`;
  } catch (error) {
    if (!(error instanceof BlockforkError)) throw error;
    if (error.code === 'ERR_NOT_A_VOLUME') return;
    what = `a damaged blockfork volume (${error.message})`;
  }
  throw new CliError(`refusing to write on ${device.path}: it holds ${what}; pass --force to overwrite it`);
}
