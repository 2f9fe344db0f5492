import { fragmentationSubject } from './fragmentation';
import { THRESHOLD_RUN_KIB, thresholdSubject } from './redirect-threshold';
import { randomReadSubject, sequentialReadSubject } from './cache-reads';
import { clientsSubject } from './concurrent-clients';
import { lmdbClientsSubject } from './lmdb-clients';
import { OFFERED_RATE, pacedVariantName, pacedWriterSubject, type PacedVariant } from './paced-writer';
import { NETWORK_VOLUME, SATA_SSD, type Slowness } from './slow-device';
import { commitsSubject, freshStreamSubject, randomCommitBytes, randomSubject, streamCommitBytes, streamSubject } from './cache-throughput';
import { fioCommittedSubject, fioMixedSubject, fioSubject, fioSyncSubject } from './fio';
import type { Goal } from './goals';
import { hotSetSubject } from './hot-set';
import { journalCommitPatternSubject, journalStreamPatternSubject } from './journal-pattern';
import { forkSubject, heapSubject, rewriteSubject } from './in-memory';
import { rawAwaitedSubject, rawEngineSubject, rawSyncSubject } from './raw-engine';
import { replaySubject } from './replay-time';
import type { Subject } from './subject';
import { RANDOM_READ, RANDOM_WRITE, SEQUENTIAL_READ, SEQUENTIAL_WRITE } from './workloads';

/**
 * What `blockfork bench` runs: comparisons, each a set of subjects doing the
 * same work on the same target, alternated within each repeat (bench.ts).
 * The cache's jobs sit beside the raw engines and fio doing the same bytes,
 * with the goals that issues 3 (cache), 4 (journal) and 12 (the read path)
 * set for them. The write rows' goals are against fio with the same fsync
 * cadence (FSYNCED), the like-for-like reference: the cache makes each
 * commit durable, plain fio does not; the plain fio row stays as the
 * device's ceiling.
 */
const FSYNCED = 'fio, fsync per commit';

export interface Entry {
  readonly subject: Subject;
  readonly goals: readonly Goal[];
  /** Which repeat is the median: by rate (the default), by p99 latency, or by the measured value. */
  readonly rankBy: 'rate' | 'p99' | 'value';
}

export interface Comparison {
  /** Stable key in the JSON. */
  readonly id: string;
  /** What the table calls it. */
  readonly title: string;
  readonly entries: readonly Entry[];
}

export interface BenchScale {
  /** Seconds of each time-based job (awaited commits, hot set). */
  readonly seconds: number;
  /** `tx.write` calls of the rewrite job. */
  readonly rewrites: number;
  /** Pages forked by the fork job. */
  readonly forkPages: number;
  /** Pages read into the cache by the heap job. */
  readonly heapPages: number;
}

export const FULL_SCALE: BenchScale = { seconds: 3, rewrites: 2_000_000, forkPages: 16384, heapPages: 65536 };
export const QUICK_SCALE: BenchScale = { seconds: 0.75, rewrites: 200_000, forkPages: 4096, heapPages: 8192 };

function entry(subject: Subject, goals: readonly Goal[] = [], rankBy: Entry['rankBy'] = 'rate'): Entry {
  return { subject, goals, rankBy };
}

const FLOOR: PacedVariant = { fork: true, committers: 0 };

/**
 * The paced writer on a slow device (issue 10): with 4 committers the writer
 * keeps its offered rate and fork's p99.9 stays within 2× of the floor (no
 * commits); stable pages' p99 is at least 10× fork's. Latency from each
 * update's scheduled instant.
 */
function slowDevice(slowness: Slowness, id: string, seconds: number): Comparison {
  const variants: PacedVariant[] = [
    { fork: true, committers: 1 },
    { fork: false, committers: 1 },
    { fork: true, committers: 4 },
    { fork: false, committers: 4 },
    FLOOR,
  ];
  return {
    id,
    title: `paced writer, ${slowness.name}`,
    entries: variants.map((variant) => {
      const goals: Goal[] = [];
      if (variant.fork && variant.committers > 0) {
        goals.push({ kind: 'p99-below', subject: pacedVariantName({ fork: false, committers: variant.committers }), times: 10 });
      }
      if (variant.fork && variant.committers === 4) {
        goals.push({ kind: 'rate', atLeast: 0.99 * OFFERED_RATE }, { kind: 'p999-within', subject: pacedVariantName(FLOOR), times: 2 });
      }
      return entry(pacedWriterSubject(slowness, variant, seconds), goals, 'p99');
    }),
  };
}

/** Concurrent clients, each a change and its awaited commit (issue 10): at 64, ≥ 10× fio's durable writes and ahead of lmdb. */
function clients(fio: string | undefined, count: number, seconds: number): Comparison {
  const goals: Goal[] = count === 64 ? [{ kind: 'vs-fio', atLeast: 10 }, { kind: 'ops-vs-row', subject: 'lmdb', atLeast: 1 }] : [];
  return {
    id: `clients-${count}`,
    title: `${count} client${count === 1 ? '' : 's'}, change + awaited commit`,
    entries: [
      entry(fioSyncSubject(fio, seconds)),
      entry(clientsSubject('ordered', count, seconds), goals),
      entry(clientsSubject('journal', count, seconds), goals),
      entry(lmdbClientsSubject(count, seconds)),
    ],
  };
}

