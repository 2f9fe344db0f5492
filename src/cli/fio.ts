import { execFile, spawnSync } from 'node:child_process';
import { CliError } from './failure';
import type { Measurement, Subject, Target } from './subject';
import type { Workload } from './workloads';

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

export function fioSubject(version: string | undefined): Subject {
  return { name: 'fio', unavailable: version === undefined ? FIO_MISSING : undefined, run: runFio };
}

/**
 * The job, as the command line would say it. It is a fixed amount of work
 * (--size: one pass over the region, as our pass), not a fixed time. Random
 * offsets are drawn with replacement (--norandommap), as ours are; a seed
 * makes them repeatable, though fio's generator is not ours.
 */
export function fioArguments(workload: Workload, target: Target): string[] {
  const args = [
    `--name=${workload.id}`,
    // fio splits --filename on ':'; a path holding one must escape it.
    `--filename=${target.path.replace(/:/g, '\\:')}`,
    '--allow_file_create=0',
    `--size=${target.region}`,
    '--offset=0',
    '--ioengine=io_uring',
    '--direct=1',
    `--rw=${workload.pattern === 'sequential' ? 'write' : 'randwrite'}`,
    `--bs=${workload.blockSize}`,
    `--iodepth=${workload.queueDepth}`,
    '--output-format=json',
    '--eta=never',
  ];
  if (workload.pattern === 'random') args.push('--norandommap', `--randseed=${target.seed}`);
  return args;
}

async function runFio(workload: Workload, target: Target): Promise<Measurement> {
  const args = fioArguments(workload, target);
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile('fio', args, { encoding: 'utf8', maxBuffer: 64 << 20 }, (error, out, err) => {
      if (error) {
        const last = err.trim().split('\n').pop() ?? '';
        reject(new CliError(`fio ${workload.id} failed (exit ${String(error.code)})${last ? `: ${last}` : ''}`));
      } else {
        resolve(out);
      }
    });
  });
  return parseFioJson(stdout);
}

interface FioJob {
  error?: number;
  write?: {
    bw_bytes?: number;
    iops?: number;
    clat_ns?: { percentile?: Record<string, number> };
  };
}

/** Reads the write side of fio's single job. fio may print notes before its JSON. */
export function parseFioJson(text: string): Measurement {
  const start = text.indexOf('{');
  let report: { jobs?: FioJob[] };
  try {
    report = JSON.parse(start >= 0 ? text.slice(start) : text) as { jobs?: FioJob[] };
  } catch (error) {
    throw new CliError('fio printed no JSON report', { cause: error });
  }
  const job = report.jobs?.[0];
  if (!job?.write || typeof job.write.bw_bytes !== 'number' || typeof job.write.iops !== 'number') {
    throw new CliError('fio\'s JSON report has no write results');
  }
  if (job.error) throw new CliError(`fio reported error ${job.error}`);
  const percentiles = job.write.clat_ns?.percentile;
  const p50 = percentiles?.['50.000000'];
  const p99 = percentiles?.['99.000000'];
  return {
    bytesPerSecond: job.write.bw_bytes,
    iops: job.write.iops,
    latency: typeof p50 === 'number' && typeof p99 === 'number' ? { p50Ns: p50, p99Ns: p99 } : undefined,
  };
}
