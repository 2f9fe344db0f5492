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
import { readSuperblock, type Superblock } from '../src/journal/superblock';
import { formatVolume } from '../src/journal/volume-format';
import { Volume, type MountOptions } from '../src/volume';
import { MemoryDevice } from './support/memory-device';
import { PowerLossDevice, type CrashOutcome } from './support/power-loss-device';
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

/**
 * G5 under power loss on format version 2 (redirect-on-write), through the
 * whole volume: a Volume over a PowerLossDevice over memory runs deltas that
 * mix runs of consecutive blocks (redirected: written once to newly
 * allocated physical blocks, before the flush of the log records, their map
 * blocks logged) with scattered blocks (logged whole, then written home),
 * each commit awaited and marked acknowledged. Redirected data writes are
 * ordinary writes through the double, so a crash state may lose or tear
 * them while the commit record survives: replay must then drop that delta.
 * Every crash state is mounted again and read through the volume (the map
 * says where each block lives): it must hold the state after some whole
 * delta, at least the last acknowledged. A quarter also lose power again
 * while they are replayed, and are mounted once more.
 */
describe('journal: power loss on format version 2, redirected writes lost and torn (G5)', function () {
  this.timeout(300_000);

  const configurations = [
    { blockSize: 512, size: 256 * 1024, logBlocks: 64, reserveBlocks: 24, redirectBlocks: 2, deltas: 50, seed: 11 },
    { blockSize: 4096, size: 1024 * 1024, logBlocks: 32, reserveBlocks: 48, redirectBlocks: 4, deltas: 36, seed: 12 },
  ];

  for (const config of configurations) {
    it(`G5: every crash state mounts to a whole delta ≥ the last acknowledged (block size ${config.blockSize}, redirectMin ${config.redirectBlocks} blocks, reserve ${config.reserveBlocks} blocks)`, async () => {
      const { blockSize: B } = config;
      const random = seeded(config.seed);
      const formatted = new MemoryDevice({ size: config.size });
      const options = { journal: true, blockSize: B, cacheSize: 64 * Math.max(B, 4096), highWater: Number.MAX_SAFE_INTEGER, redirectMin: config.redirectBlocks * B };
      await (await Volume.mount(formatted, { ...options, format: true, formatVersion: 2, logSize: config.logBlocks * B, reserveSize: config.reserveBlocks * B })).close();
      const memory = memoryHolding(formatted.durable);
      const sb = (await readSuperblock(memory)).superblock;
      assert.equal(sb.version, 2);
      const recorder = await PowerLossDevice.wrap(memory);
      const vol = await Volume.mount(recorder, options);
      const blockCount = vol.blockCount;

      // The model: the volume's bytes after each delta, by hash.
      const model = Buffer.alloc(blockCount * B);
      const stateOf = new Map<string, number>([[hash(model), 0]]);
      for (let delta = 1; delta <= config.deltas; delta++) {
        const blocks = mixedBlocks(Math.min(blockCount, 40), config.redirectBlocks, random);
        await vol.change(async (tx) => {
          for (const block of blocks) {
            const view = await tx.overwrite(block);
            for (let j = 0; j < B; j += 4) view.writeUInt32LE((delta * 2_654_435_761 + block * 40_503 + j) >>> 0, j);
            view.copy(model, block * B);
          }
        });
        await vol.commit();
        recorder.mark('ack', delta);
        stateOf.set(hash(model), delta);
      }
      const redirect = vol.stats().journal?.redirect;
      await vol.close();
      assert.ok(redirect !== undefined && redirect.redirectedBlocks > 0, `blocks were redirected: ${JSON.stringify(redirect)}`);
      assert.ok(redirect.loggedBlocks > 0, 'blocks were logged whole');

      // Redirected writes: into the physical area, of images the log never held (every image here is unique).
      const physicalFrom = (sb.dataStart + sb.summaryBlocks + sb.mapBlocks) * B;
      const redirected = recorder.redirectedWrites(sb.logStart * B, (sb.logStart + sb.logBlocks) * B, physicalFrom, B);
      const writes = recorder.events.filter((e) => e.kind === 'write');
      assert.ok(redirected.size > 0, 'the device saw redirected writes');

      const boundaries = recorder.flushBoundaries();
      const points = [...boundaries, ...boundaries, ...Array.from({ length: 150 }, () => Math.floor(random() * (recorder.events.length + 1)))];
      let checked = 0;
      let replayCrashes = 0;
      let lostRedirected = 0;
      let tornRedirected = 0;
      const recovered = new Set<number>();
      for (let i = 0; i < points.length; i++) {
        const point = points[i];
        const acked = recorder.lastMark(point, 'ack') ?? 0;
        const crashSeed = config.seed * 1_000_000 + i;
        const outcome: CrashOutcome = { kept: [], lost: [], torn: undefined };
        const image = recorder.crashImage(point, seeded(crashSeed), outcome);
        if (outcome.lost.some((id) => redirected.has(id))) lostRedirected++;
        if (outcome.torn !== undefined && redirected.has(outcome.torn)) tornRedirected++;
        const what = `crash at event ${point} of ${recorder.events.length} (seed ${crashSeed}), last acknowledged delta ${acked}`;
        const state = await mountAndRead(image, options, blockCount, stateOf, i % 4 === 0 ? seeded(crashSeed) : undefined, what);
        assert.ok(state.first !== undefined, `${what}: the volume holds no whole delta's state`);
        assert.ok(state.first >= acked, `${what}: recovered delta ${state.first}, older than acknowledged`);
        recovered.add(state.first);
        checked++;
        if (state.again !== undefined || i % 4 === 0) {
          assert.equal(state.again, state.first, `${what}, then a crash during replay: mounting again must give the same delta`);
          replayCrashes++;
        }
      }
      console.log(
        `      v2: ${checked} crash states checked (${boundaries.length} points around flushes, 2 random subsets each, and 150 random points; ` +
          `${recorder.events.filter((e) => e.kind === 'flush').length} flushes, ${writes.length} writes of which ${redirected.size} redirected), ` +
          `${replayCrashes} of them crashed again during replay; ${recovered.size} distinct deltas recovered; ` +
          `redirected writes lost in ${lostRedirected} states (torn in ${tornRedirected}); ` +
          `${redirect.redirectedBlocks} blocks redirected, ${redirect.loggedBlocks} logged, ${redirect.mapBlocksLogged} map blocks logged, ${redirect.reserveWaits} reserve waits`,
      );
      assert.ok(lostRedirected > 0, 'some crash states lost a redirected write');
      assert.ok(tornRedirected > 0, 'some crash states tore a redirected write');
    });
  }

  /** Mounts `image` (replaying it) and names the delta whose state the volume holds; with `again`, the replay loses power too. */
  async function mountAndRead(
    image: Buffer,
    options: MountOptions,
    blockCount: number,
    stateOf: Map<string, number>,
    again: Random | undefined,
    what: string,
  ): Promise<{ first?: number; again?: number }> {
    const read = async (io: BlockIo): Promise<number | undefined> => {
      let vol: Volume;
      try {
        vol = await Volume.mount(io, options);
      } catch (error) {
        throw Object.assign(new Error(`${what}: mount failed: ${error instanceof Error ? error.message : String(error)}`), { cause: error });
      }
      try {
        assert.equal(vol.blockCount, blockCount);
        return stateOf.get(hash(await vol.readRange(0, blockCount)));
      } finally {
        await vol.close();
      }
    };
    const memory = memoryHolding(image);
    if (again === undefined) return { first: await read(memory) };
    const recorder = await PowerLossDevice.wrap(memory);
    const first = await read(recorder);
    const second = memoryHolding(recorder.crashImage(Math.floor(again() * (recorder.events.length + 1)), again));
    return { first, again: await read(second) };
  }
});

/** Block numbers below `homes`, ascending: maybe a run of `redirect` to 3·`redirect` consecutive blocks, and 0 to 4 scattered ones. */
function mixedBlocks(homes: number, redirect: number, random: Random): number[] {
  const chosen = new Set<number>();
  if (random() < 0.7) {
    const length = redirect + Math.floor(random() * 2 * redirect);
    const first = Math.floor(random() * (homes - length));
    for (let b = first; b < first + length; b++) chosen.add(b);
  }
  const scattered = (chosen.size === 0 ? 1 : 0) + Math.floor(random() * 5);
  for (let i = 0; i < scattered; i++) chosen.add(Math.floor(random() * homes));
  return [...chosen].sort((a, b) => a - b);
}

function memoryHolding(bytes: Buffer): MemoryDevice {
  const memory = new MemoryDevice({ size: bytes.length });
  bytes.copy(memory.volatile);
  bytes.copy(memory.durable);
  return memory;
}
