import { performance } from 'node:perf_hooks';
import type { LatencyRecorder } from './latency';

/**
 * `clients` loops at once, each doing `update(client)` (one durable update,
 * awaited) until `seconds` have passed; each update's latency goes to
 * `latency`, from the instant `update` starts its wait for durability, which
 * it reports by calling `asked`. Resolves with the updates acknowledged and
 * the milliseconds the loops ran.
 */
export async function clientLoops(
  clients: number,
  seconds: number,
  latency: LatencyRecorder,
  update: (client: number, stamp: number, asked: () => void) => Promise<void>,
): Promise<{ acknowledged: number; elapsedMs: number }> {
  const start = performance.now();
  const end = start + seconds * 1000;
  let acknowledged = 0;
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      while (performance.now() < end) {
        let askedAt = performance.now();
        await update(client, acknowledged, () => (askedAt = performance.now()));
        latency.record(askedAt, performance.now());
        acknowledged++;
      }
    }),
  );
  return { acknowledged, elapsedMs: performance.now() - start };
}
