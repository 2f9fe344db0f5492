import { execFile, spawnSync } from 'node:child_process';
import { BenchError } from './bench-error';
import type { Measurement, Subject, Target } from './subject';
import { RANDOM_WRITE, type Workload } from './workloads';

/**
 * fio, the reference every block benchmark is read against: run with the same
 * engine (io_uring), O_DIRECT, block size, queue depth and amount of work as
 * our own pass, on the same target, and read from its JSON output.
 */
export const FIO_MISSING = 'fio missing (apt-get install fio)';

/** `fio-3.33`, or undefined when fio is not on PATH. */
export function fioVersion(): string | undefined {
  const result = spawnSync('fio', ['--version'], { encoding: 'utf8' });
  if (result.error || result.status !== 0) return undefined;
  return result.stdout.trim();
}

export function fioSubject(version: string | undefined, workload: Workload): Subject {
  return {
    name: 'fio',
    unavailable: version === undefined ? FIO_MISSING : undefined,
    run: (target) => runFio(workload.id, fioArguments(workload, target), workload.op),
  };
}

/**
 * fio doing the same pass with an fsync after each `commitBytes(region)`
 * bytes, as the cache's commits flush: it tells how much of the distance
 * to plain fio is the price of durability rather than the cache's.
 */
export function fioCommittedSubject(version: string | undefined, workload: Workload, commitBytes: (region: number) => number): Subject {
  return {
    name: 'fio, fsync per commit',
    unavailable: version === undefined ? FIO_MISSING : undefined,
    run: (target) =>
      runFio(workload.id, [...fioArguments(workload, target), `--fsync=${Math.max(1, Math.floor(commitBytes(target.region) / workload.blockSize))}`]),
  };
}

/**
 * fio reading and writing the region at once, half and half (--rw=rw,
 * sequential, the workload's block size and depth), until it has written
 * the region once: what the device gives a stream that reads every block it
 * writes, as `tx.write` over blocks that hold data does. Its write side is
 * reported.
 */
export function fioMixedSubject(version: string | undefined, workload: Workload): Subject {
  const job = `${workload.id}-mixed`;
  return {
    name: 'fio, read + write',
    unavailable: version === undefined ? FIO_MISSING : undefined,
    run: (target) =>
      runFio(job, [
        ...commonArguments(job, target),
        '--rw=rw',
        '--rwmixread=50',
        `--io_size=${2 * target.region}`,
        `--bs=${workload.blockSize}`,
        `--iodepth=${workload.queueDepth}`,
      ]),
  };
}

/** fio's awaited small writes, the reference for one-block commits: see fioSyncArguments. */
export function fioSyncSubject(version: string | undefined, seconds: number): Subject {
  return {
    name: 'fio',
    unavailable: version === undefined ? FIO_MISSING : undefined,
    // Its clat is the write alone, without the fsync that follows: not comparable with a commit's latency.
    run: async (target) => ({ ...(await runFio(SYNC_JOB, fioSyncArguments(target, seconds))), latency: undefined }),
  };
}

/**
 * The job, as the command line would say it. It is a fixed amount of work
 * (--size: one pass over the region, as our pass), not a fixed time. Random
 * offsets are drawn with replacement (--norandommap), as ours are; a seed
 * makes them repeatable, though fio's generator is not ours.
 */
export function fioArguments(workload: Workload, target: Target): string[] {
  const args = [
    ...commonArguments(workload.id, target),
    `--rw=${workload.pattern === 'sequential' ? workload.op : `rand${workload.op}`}`,
    `--bs=${workload.blockSize}`,
    `--iodepth=${workload.queueDepth}`,
  ];
  if (workload.pattern === 'random') args.push('--norandommap', `--randseed=${target.seed}`);
  return args;
}

const SYNC_JOB = 'rand-write-4k-qd1-fsync';

/**
 * One 4 KiB write at a random offset, then fsync, one at a time, for
 * `seconds` (time-based: a device that syncs slowly would take hours over a
 * whole region). fsync, not fdatasync, as the issue states the reference;
 * on a file whose blocks are allocated they differ by the inode's mtime.
 */
export function fioSyncArguments(target: Target, seconds: number): string[] {
  return [
    ...commonArguments(SYNC_JOB, target),
    '--rw=randwrite',
    `--bs=${RANDOM_WRITE.blockSize}`,
    '--iodepth=1',
    '--fsync=1',
    '--time_based',
    `--runtime=${Math.round(seconds * 1000)}ms`,
    '--norandommap',
    `--randseed=${target.seed}`,
  ];
}

/** Every job: the target's region, O_DIRECT through io_uring (as our engine), JSON out. */
function commonArguments(name: string, target: Target): string[] {
  return [
    `--name=${name}`,
    // fio splits --filename on ':'; a path holding one must escape it.
    `--filename=${target.path.replace(/:/g, '\\:')}`,
    '--allow_file_create=0',
    `--size=${target.region}`,
    '--offset=0',
    '--ioengine=io_uring',
    '--direct=1',
    '--output-format=json',
    '--eta=never',
  ];
}

async function runFio(job: string, args: string[], side: 'write' | 'read' = 'write'): Promise<Measurement> {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile('fio', args, { encoding: 'utf8', maxBuffer: 64 << 20 }, (error, out, err) => {
      if (error) {
        const last = err.trim().split('\n').pop() ?? '';
        reject(new BenchError(`fio ${job} failed (exit ${String(error.code)})${last ? `: ${last}` : ''}`));
      } else {
        resolve(out);
      }
    });
  });
  return parseFioJson(stdout, side);
}

interface FioSide {
  bw_bytes?: number;
  iops?: number;
  clat_ns?: { max?: number; N?: number; percentile?: Record<string, number> };
}

interface FioJob {
  error?: number;
  write?: FioSide;
  read?: FioSide;
}

/** Reads one side (write, or read) of fio's single job. fio may print notes before its JSON. */
export function parseFioJson(text: string, side: 'write' | 'read' = 'write'): Measurement {
  const start = text.indexOf('{');
  let report: { jobs?: FioJob[] };
  try {
    report = JSON.parse(start >= 0 ? text.slice(start) : text) as { jobs?: FioJob[] };
  } catch (error) {
    throw new BenchError('fio printed no JSON report', { cause: error });
  }
  const job = report.jobs?.[0];
  const results = job?.[side];
  if (!results || typeof results.bw_bytes !== 'number' || typeof results.iops !== 'number') {
    throw new BenchError(`fio's JSON report has no ${side} results`);
  }
  if (job?.error) throw new BenchError(`fio reported error ${job.error}`);
  const clat = results.clat_ns;
  const p50 = clat?.percentile?.['50.000000'];
  const p99 = clat?.percentile?.['99.000000'];
  const max = clat?.max;
  const measured = typeof p50 === 'number' && typeof p99 === 'number' && typeof max === 'number';
  return {
    bytesPerSecond: results.bw_bytes,
    opsPerSecond: results.iops,
    latency: measured ? { count: clat?.N ?? 0, p50Us: p50 / 1e3, p99Us: p99 / 1e3, maxUs: max / 1e3 } : undefined,
  };
}
