/**
 * The kv store against lmdb: puts per second with durable commits of 1, 100
 * and 10,000 puts each; then 1, 8 and 64 concurrent clients, each putting
 * one key and awaiting its own durable flush, as a server's requests do.
 *
 *   npm run bench:kv                 # full: each measurement lasts >= 2 s
 *   npm run bench:kv -- --quick      # a fast run, to see that it works
 *   npm run bench:kv -- --dir /data  # where the two files go (a disk, not tmpfs)
 *   npm run bench:kv -- --json       # the results as JSON on stdout
 *   npm run bench:kv -- --no-journal # the kv store in ordered mode (not atomic across crashes)
 *
 * Both stores get the same workload: 16-byte keys drawn at random (one seeded
 * sequence) from a fixed set of keys, 100-byte values, every key put once
 * beforehand (not timed) so that the timed puts are overwrites in a store of
 * steady size. A commit is durable when it returns:
 *
 * - blockfork kv: `await kv.put(...)` for each put, then `await kv.flush()`
 *   (= `vol.commit()`: O_DIRECT writes, then fdatasync; with the journal, the
 *   log first).
 * - lmdb, default settings (sync on commit, overlappingSync as on Linux):
 *   `await db.transaction(() => { db.put(...) ... })`, which commits the puts
 *   as one transaction, then `await db.flushed`, which resolves once that
 *   commit is synced to disk. Without `flushed` lmdb's promise resolves when
 *   the commit is visible, before it is durable.
 *
 * For each batch size both stores do the same number of puts: enough for the
 * faster one to take about 2.5 s (measured by a short calibration run of
 * each), so the slower one takes longer.
 *
 * Concurrent clients: each loops `await put(key); await <durable flush>` for
 * the same time in both stores: `kv.flush()` (commits asked for while deltas
 * are in flight group into one delta), and lmdb's `await db.put()` then
 * `await db.flushed` (lmdb-js batches the puts that arrive during a commit
 * into its next transaction). Counted: acknowledged puts per second.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { open as openLmdb, type RootDatabase } from 'lmdb';
import { Kv } from './kv';

const KEY_BYTES = 16;
const VALUE_BYTES = 100;
const BATCHES = [1, 100, 10_000];
const CLIENTS = [1, 8, 64];
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;
const MiB = 1 << 20;

interface Settings {
  quick: boolean;
  json: boolean;
  journal: boolean;
  dir: string | undefined;
  keys: number;
  /** Seconds the faster store should take per batch size. */
  target: number;
  /** Seconds of each calibration run. */
  calibrate: number;
}

export interface Measured {
  puts: number;
  commits: number;
  seconds: number;
  putsPerSecond: number;
}

export interface Row {
  batch: number;
  /** Deltas the kv store's volume started by itself, past its high-water mark, splitting batches (0: each commit was one delta). */
  blockforkAutoDeltas: number;
  blockfork: Measured;
  lmdb: Measured;
  /** blockfork puts/s over lmdb puts/s. */
  ratio: number;
}

export interface ClientsRow {
  clients: number;
  blockfork: Measured;
  lmdb: Measured;
  /** blockfork puts/s over lmdb puts/s. */
  ratio: number;
}

export interface Report {
  quick: boolean;
  dir: string;
  keys: number;
  keyBytes: number;
  valueBytes: number;
  journal: boolean;
  blockforkMethod: string;
  lmdbMethod: string;
  /** os.loadavg() at the end: other work on the machine skews the numbers. */
  loadAverage: number[];
  rows: Row[];
  clientRows: ClientsRow[];
}

/** Where the puts' keys and values come from. */
interface Source {
  nextKey(): Buffer;
  nextValue(): Buffer;
}

/** One store under test: `commit(n, source)` puts n keys and values from `source` and resolves once they are durable. */
interface Subject {
  commit(puts: number, source: Source): Promise<void>;
  /** One put and its own durable flush, as one client of many does it. */
  putDurably(key: Buffer, value: Buffer): Promise<void>;
  /** Deltas the store started by itself so far (a batch split in several): blockfork only. */
  autoTransitions?(): number;
  close(): Promise<void>;
}

function usage(message: string): never {
  process.stderr.write(`bench-kv: ${message}\nusage: bench.ts [--quick] [--json] [--no-journal] [--dir DIR]\n`);
  process.exit(2);
}

function parse(argv: readonly string[]): Settings {
  const settings: Settings = { quick: false, json: false, journal: true, dir: undefined, keys: 100_000, target: 2.5, calibrate: 0.4 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--quick') settings.quick = true;
    else if (arg === '--json') settings.json = true;
    else if (arg === '--no-journal') settings.journal = false;
    else if (arg === '--dir') settings.dir = argv[++i] ?? usage('--dir needs a directory');
    else usage(`unknown argument ${arg}`);
  }
  if (settings.quick) Object.assign(settings, { keys: 2_000, target: 0.15, calibrate: 0.05 });
  return settings;
}

