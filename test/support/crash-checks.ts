import assert from 'node:assert/strict';
import { decodeBlock, WorkloadModel, type Decoded } from './crash-model';

/**
 * What a crash may leave of the workload of crash-model.ts, as the README
 * promises it: the checks of the process-kill tests (crash-kill.test.ts)
 * and of the ordered power-loss test (ordered-power-loss.test.ts). Each
 * takes the blocks read back, the last delta acknowledged and the last one
 * closed, and throws an AssertionError that says what is wrong.
 */

function describeDecoded(d: Decoded): string {
  if (d.kind === 'zero') return 'zeros';
  if (d.kind === 'image') return `the image of delta ${d.k}`;
  return `garbage (${d.why})`;
}

function holds(k: number): string {
  return k === 0 ? 'zeros (never written)' : `the image of delta ${k}`;
}

/** Decodes what was read; throws on a block that is neither zeros nor a whole image of this workload. */
function decodeAll(seed: number, read: ReadonlyMap<number, Buffer>, where: string): Map<number, number> {
  const found = new Map<number, number>();
  for (const [block, data] of read) {
    const d = decodeBlock(data, seed, block);
    if (d.kind === 'bad') assert.fail(`${where}: block ${block} holds ${describeDecoded(d)}`);
    found.set(block, d.kind === 'zero' ? 0 : d.k);
  }
  return found;
}

function firstDifference(model: WorkloadModel, D: number, found: ReadonlyMap<number, number>): { block: number; want: number; got: number; count: number } | undefined {
  let first: { block: number; want: number; got: number } | undefined;
  let count = 0;
  for (const block of model.blocks) {
    const want = model.holder(D, block);
    const got = found.get(block) ?? 0;
    if (want !== got) {
      count++;
      first ??= { block, want, got };
    }
  }
  return first && { ...first, count };
}

/** G5: the blocks hold exactly the state after one delta D, acked <= D <= closed. Returns D. */
export function checkJournal(seed: number, acked: number, closed: number, read: ReadonlyMap<number, Buffer>, runs = false, what = 'journal'): number {
  const where = `${what}, seed ${seed}, D_ack ${acked}, last closed ${closed}`;
  const found = decodeAll(seed, read, where);
  const model = new WorkloadModel(seed, Math.max(acked, closed), runs);
  let closest: { D: number; diff: NonNullable<ReturnType<typeof firstDifference>> } | undefined;
  for (let D = closed; D >= acked; D--) {
    const diff = firstDifference(model, D, found);
    if (diff === undefined) return D;
    if (!closest || diff.count < closest.diff.count) closest = { D, diff };
  }
  const atAck = firstDifference(model, acked, found)!;
  const near = closest && closest.D !== acked ? `; the closest state is after delta ${closest.D} (${closest.diff.count} blocks differ, first block ${closest.diff.block}: ${holds(closest.diff.got)}, should be ${holds(closest.diff.want)})` : '';
  assert.fail(
    `${where}: the volume holds no whole delta's state from ${acked} to ${closed}. ` +
      `Against delta ${acked}: ${atAck.count} blocks differ, first block ${atAck.block} holds ${holds(atAck.got)}, should be ${holds(atAck.want)}${near}`,
  );
}

/**
 * Ordered mode, as the README promises: every block holds its value from a
 * delta at or after the last acknowledged one, and at most one delta is half
 * written: the blocks hold the state after some delta D (acked <= D <=
 * closed) except for blocks that delta D+1 wrote, which may hold D+1's image
 * already. Deltas are written in order, each flushed before the next starts
 * (G4), so no crash can leave two deltas in part. Returns the newest delta
 * seen and whether one delta is half written.
 */
export function checkOrdered(seed: number, acked: number, closed: number, read: ReadonlyMap<number, Buffer>): { newest: number; halfWritten: boolean } {
  const where = `ordered, seed ${seed}, D_ack ${acked}, last closed ${closed}`;
  const found = decodeAll(seed, read, where);
  const model = new WorkloadModel(seed, Math.max(acked, closed));
  let newest = acked;
  for (const block of model.blocks) {
    const got = found.get(block) ?? 0;
    const allowed = new Set<number>();
    for (let D = acked; D <= closed; D++) allowed.add(model.holder(D, block));
    if (!allowed.has(got)) {
      assert.fail(`${where}: block ${block} holds ${holds(got)}; after any delta from ${acked} to ${closed} it holds ${[...allowed].map(holds).join(' or ')}`);
    }
    newest = Math.max(newest, got);
  }
  for (let D = acked; D <= closed; D++) if (firstDifference(model, D, found) === undefined) return { newest, halfWritten: false };
  for (let D = acked; D < closed; D++) {
    const oneHalf = model.blocks.every((block) => {
      const got = found.get(block) ?? 0;
      return got === model.holder(D, block) || got === model.holder(D + 1, block);
    });
    if (oneHalf) return { newest, halfWritten: true };
  }
  const atAck = firstDifference(model, acked, found)!;
  assert.fail(
    `${where}: more than one delta is half written: no delta D from ${acked} to ${closed - 1} explains the blocks as the state after D plus part of D+1. ` +
      `Against delta ${acked}: ${atAck.count} blocks differ, first block ${atAck.block} holds ${holds(atAck.got)}, should be ${holds(atAck.want)}`,
  );
}
