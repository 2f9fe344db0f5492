import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { clientLoops } from './client-loops';
import { noiseBlock } from './bench-volume';
import { LatencyRecorder } from './latency';
import type { Measurement, Subject, Target } from './subject';

/** The part of lmdb-js the bench uses (lmdb is a development dependency: a user's install may lack it). */
interface LmdbStore {
  put(key: number, value: Buffer): Promise<boolean>;
  /** Settles once every commit so far is synced to disk (a put's own promise settles when it is visible). */
  readonly flushed: Promise<boolean>;
  close(): Promise<void>;
}
type OpenLmdb = (options: { path: string; keyEncoding: 'uint32'; encoding: 'binary' }) => LmdbStore;

function loadLmdb(): OpenLmdb | undefined {
  try {
    return (require('lmdb') as { open: OpenLmdb }).open;
  } catch {
    return undefined;
  }
}

/**
 * The same clients as concurrent-clients.ts on lmdb (lmdb-js, durable
 * commits: its default sync), beside the target: each client puts its own
 * 4 KiB value, awaits the put (committed, visible) and then `db.flushed`
 * (synced to disk: durable, as our commit is). lmdb-js batches the puts that
 * arrive while a commit is in progress into its next transaction: its own
 * group commit, the one to beat.
 */
export function lmdbClientsSubject(clients: number, seconds: number): Subject {
  const open = loadLmdb();
  return {
    name: 'lmdb',
    unavailable: open === undefined ? 'lmdb not installed (a development dependency: npm install lmdb)' : undefined,
    run: (target) => runLmdb(open as OpenLmdb, target, clients, seconds),
  };
}

async function runLmdb(open: OpenLmdb, target: Target, clients: number, seconds: number): Promise<Measurement> {
  // On the target's file system where the target is a file (a scratch image or a file), else the temp dir.
  const home = fs.statSync(target.path).isFile() ? path.dirname(target.path) : os.tmpdir();
  const dir = fs.mkdtempSync(path.join(home, '.blockfork-bench-lmdb-'));
  const db = open({ path: path.join(dir, 'data.mdb'), keyEncoding: 'uint32', encoding: 'binary' });
  const latency = new LatencyRecorder();
  try {
    const noise = noiseBlock(4096, target.seed);
    // One value buffer a client: a put in flight must not see another client's stamp.
    const values = Array.from({ length: clients }, () => Buffer.from(noise));
    for (let c = 0; c < clients; c++) await db.put(c, values[c]);
    const { acknowledged, elapsedMs } = await clientLoops(clients, seconds, latency, async (c, stamp) => {
      values[c].writeUInt32LE(stamp, 8);
      await db.put(c, values[c]);
      await db.flushed;
    });
    return {
      opsPerSecond: acknowledged / (elapsedMs / 1000),
      latency: latency.summary(),
      note: `lmdb-js in ${path.basename(dir)} beside the target, default settings; latency of an awaited put and its flush`,
    };
  } finally {
    latency.destroy();
    await db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
