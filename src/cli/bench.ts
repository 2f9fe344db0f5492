import * as fs from 'node:fs';
import * as os from 'node:os';
import { Device } from '../io/device';
import { BlockforkError } from '../io/errors';
import { readSuperblock } from '../journal/superblock';
import { renderBench } from './bench-table';
import { wipeSuperblocks } from './bench-volume';
import { comparisons, FULL_SCALE, QUICK_SCALE, type Entry } from './comparisons';
import { CliError } from './failure';
import { fioVersion, FIO_MISSING } from './fio';
import { Progress } from './progress';
import { runRaw } from './raw-engine';
import { writeReport } from './report';
import { rowsOf, type Row, type Runs } from './results';
import { checkWritable } from './safety';
import { createScratchImage, type ScratchImage } from './scratch-image';
import { NotAvailable, type Measurement, type Target } from './subject';
import { formatBytes } from './units';
import { REGION_UNIT, SEQUENTIAL_WRITE } from './workloads';

/**
 * `blockfork bench [PATH]`: every comparison's subjects on one target,
 * alternated within each repeat (so that a drift of the device over time,
 * such as a thin-provisioned volume warming up or a host cache filling, hits
 * all subjects alike), and the median run of each reported.
 */
export interface BenchOptions {
  quick: boolean;
  json: boolean;
  /** Bytes the workloads cover (the scratch image's size); a multiple of 1 MiB. */
  size?: number;
  force: boolean;
  /** A directory to write the results JSON and the charts into. */
  report?: string;
}

const SEED = 0x5eed;
const DEFAULT_SIZE = 1 << 30;
const QUICK_SIZE = 256 << 20;

export interface TargetInfo {
  readonly path: string;
  readonly kind: 'scratch image' | 'file' | 'block device';
  /** For a scratch image: the file system it lives on. */
  readonly fileSystem?: string;
}

/** What --json prints and --report writes. */
export interface BenchReport {
  target: TargetInfo & { bytes: number };
  machine: { cpus: number; cpu: string; kernel: string; node: string; loadAverage: number[] };
  fio: string;
  repeats: number;
  seed: number;
  results: Row[];
}

export async function bench(pathArgument: string | undefined, options: BenchOptions): Promise<void> {
  const repeats = options.quick ? 1 : 3;
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
  const target: Target = { path: info.path, region, seed: SEED };

  const fio = fioVersion();
  const plan = comparisons(fio, options.quick ? QUICK_SCALE : FULL_SCALE);
  const runs = new Map<Entry, { measurements: Measurement[]; unavailable?: string }>();
  for (const comparison of plan) {
    for (const entry of comparison.entries) runs.set(entry, { measurements: [], unavailable: entry.subject.unavailable });
  }
  const steps = plan.reduce((n, c) => n + c.entries.filter((e) => e.subject.unavailable === undefined).length, 0);
  process.stderr.write(
    `blockfork bench: prefilling ${formatBytes(region)} of ${target.path} with sequential 1 MiB writes, so that every run overwrites allocated blocks, not holes\n`,
  );
  // Started after the last message: a line written under a live bar garbles both.
  const progress = new Progress(1 + repeats * steps);
  const loadBefore = os.loadavg();
  try {
    progress.show(0, 'prefill');
    await runRaw(SEQUENTIAL_WRITE, target, 'auto');
    let done = 1;
    for (let repeat = 1; repeat <= repeats; repeat++) {
      for (const comparison of plan) {
        for (const entry of rotation(comparison.entries, repeat)) {
          const record = runs.get(entry);
          if (!record || record.unavailable !== undefined) continue;
          progress.show(done, `run ${repeat}/${repeats}: ${comparison.title}, ${entry.subject.name}`);
          try {
            record.measurements.push(await entry.subject.run(target));
          } catch (error) {
            if (!(error instanceof NotAvailable)) throw error;
            record.unavailable = error.message;
          }
          done++;
        }
      }
    }
    progress.show(done, 'done');
    // Journal runs format the target: leave no superblock behind, or the next bench on it
    // (and any tool that looks for signatures) would take it for a blockfork volume.
    await wipeSuperblocks(target.path);
  } finally {
    progress.stop();
    scratch?.remove();
  }

  const report: BenchReport = {
    target: { ...info, bytes: region },
    machine: {
      cpus: os.cpus().length,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      kernel: os.release(),
      node: process.version,
      // The 1-minute load average before and after: a busy machine is a reason to run again.
      loadAverage: [loadBefore[0], os.loadavg()[0]],
    },
    fio: fio ?? FIO_MISSING,
    repeats,
    seed: SEED,
    results: plan.flatMap((comparison) => rowsOf(comparison, (entry) => runs.get(entry) as Runs)),
  };
  if (options.report !== undefined) {
    const files = writeReport(options.report, report);
    process.stderr.write(`blockfork bench: report written: ${files.join(', ')}\n`);
  }
  process.stdout.write(options.json ? JSON.stringify(report, null, 2) + '\n' : renderBench(report));
}

/**
 * The order of a comparison's subjects in one repeat: each repeat starts
 * with the next subject, so that none always runs first after another job's
 * writes (a device's write-back cache drains across the boundary).
 */
function rotation<T>(entries: readonly T[], repeat: number): T[] {
  const k = (repeat - 1) % entries.length;
  return [...entries.slice(k), ...entries.slice(0, k)];
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