export function comparisons(fio: string | undefined, scale: BenchScale): Comparison[] {
  const { seconds } = scale;
  return [
    {
      id: 'sequential',
      title: 'sequential write',
      entries: [
        entry(fioSubject(fio, SEQUENTIAL_WRITE)),
        entry(fioCommittedSubject(fio, SEQUENTIAL_WRITE, streamCommitBytes)),
        entry(fioMixedSubject(fio, SEQUENTIAL_WRITE)),
        entry(rawEngineSubject('io_uring', SEQUENTIAL_WRITE)),
        entry(rawEngineSubject('threads', SEQUENTIAL_WRITE)),
        entry(streamSubject('ordered'), [{ kind: 'vs-row', subject: FSYNCED, atLeast: 0.9 }]),
        // Each block read first (readahead serves the misses): the device reads as much as it writes,
        // so its reference is fio doing both at once.
        entry(streamSubject('ordered', 'write'), [{ kind: 'vs-row', subject: 'fio, read + write', atLeast: 0.8 }]),
        // The same over blocks never written (a new sparse file): each miss is a hole, read as zeros without I/O.
        entry(freshStreamSubject('overwrite')),
        entry(freshStreamSubject('write'), [{ kind: 'vs-row', subject: 'cache, ordered, tx.overwrite, fresh blocks', atLeast: 0.8 }]),
        entry(streamSubject('ordered', 'overwriteRange'), [{ kind: 'vs-row', subject: FSYNCED, atLeast: 0.9 }]),
        // Every block is written twice, to the log and home (issue 4).
        entry(streamSubject('journal'), [{ kind: 'vs-row', subject: FSYNCED, atLeast: 0.45 }]),
        // Version 2: long runs written once, redirected through the block map (issue 14).
        entry(streamSubject('journal-v2'), [{ kind: 'vs-row', subject: 'cache, ordered', atLeast: 0.9 }]),
        entry(journalStreamPatternSubject()),
      ],
    },
    {
      id: 'random',
      title: 'random 4 KiB write',
      entries: [
        entry(fioSubject(fio, RANDOM_WRITE)),
        entry(fioCommittedSubject(fio, RANDOM_WRITE, randomCommitBytes)),
        entry(rawEngineSubject('io_uring', RANDOM_WRITE)),
        entry(rawEngineSubject('threads', RANDOM_WRITE)),
        entry(randomSubject('ordered'), [{ kind: 'vs-row', subject: FSYNCED, atLeast: 0.9 }]),
        entry(randomSubject('journal')),
        entry(randomSubject('journal-v2')),
      ],
    },
    {
      id: 'sequential-read',
      title: 'sequential read',
      entries: [
        entry(fioSubject(fio, SEQUENTIAL_READ)),
        entry(sequentialReadSubject(1), [{ kind: 'vs-fio', atLeast: 0.8 }]),
        entry(sequentialReadSubject(32), [{ kind: 'vs-fio', atLeast: 0.9 }]),
      ],
    },
    {
      id: 'fragmentation',
      title: 'sequential read after random 128 KiB rewrites',
      // No target: the known cost of redirect-on-write, stated as measured.
      entries: [entry(fragmentationSubject('ordered')), entry(fragmentationSubject('journal-v2'))],
    },
    {
      id: 'redirect-threshold',
      title: 'random runs on version 2, redirected or logged (redirectMin)',
      // No target: what the threshold trades (write rate, and a later sequential read in the notes).
      entries: THRESHOLD_RUN_KIB.flatMap((kib) => [entry(thresholdSubject(kib << 10, true)), entry(thresholdSubject(kib << 10, false))]),
    },
    {
      id: 'random-read',
      title: 'random 4 KiB read',
      // The raw engine's rows bound the cache's: batched (the device's rate from one JS thread), and awaited one at a
      // time from 32 loops, as the cache's readers and their misses drive it.
      entries: [
        entry(fioSubject(fio, RANDOM_READ)),
        entry(rawEngineSubject('io_uring', RANDOM_READ)),
        entry(rawAwaitedSubject('io_uring', RANDOM_READ)),
        entry(randomReadSubject(), [{ kind: 'vs-fio', atLeast: 0.9 }]),
      ],
    },
    {
      id: 'commits',
      title: 'awaited 4 KiB commits',
      entries: [
        entry(fioSyncSubject(fio, seconds)),
        entry(rawSyncSubject('io_uring', seconds)),
        entry(commitsSubject('ordered', seconds), [{ kind: 'vs-fio', atLeast: 0.8 }]),
        entry(commitsSubject('journal', seconds), [{ kind: 'vs-fio', atLeast: 0.8 }]),
        entry(commitsSubject('journal-v2', seconds), [{ kind: 'ops-vs-row', subject: 'cache, journal', atLeast: 1 }]),
        entry(journalCommitPatternSubject(seconds)),
      ],
    },
    {
      id: 'hot-set',
      title: 'hot set, back-to-back commits',
      // No targets: a closed loop's percentiles count a stall once however many writes it
      // holds up; the paced writer below, timed from scheduled instants, carries G2's targets.
      entries: (['fork', 'stable', 'idle', 'journal-fork', 'journal-stable'] as const).map((v) => entry(hotSetSubject(v, seconds), [], 'p99')),
    },
    slowDevice(SATA_SSD, 'slow-sata', seconds),
    slowDevice(NETWORK_VOLUME, 'slow-network', seconds),
    clients(fio, 1, seconds),
    clients(fio, 8, seconds),
    clients(fio, 64, seconds),
    {
      id: 'replay',
      title: 'journal replay',
      entries: [entry(replaySubject())],
    },
    {
      id: 'memory',
      title: 'in memory',
      entries: [
        entry(rewriteSubject(scale.rewrites), [{ kind: 'rate', atLeast: 2e6 }]),
        entry(forkSubject(scale.forkPages), [{ kind: 'rate', atLeast: 5e5 }]),
        entry(heapSubject(scale.heapPages), [{ kind: 'value', atMost: 256, unit: 'B/page' }], 'value'),
      ],
    },
  ];
}
