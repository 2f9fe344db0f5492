import * as os from 'node:os';
import { BenchError } from './bench-error';
import { comparisons, FULL_SCALE, QUICK_SCALE, type Entry } from './comparisons';
import { wipeSuperblocks } from './bench-volume';
import { fioVersion, FIO_MISSING } from './fio';
import { runRaw } from './raw-engine';
import { rowsOf, type Row, type Runs } from './results';
import { NotAvailable, type Measurement, type Target } from './subject';
import { formatBytes } from './units';
import { SEQUENTIAL_WRITE } from './workloads';

/**
 * One bench run: every comparison's subjects on one target, alternated
 * within each repeat (so that a drift of the device over time, such as a
 * thin-provisioned volume warming up or a host cache filling, hits all
 * subjects alike), and the median run of each reported.
 */
export const SEED = 0x5eed;

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

/** Where the run says what it does now; `done` counts steps finished. */
export interface Steps {
  show(done: number, step: string): void;
  stop(): void;
}

/** `only`: the ids of the comparisons to run (all when undefined). */
export async function runBench(
  info: TargetInfo,
  region: number,
  quick: boolean,
  only: readonly string[] | undefined,
  startSteps: (total: number) => Steps,
): Promise<BenchReport> {
  const repeats = quick ? 1 : 3;
  const target: Target = { path: info.path, region, seed: SEED };
  const fio = fioVersion();
  const all = comparisons(fio, quick ? QUICK_SCALE : FULL_SCALE);
  const unknown = only?.filter((id) => !all.some((c) => c.id === id)) ?? [];
  if (unknown.length > 0) throw new BenchError(`no comparison ${unknown.join(', ')}: the comparisons are ${all.map((c) => c.id).join(', ')}`);
  const plan = only === undefined ? all : all.filter((c) => only.includes(c.id));
  const runs = new Map<Entry, { measurements: Measurement[]; unavailable?: string }>();
  for (const comparison of plan) {
    for (const entry of comparison.entries) runs.set(entry, { measurements: [], unavailable: entry.subject.unavailable });
  }
  const steps = plan.reduce((n, c) => n + c.entries.filter((e) => e.subject.unavailable === undefined).length, 0);
  process.stderr.write(
    `blockfork bench: prefilling ${formatBytes(region)} of ${target.path} with sequential 1 MiB writes, so that every run overwrites allocated blocks, not holes\n`,
  );
  // Started after the last message: a line written under a live bar garbles both.
  const progress = startSteps(1 + repeats * steps);
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
  }

  return {
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
