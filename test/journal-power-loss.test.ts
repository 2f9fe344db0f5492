import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Device } from '../src/io/device';
import type { BlockIo } from '../src/io/request';
import { allocBlocks } from '../src/journal/block-memory';
import type { JournalBlock } from '../src/journal/home-area';
import { JournalWriter } from '../src/journal/journal-writer';
import { replayJournal } from '../src/journal/replay';
import type { Superblock } from '../src/journal/superblock';
import { formatVolume } from '../src/journal/volume-format';
import { PowerLossDevice } from './support/power-loss-device';
import { seeded, type Random } from './support/random';

/**
 * G5 under power loss. A workload runs once over a PowerLossDevice, as the
 * writeout pipeline will: each delta appended (commit point, acknowledged),
 * its home writes queued behind the previous delta's while the next delta is
 * appended, checkpoints when the log passes half full or an append waits.
 * Then, at every flush boundary and at random points of the recorded run,
 * a crash state is built (durable writes, a random subset of the rest, one
 * torn at sector granularity), written to a file, reopened and replayed:
 * the data area must equal the state after some whole delta D, with D at
 * least the last acknowledged one. A quarter of those states also lose
 * power again during their replay, and are replayed once more.
 */
describe('journal: power loss (G5)', function () {
  this.timeout(300_000);
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'blockfork-journal-power-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const configurations = [
    { blockSize: 512, logBlocks: 24, size: 128 * 1024, deltas: 60, seed: 1 },
    { blockSize: 4096, logBlocks: 12, size: 256 * 1024, deltas: 40, seed: 2 },
  ];

  for (const config of configurations) {
    it(`G5: every crash state replays to a whole delta ≥ the last acknowledged (block size ${config.blockSize}, log ${config.logBlocks} blocks)`, async () => {
      const { blockSize: B } = config;
      const random = seeded(config.seed);
      const device = await Device.open(join(dir, `run-${B}.img`), { size: config.size });
      const sb = await formatVolume(device, { blockSize: B, logBlocks: config.logBlocks });
      const recorder = await PowerLossDevice.wrap(device);
      const { journal } = await JournalWriter.open(recorder);

      // The model: the data area's bytes after each delta, by hash.
      const model = Buffer.alloc(sb.blockCount * B);
      const stateOf = new Map<string, number>([[hash(model), 0]]);
      let homeDone = 0;
      let homeChain: Promise<void> = Promise.resolve();
      const checkpoints: Promise<void>[] = [];
      const maybeCheckpoint = (): void => {
        const space = journal.space();
        if (space.wanted > 0 || space.used > space.capacity / 2) checkpoints.push(journal.checkpoint(homeDone));
      };
      journal.onPressure = maybeCheckpoint;
      for (let delta = 1; delta <= config.deltas; delta++) {
        const blocks = deltaImages(delta, B, Math.min(24, sb.blockCount), random);
        await journal.appendDelta(delta, blocks);
        recorder.mark('ack', delta);
        for (const b of blocks) model.set(b.image, b.home * B);
        stateOf.set(hash(model), delta);
        homeChain = homeChain
          .then(() => journal.writeHome(blocks))
          .then(() => {
            homeDone = delta;
            maybeCheckpoint();
          });
      }
      await homeChain;
      await Promise.all(checkpoints);
      await journal.close();
      await recorder.close();

      const boundaries = recorder.flushBoundaries();
      const points = [...boundaries, ...boundaries, ...Array.from({ length: 150 }, () => Math.floor(random() * (recorder.events.length + 1)))];
      let checked = 0;
      let replayCrashes = 0;
      const recovered = new Set<number>();
      for (let i = 0; i < points.length; i++) {
        const point = points[i];
        const acked = recorder.lastMark(point, 'ack') ?? 0;
        const crashSeed = config.seed * 1_000_000 + i;
        const state = await recover(recorder.crashImage(point, seeded(crashSeed)), sb, stateOf, `crash-${B}.img`, i % 4 === 0 ? seeded(crashSeed) : undefined);
        const what = `crash at event ${point} of ${recorder.events.length} (seed ${crashSeed}), last acknowledged delta ${acked}`;
        assert.ok(state.first !== undefined, `${what}: the volume holds no whole delta's state`);
        assert.ok(state.first >= acked, `${what}: recovered delta ${state.first}, older than acknowledged`);
        recovered.add(state.first);
        checked++;
        if (state.again !== undefined) {
          assert.equal(state.again, state.first, `${what}, then a crash during replay: replay again must give the same delta`);
          replayCrashes++;
        }
      }
      console.log(
        `      ${checked} crash states checked (${boundaries.length} points around flushes, 2 random subsets each, and 150 random points; ` +
          `${recorder.events.filter((e) => e.kind === 'flush').length} flushes, ${recorder.events.filter((e) => e.kind === 'write').length} writes), ` +
          `${replayCrashes} of them crashed again during replay; ${recovered.size} distinct deltas recovered`,
      );
    });
  }

  /**
   * Writes `image` to a file, replays it, and names the delta whose state
   * the data area holds. With `again`, the replay itself loses power at a
   * random point, and the volume is replayed once more.
   */
  async function recover(
    image: Buffer,
    sb: Superblock,
    stateOf: Map<string, number>,
    name: string,
    again: Random | undefined,
  ): Promise<{ first?: number; again?: number }> {
    const path = join(dir, name);
    await writeFile(path, image);
    let device = await Device.open(path);
    try {
      if (again === undefined) {
        await replayJournal(device);
        return { first: stateOf.get(hash(await dataArea(device, sb))) };
      }
      const recorder = await PowerLossDevice.wrap(device);
      await replayJournal(recorder);
      const first = stateOf.get(hash(await dataArea(device, sb)));
      await device.close();
      await writeFile(path, recorder.crashImage(Math.floor(again() * (recorder.events.length + 1)), again));
      device = await Device.open(path);
      await replayJournal(device);
      return { first, again: stateOf.get(hash(await dataArea(device, sb))) };
    } finally {
      await device.close();
    }
  }
});

/** 1 to 6 blocks among the first `homes`, each image a pattern of (delta, home). */
function deltaImages(delta: number, B: number, homes: number, random: Random): JournalBlock[] {
  const count = 1 + Math.floor(random() * 6);
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(Math.floor(random() * homes));
  const slab = allocBlocks(B, count);
  return [...chosen]
    .sort((a, b) => a - b)
    .map((home, i) => {
      const image = slab.page(i);
      for (let j = 0; j < B; j += 4) image.writeUInt32LE((delta * 2_654_435_761 + home * 40_503 + j) >>> 0, j);
      return { home, image };
    });
}

async function dataArea(d: BlockIo, sb: Superblock): Promise<Buffer> {
  const slab = allocBlocks(sb.blockSize, sb.blockCount);
  const all = Buffer.from(slab.memory, 0, sb.blockCount * sb.blockSize);
  await d.run([{ op: 'read', offset: sb.dataStart * sb.blockSize, buffers: [all] }]);
  const copy = Buffer.from(all);
  slab.release();
  return copy;
}

function hash(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
