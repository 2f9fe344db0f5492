/**
 * The child of the process-kill crash tests (test/crash-kill.test.ts): opens
 * the volume and runs the endless workload of test/support/crash-model.ts
 * until the parent kills it with SIGKILL.
 *
 * It reports to the parent on stdout, one line per event, written with a
 * synchronous write(2) to the pipe, so a line is in the pipe before anything
 * that follows it can reach the disk:
 *
 *   ready <base>                   the volume is open; its open delta is <base> (plan delta 1)
 *   close <k>                      commit() of plan delta k is about to be called
 *   ack <k> <forks> <spaceWaits> <redirected> <reserveWaits>
 *                                  the commit of plan delta k resolved (version 2: blocks
 *                                  redirected so far, waits for reserve)
 *   error <message>                something went wrong; the child exits with status 1
 */
import * as fs from 'node:fs';
import { open, type Volume } from '../../src/volume';
import { fillImage, planDelta, type CrashConfig } from './crash-model';

function say(line: string): void {
  fs.writeSync(1, `${line}\n`);
}

function fail(error: unknown): never {
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
  say(`error ${message.replace(/\n/g, ' | ')}`);
  process.exit(1);
}

async function writeBlocks(vol: Volume, config: CrashConfig, k: number, expected: number, blocks: readonly number[], over: readonly boolean[]): Promise<void> {
  await vol.change(async (tx) => {
    if (tx.delta.number !== expected) throw new Error(`plan delta ${k} should be volume delta ${expected}, the change is in ${tx.delta.number}`);
    for (let i = 0; i < blocks.length; i++) {
      const view = over[i] ? await tx.overwrite(blocks[i]) : await tx.write(blocks[i]);
      fillImage(view, config.seed, k, blocks[i]);
    }
  });
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2]) as CrashConfig;
  const vol = await open(config.path, {
    size: config.size,
    blockSize: config.blockSize,
    journal: config.mode === 'journal',
    ...(config.formatVersion === 2 ? { formatVersion: 2 as const, redirectMin: config.redirectMin, reserveSize: config.reserveSize } : {}),
    cacheSize: config.cacheSize,
    maxDeltas: config.maxDeltas,
    // No transitions by themselves: every delta is closed by the plan's commit.
    highWater: Number.MAX_SAFE_INTEGER,
  });
  const base = vol.stats().delta;
  say(`ready ${base}`);
  for (let k = 1; ; k++) {
    const plan = planDelta(config.seed, k, config.runs === true);
    const expected = (base + k - 1) >>> 0;
    const runs = plan.changes.map((blocks, c) => () => writeBlocks(vol, config, k, expected, blocks, plan.overwrite[c]));
    if (plan.concurrent) await Promise.all(runs.map((run) => run()));
    else for (const run of runs) await run();
    say(`close ${k}`);
    // Concurrent committers: all called at once, they resolve together with the plan's delta (group commit).
    const commits = Array.from({ length: plan.committers }, () => vol.commit());
    const committed = Promise.all(commits).then((numbers) => {
      for (const number of numbers) if (number !== expected) fail(`commit of plan delta ${k} resolved with delta ${number}, expected ${expected}`);
      const stats = vol.stats();
      say(`ack ${k} ${stats.forks} ${stats.spaceWaits} ${stats.journal?.redirect?.redirectedBlocks ?? 0} ${stats.journal?.redirect?.reserveWaits ?? 0}`);
    }, fail);
    if (plan.awaitCommit) await committed;
    // Changes called after a commit may join its delta while the pipeline is full; the plan's
    // next delta starts once this one has closed, so that each plan delta is one volume delta.
    else while (vol.stats().delta === expected) await new Promise((resolve) => setImmediate(resolve));
  }
}

main().catch(fail);
