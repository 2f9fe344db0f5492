import type { BenchReport } from './run';
import { FIO_MISSING } from './fio';
import { formatCount, type Check } from './goals';
import type { Row } from './results';
import { renderTable } from './table';
import { formatBytes } from './units';

/**
 * The bench's report as people read it on a terminal: one table, a row per
 * subject, the goals of the cache and journal issues beside the ratios they
 * judge, then the notes that say how each job is measured.
 */
export function renderBench(report: BenchReport): string {
  const { target, machine } = report;
  const where = target.kind === 'scratch image' ? `scratch image ${target.path} on ${target.fileSystem}` : `${target.kind} ${target.path}`;
  const lines = [
    `blockfork bench: ${where}, ${formatBytes(target.bytes)} prefilled; median of ${report.repeats} run${report.repeats === 1 ? '' : 's'}`,
    `machine: ${machine.cpus} × ${machine.cpu}, Linux ${machine.kernel}, Node ${machine.node}, ${report.fio}; ` +
      `load average ${machine.loadAverage.map((l) => l.toFixed(2)).join(' before, ')} after`,
    '',
  ];
  let previous = '';
  const cells = report.results.map((row) => {
    const title = row.title === previous ? '' : row.title;
    previous = row.title;
    if (row.runs.length === 0) return [title, row.subject, row.note ?? 'not run'];
    return [
      title,
      row.subject,
      row.mbPerSecond === null ? '—' : formatRate(row.mbPerSecond),
      row.opsPerSecond === null ? '—' : formatCount(row.opsPerSecond),
      formatLatency(row.latency?.p50Us),
      formatLatency(row.latency?.p99Us),
      formatLatency(row.latency?.maxUs),
      formatRatio(row.vsFio),
      formatRatio(row.vsRaw),
      row.goals.map(formatCheck).join('; '),
    ];
  });
  lines.push(
    renderTable(
      ['workload', 'subject', 'MB/s', 'ops/s', 'p50', 'p99', 'max', 'vs fio', 'vs raw', 'target'],
      cells,
      ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'left'],
    ),
  );
  const notes = report.results.filter((row) => row.runs.length > 0 && row.note !== undefined);
  if (notes.length > 0) {
    lines.push('', 'notes:');
    for (const row of notes) lines.push(`  ${row.title}, ${row.subject}: ${row.note}`);
  }
  lines.push('', ...HOW);
  if (report.fio === FIO_MISSING) lines.push(`${FIO_MISSING}: no ratios to fio.`);
  return lines.join('\n') + '\n';
}

/** How each job is measured, under the table. */
const HOW = [
  'MB/s is 10^6 bytes/s; ops/s counts requests (fio, raw engines), 4 KiB blocks, commits, tx.write calls or forks. vs raw: against io_uring.',
  'sequential, random: one pass over the region (random: as many 4 KiB blocks, uniform with replacement, the same seeded offsets',
  '  for the raw engines and the cache; fio --norandommap). fio and the raw engines write 1 MiB at QD 8 and 4 KiB at QD 32, no fsync.',
  '  The cache writes 4 KiB blocks with tx.overwrite, 256 per change, commits every 64 MiB (sequential, a quarter of smaller regions)',
  '  or 16 MiB (random, a sixteenth) without awaiting each, the clock stopping when the last is durable; its writeout coalesces',
  '  sequential blocks into 1 MiB writes at queue depth 8 (as fio\'s), random ones go out at queue depth 32. A journaled volume',
  '  holds less than the region (its log, map and reserve): it writes the region\'s worth all the same, its stream wrapping round.',
  'commits: one 4 KiB block per change, commit awaited, for a fixed time; fio: randwrite 4k QD 1 --fsync=1 (ops/s are its writes);',
  '  raw: a write then fdatasync, awaited. Latency is the change and its commit; fio\'s is not shown (its clat leaves out the fsync).',
  "the journal's writes: what journal mode asks of the device, on the raw engine with no cache: sequential, deltas of a quarter",
  '  of the log written to it and flushed, then home; commits, a 12 KiB RWF_DSYNC log write with the previous 4 KiB home write.',
  'hot set: 1024 blocks rewritten in order, 64 tx.write per change, while commit() is called again as soon as it resolves (fork,',
  '  fork: false; ordered, then journal) or never (no commits). Latency is each `await tx.write()`, from an HDR histogram.',
  'paced writer: a real device made slow (each write batch and flush completes late), one writer offered 5,000 one-block',
  '  changes a second on 16 hot blocks while 1 or 4 loops call commit() back to back (fork, fork: false) or none (the floor).',
  '  Latency from each update\'s scheduled instant (no coordinated omission); updates not done by the end count their wait to it.',
  'clients: N loops each change their own 4 KiB block and await their own commit(); fio: randwrite 4k QD 1 --fsync=1; lmdb:',
  '  N loops each await a 4 KiB put and db.flushed. ops/s are acknowledged durable updates; latency is each commit from its call.',
  'in memory: tx.write of a block already dirty in the open delta; forks while the previous delta is written (1 / the median',
  '  time of a forking tx.write); JS heap (process.memoryUsage().heapUsed, after a full gc) per clean page cached by vol.read.',
];

function formatRate(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toFixed(1);
}

function formatRatio(value: number | null): string {
  return value === null ? '—' : value.toFixed(2);
}

function formatLatency(us: number | undefined): string {
  if (us === undefined) return '—';
  if (us >= 1000) return `${(us / 1000).toFixed(2)} ms`;
  return us >= 10 ? `${us.toFixed(0)} µs` : `${us.toFixed(2)} µs`;
}

function formatCheck(check: Check): string {
  const verdict = check.met === null ? '—' : check.met ? 'met' : 'MISSED';
  if (check.actual === null) return `${check.goal}: ${verdict}`;
  const actual =
    check.kind === 'rate' ? formatCount(check.actual) : check.kind === 'vs-fio' ? check.actual.toFixed(2) : check.kind === 'value' ? check.actual.toFixed(0) : `${check.actual.toFixed(1)}×`;
  return `${check.goal}: ${actual} ${verdict}`;
}