/** A directory on a disk file system: tmpfs would measure memory, not durable commits. */
function benchDirectory(wanted: string | undefined): string {
  const candidates = wanted !== undefined ? [wanted] : [process.env.TMPDIR, '/var/tmp', os.tmpdir(), process.cwd()];
  const refused: string[] = [];
  for (const dir of candidates) {
    if (dir === undefined || dir === '') continue;
    try {
      const type = fs.statfsSync(dir).type;
      if (type === TMPFS_MAGIC || type === RAMFS_MAGIC) {
        refused.push(`${dir}: a memory file system`);
        continue;
      }
      return fs.mkdtempSync(path.join(dir, 'blockfork-kv-bench-'));
    } catch (error) {
      refused.push(`${dir}: ${(error as Error).message}`);
    }
  }
  throw new Error(`no directory for the bench files (${refused.join('; ')}); pass --dir on a disk`);
}

/** The workload: a fixed set of keys, a seeded random sequence over them, a few values. */
class Workload implements Source {
  readonly keys: Buffer[] = [];
  readonly values: Buffer[] = [];
  private state = 0x9e3779b9;
  private count = 0;

  constructor(keyCount: number) {
    for (let i = 0; i < keyCount; i++) this.keys.push(crypto.createHash('sha256').update(`key ${i}`).digest().subarray(0, KEY_BYTES));
    for (let i = 0; i < 64; i++) this.values.push(crypto.randomBytes(VALUE_BYTES));
  }

  /** Rewinds the sequence, so each store sees the same keys in the same order. */
  reset(): void {
    this.state = 0x9e3779b9;
    this.count = 0;
  }

  nextKey(): Buffer {
    let x = this.state; // xorshift32
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.state = x >>> 0;
    return this.keys[this.state % this.keys.length];
  }

  nextValue(): Buffer {
    return this.values[this.count++ & 63];
  }
}

async function blockforkSubject(file: string, work: Workload, journal: boolean): Promise<Subject> {
  const perBlock = Math.floor((4096 - 8) / (3 + KEY_BYTES + VALUE_BYTES));
  const tableBlocks = Math.ceil(work.keys.length / perBlock / 0.5); // half full once every key is in
  // Sparse. In journal mode the log takes an eighth of it, at most 64 MiB, and
  // a delta may fill at most half of the log before the volume splits it: 1 GiB
  // gives the full 64 MiB, room for the ~5,000 blocks a batch of 10,000 dirties.
  const size = Math.max(1024 * MiB, 8 * (tableBlocks + 1) * 4096);
  const kv = await Kv.open(file, { size, journal, tableBlocks });
  return {
    async commit(puts, source) {
      for (let i = 0; i < puts; i++) await kv.put(source.nextKey(), source.nextValue());
      await kv.flush();
    },
    async putDurably(key, value) {
      await kv.put(key, value);
      await kv.flush();
    },
    autoTransitions: () => kv.volume.stats().autoTransitions,
    close: () => kv.close(),
  };
}

async function lmdbSubject(file: string): Promise<Subject> {
  // Defaults but for the encodings: raw bytes in and out, as the kv store stores them.
  const db: RootDatabase<Buffer, Buffer> = openLmdb<Buffer, Buffer>({ path: file, encoding: 'binary', keyEncoding: 'binary' });
  return {
    async commit(puts, source) {
      await db.transaction(() => {
        for (let i = 0; i < puts; i++) void db.put(source.nextKey(), source.nextValue());
      });
      await db.flushed;
    },
    async putDurably(key, value) {
      await db.put(key, value);
      await db.flushed;
    },
    close: () => db.close(),
  };
}

/** Puts every key once, in large commits (not timed). */
async function prefill(subject: Subject, work: Workload): Promise<void> {
  const keys = work.keys.length;
  let i = 0;
  const inOrder: Source = { nextKey: () => work.keys[i++], nextValue: () => work.nextValue() };
  while (i < keys) await subject.commit(Math.min(10_000, keys - i), inOrder);
}

/** Commits of `batch` puts for `seconds`; the rate. */
async function calibrate(subject: Subject, work: Workload, batch: number, seconds: number): Promise<number> {
  const start = process.hrtime.bigint();
  let puts = 0;
  let elapsed = 0;
  do {
    await subject.commit(batch, work);
    puts += batch;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  } while (elapsed < seconds);
  return puts / elapsed;
}

async function measure(subject: Subject, work: Workload, batch: number, commits: number): Promise<Measured> {
  work.reset();
  const start = process.hrtime.bigint();
  for (let c = 0; c < commits; c++) await subject.commit(batch, work);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const puts = batch * commits;
  return { puts, commits, seconds, putsPerSecond: puts / seconds };
}

/** `clients` loops of one put and its durable flush each, for `seconds`; acknowledged puts. */
async function measureClients(subject: Subject, work: Workload, clients: number, seconds: number): Promise<Measured> {
  work.reset();
  const start = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - start) / 1e9;
  let puts = 0;
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (elapsed() < seconds) {
        await subject.putDurably(work.nextKey(), work.nextValue());
        puts++;
      }
    }),
  );
  const total = elapsed();
  return { puts, commits: puts, seconds: total, putsPerSecond: puts / total };
}

