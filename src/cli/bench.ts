import * as fs from 'node:fs';
import * as os from 'node:os';
import { Device } from '../io/device';
import { CliError } from './failure';
import { fioSubject, fioVersion, FIO_MISSING } from './fio';
import { Progress } from './progress';
import { rawEngineSubject, runRaw } from './raw-engine';
import { checkWritable } from './safety';
import { createScratchImage, type ScratchImage } from './scratch-image';
import type { Measurement, Subject, Target } from './subject';
import { renderTable } from './table';
import { formatBytes } from './units';
import { RAW_WORKLOADS, REGION_UNIT, SEQUENTIAL_WRITE, type Workload } from './workloads';

/**
 * `blockfork bench [PATH]`: every workload through every subject on one
 * target, fio and ours alternated within each repeat (so that a drift of the
 * device over time, such as a thin-provisioned volume warming up or a host
 * cache filling, hits all subjects alike), and the median run of each
 * reported.
 */
export interface BenchOptions {
  quick: boolean;
  json: boolean;
  /** Bytes the workloads cover (the scratch image's size); a multiple of 1 MiB. */
  size?: number;
  force: boolean;
}

const SEED = 0x5eed;
const DEFAULT_SIZE = 1 << 30;
const QUICK_SIZE = 256 << 20;

interface TargetInfo {
  readonly path: string;
  readonly kind: 'scratch image' | 'file' | 'block device';
  /** For a scratch image: the file system it lives on. */
  readonly fileSystem?: string;
}

interface Row {
  workload: string;
  title: string;
  blockSize: number;
  queueDepth: number;
  subject: string;
  mbPerSecond: number | null;
  iops: number | null;
  latency: { p50Us: number; p99Us: number } | null;
  /** MB/s against the reference subject's for the same workload. */
  ratio: number | null;
  runsMbPerSecond: number[];
  note?: string;
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
  const subjects = [fioSubject(fio), rawEngineSubject('io_uring'), rawEngineSubject('threads')];
  const runnable = subjects.filter((s) => s.unavailable === undefined);
  const workloads = RAW_WORKLOADS;
  process.stderr.write(
    `blockfork bench: prefilling ${formatBytes(region)} of ${target.path} with sequential 1 MiB writes, so that every run overwrites allocated blocks, not holes\n`,
  );
  // Started after the last message: a line written under a live bar garbles both.
  const progress = new Progress(1 + repeats * workloads.length * runnable.length);
  const runs = new Map<string, Measurement[]>();
  try {
    progress.show(0, 'prefill');
    await runRaw(SEQUENTIAL_WRITE, target, 'auto');
    let done = 1;
    for (let repeat = 1; repeat <= repeats; repeat++) {
      for (const workload of workloads) {
        // Each repeat starts with the next subject, so that none always runs
        // first after another workload's writes (a device's write-back cache
        // drains across the boundary).
        for (let k = 0; k < runnable.length; k++) {
          const subject = runnable[(k + repeat - 1) % runnable.length];
          progress.show(done, `run ${repeat}/${repeats}: ${workload.title}, ${subject.name}`);
          const measured = await subject.run(workload, target);
          const key = `${workload.id}/${subject.name}`;
          runs.set(key, [...(runs.get(key) ?? []), measured]);
          done++;
        }
      }
    }
    progress.show(done, 'done');
  } finally {
    progress.stop();
    scratch?.remove();
  }

  const reference = subjects.find((s) => s.name === 'fio' && s.unavailable === undefined) ?? subjects.find((s) => s.name === 'io_uring' && s.unavailable === undefined);
  const rows = workloads.flatMap((workload) => rowsOf(workload, subjects, runs, reference));
  const report = {
    target: { ...info, bytes: region },
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? 'unknown', kernel: os.release(), node: process.version },
    fio: fio ?? FIO_MISSING,
    repeats,
    seed: SEED,
    reference: reference?.name ?? null,
    results: rows,
  };
  process.stdout.write(options.json ? JSON.stringify(report, null, 2) + '\n' : renderReport(report, rows));
}

