import { clientLoops } from './client-loops';
import { noiseBlock, openVolume, type Mode } from './bench-volume';
import { LatencyRecorder } from './latency';
import type { Measurement, Subject, Target } from './subject';

/**
 * Clients as a server has them: each of `clients` loops makes one change
 * (one 4 KiB block of its own) and awaits its own `commit()`, all at once.
 * Commits that arrive while deltas are in flight group into the open delta
 * and resolve together, so the acknowledged rate grows with the clients
 * while the device sees one writeout per group. Counted: acknowledged
 * updates per second, and each commit's latency from its call.
 */
export function clientsSubject(mode: Mode, clients: number, seconds: number): Subject {
  return { name: `cache, ${mode}`, unavailable: undefined, run: (target) => runClients(target, mode, clients, seconds) };
}

async function runClients(target: Target, mode: Mode, clients: number, seconds: number): Promise<Measurement> {
  const volume = await openVolume(target, mode);
  const latency = new LatencyRecorder();
  try {
    const noise = noiseBlock(volume.blockSize, target.seed);
    // Every client's block cached first: what is measured is the commit, not a first read.
    await volume.change(async (tx) => {
      for (let c = 0; c < clients; c++) (await tx.overwrite(c)).set(noise);
    });
    await volume.commit();
    const before = volume.stats();
    const { acknowledged, elapsedMs } = await clientLoops(clients, seconds, latency, async (c, stamp, asked) => {
      await volume.change(async (tx) => {
        (await tx.write(c)).writeUInt32LE(stamp, 8);
      });
      asked();
      await volume.commit();
    });
    const after = volume.stats();
    const deltas = after.deltasCommitted - before.deltasCommitted;
    return {
      opsPerSecond: acknowledged / (elapsedMs / 1000),
      latency: latency.summary(),
      note: `${clients} client${clients === 1 ? '' : 's'}: ${acknowledged} acknowledged updates in ${deltas} deltas (${(acknowledged / Math.max(1, deltas)).toFixed(1)} a delta); latency of commit() from its call`,
    };
  } finally {
    latency.destroy();
    await volume.close();
  }
}