export async function runBench(settings: Settings): Promise<Report> {
  const dir = benchDirectory(settings.dir);
  const work = new Workload(settings.keys);
  const subjects: Subject[] = [];
  try {
    let journal = settings.journal;
    let blockfork: Subject;
    try {
      blockfork = await blockforkSubject(path.join(dir, 'kv.img'), work, journal);
    } catch (error) {
      if ((error as { code?: string }).code !== 'ERR_NOT_SUPPORTED' || !journal) throw error;
      process.stderr.write('bench-kv: this build of blockfork has no journal yet; the kv store runs with journal: false\n');
      journal = false;
      fs.rmSync(path.join(dir, 'kv.img'), { force: true });
      blockfork = await blockforkSubject(path.join(dir, 'kv.img'), work, journal);
    }
    subjects.push(blockfork);
    const lmdb = await lmdbSubject(path.join(dir, 'lmdb.mdb'));
    subjects.push(lmdb);
    await prefill(blockfork, work);
    await prefill(lmdb, work);

    const rows: Row[] = [];
    for (const batch of BATCHES) {
      const rate = Math.max(
        await calibrate(blockfork, work, batch, settings.calibrate),
        await calibrate(lmdb, work, batch, settings.calibrate),
      );
      const commits = Math.max(2, Math.ceil((rate * settings.target) / batch));
      const autoBefore = blockfork.autoTransitions?.() ?? 0;
      const b = await measure(blockfork, work, batch, commits);
      const blockforkAutoDeltas = (blockfork.autoTransitions?.() ?? 0) - autoBefore;
      const l = await measure(lmdb, work, batch, commits);
      rows.push({ batch, blockforkAutoDeltas, blockfork: b, lmdb: l, ratio: b.putsPerSecond / l.putsPerSecond });
      if (!settings.json) process.stderr.write(`bench-kv: batch ${batch} done\n`);
    }
    const clientRows: ClientsRow[] = [];
    for (const clients of CLIENTS) {
      const b = await measureClients(blockfork, work, clients, settings.target);
      const l = await measureClients(lmdb, work, clients, settings.target);
      clientRows.push({ clients, blockfork: b, lmdb: l, ratio: b.putsPerSecond / l.putsPerSecond });
      if (!settings.json) process.stderr.write(`bench-kv: ${clients} clients done\n`);
    }
    return {
      quick: settings.quick,
      dir,
      keys: settings.keys,
      keyBytes: KEY_BYTES,
      valueBytes: VALUE_BYTES,
      journal,
      blockforkMethod: `Kv (journal: ${journal}, O_DIRECT): await kv.put() per put, then await kv.flush()`,
      lmdbMethod: 'lmdb defaults (sync on commit, overlappingSync): await db.transaction(() => puts), then await db.flushed',
      loadAverage: os.loadavg(),
      rows,
      clientRows,
    };
  } finally {
    for (const subject of subjects) await subject.close().catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function format(report: Report): string {
  const n = (x: number) => Math.round(x).toLocaleString('en-US');
  const header = ['batch', 'puts', 'blockfork puts/s', 'lmdb puts/s', 'ratio (bf/lmdb)'];
  const body = report.rows.map((r) => [n(r.batch), n(r.blockfork.puts), n(r.blockfork.putsPerSecond), n(r.lmdb.putsPerSecond), r.ratio.toFixed(2)]);
  const clientHeader = ['clients', 'puts', 'blockfork puts/s', 'lmdb puts/s', 'ratio (bf/lmdb)'];
  const clientBody = report.clientRows.map((r) => [n(r.clients), n(r.blockfork.puts), n(r.blockfork.putsPerSecond), n(r.lmdb.putsPerSecond), r.ratio.toFixed(2)]);
  const widths = header.map((h, i) => Math.max(h.length, ...[...body, ...clientBody].map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join('  ');
  return [
    `kv bench${report.quick ? ' (quick)' : ''}: ${report.keyBytes}-byte keys, ${report.valueBytes}-byte values, ${n(report.keys)} keys put once beforehand, random overwrites; files in ${path.dirname(report.dir)}`,
    `blockfork: ${report.blockforkMethod}`,
    `lmdb:      ${report.lmdbMethod}`,
    `load average at the end: ${report.loadAverage.map((x) => x.toFixed(2)).join(' ')} (${os.cpus().length} CPUs)`,
    '',
    line(header),
    ...body.map(line),
    ...report.rows.filter((r) => r.blockforkAutoDeltas > 0).map((r) => `note: at batch ${r.batch}, the kv store's volume started ${r.blockforkAutoDeltas} deltas by itself (batches split past its high-water mark)`),
    '',
    'concurrent clients, each: await put(); await durable flush (kv.flush() / db.flushed)',
    line(clientHeader),
    ...clientBody.map(line),
    '',
  ].join('\n');
}

async function main(): Promise<void> {
  const settings = parse(process.argv.slice(2));
  const report = await runBench(settings);
  process.stdout.write(settings.json ? `${JSON.stringify(report, null, 2)}\n` : format(report));
}

if (require.main === module) {
  main().catch((error: unknown) => {
    process.stderr.write(`bench-kv: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  });
}