async function existingTarget(path: string, options: BenchOptions, defaultSize: number): Promise<{ info: TargetInfo; region: number }> {
  const stats = fs.statSync(path);
  if (!stats.isFile() && !stats.isBlockDevice()) throw new CliError(`${path} is neither a regular file nor a block device`);
  checkWritable(path, options.force);
  const device = await Device.open(path, { readOnly: true, engine: 'threads', queueDepth: 1 });
  const size = device.geometry.size;
  await device.close();
  if (options.size !== undefined && options.size > size) {
    throw new CliError(`--size ${formatBytes(options.size)} is more than ${path} holds (${formatBytes(size)})`);
  }
  const region = options.size ?? Math.floor(Math.min(size, defaultSize) / REGION_UNIT) * REGION_UNIT;
  if (region === 0) throw new CliError(`${path} holds ${formatBytes(size)}: the bench needs at least ${formatBytes(REGION_UNIT)}`);
  return { info: { path, kind: stats.isBlockDevice() ? 'block device' : 'file' }, region };
}

function median(measurements: readonly Measurement[]): Measurement {
  const sorted = [...measurements].sort((a, b) => a.bytesPerSecond - b.bytesPerSecond);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

function rowsOf(workload: Workload, subjects: readonly Subject[], runs: Map<string, Measurement[]>, reference: Subject | undefined): Row[] {
  const runsOf = (subject: Subject): Measurement[] => runs.get(`${workload.id}/${subject.name}`) ?? [];
  const referenceRuns = reference ? runsOf(reference) : [];
  const referenceRate = referenceRuns.length > 0 ? median(referenceRuns).bytesPerSecond : undefined;
  return subjects.map((subject): Row => {
    const base = { workload: workload.id, title: workload.title, blockSize: workload.blockSize, queueDepth: workload.queueDepth, subject: subject.name };
    const measured = runsOf(subject);
    if (measured.length === 0) {
      return { ...base, mbPerSecond: null, iops: null, latency: null, ratio: null, runsMbPerSecond: [], note: subject.unavailable };
    }
    const m = median(measured);
    return {
      ...base,
      mbPerSecond: m.bytesPerSecond / 1e6,
      iops: m.iops,
      latency: m.latency ? { p50Us: m.latency.p50Ns / 1e3, p99Us: m.latency.p99Ns / 1e3 } : null,
      ratio: referenceRate ? m.bytesPerSecond / referenceRate : null,
      runsMbPerSecond: measured.map((r) => r.bytesPerSecond / 1e6),
    };
  });
}

function formatRate(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

function formatMicroseconds(us: number): string {
  return us >= 1000 ? `${(us / 1000).toFixed(2)} ms` : `${us.toFixed(0)} µs`;
}

function renderReport(
  report: { target: TargetInfo & { bytes: number }; machine: { cpus: number; cpu: string; kernel: string; node: string }; fio: string; repeats: number; reference: string | null },
  rows: readonly Row[],
): string {
  const { target, machine } = report;
  const where = target.kind === 'scratch image' ? `scratch image ${target.path} on ${target.fileSystem}` : `${target.kind} ${target.path}`;
  const lines = [
    `blockfork bench: ${where}, ${formatBytes(target.bytes)} prefilled; median of ${report.repeats} run${report.repeats === 1 ? '' : 's'}`,
    `machine: ${machine.cpus} × ${machine.cpu}, Linux ${machine.kernel}, Node ${machine.node}, ${report.fio}`,
    '',
  ];
  const ratioHeader = report.reference ? `vs ${report.reference}` : 'ratio';
  let previous = '';
  const cells = rows.map((row) => {
    const title = row.title === previous ? '' : row.title;
    previous = row.title;
    if (row.mbPerSecond === null || row.iops === null) return [title, row.subject, row.note ?? 'not run'];
    return [
      title,
      row.subject,
      formatRate(row.mbPerSecond),
      row.iops.toFixed(0),
      row.latency ? formatMicroseconds(row.latency.p50Us) : '—',
      row.latency ? formatMicroseconds(row.latency.p99Us) : '—',
      row.ratio === null ? '—' : row.ratio.toFixed(2),
    ];
  });
  lines.push(renderTable(['workload', 'engine', 'MB/s', 'IOPS', 'p50', 'p99', ratioHeader], cells, ['left', 'left', 'right', 'right', 'right', 'right', 'right']));
  lines.push('');
  lines.push('MB/s is 10^6 bytes/s. Each run is one pass over the region: sequential covers it once; random writes as many 4 KiB blocks,');
  lines.push(`uniform with replacement from a seeded generator (fio: --norandommap). O_DIRECT, io_uring for fio, no fsync in either.`);
  lines.push('Latency p50/p99 is fio\'s completion latency; the raw engines deliver a batch\'s completions together, so theirs is not observed (—).');
  if (report.fio === FIO_MISSING) lines.push(`${FIO_MISSING}: the ratios are to the raw io_uring engine.`);
  return lines.join('\n') + '\n';
}
