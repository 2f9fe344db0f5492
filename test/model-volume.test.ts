import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Device } from '../src/io/device';
import type { BlockIo } from '../src/io/request';
import { Volume } from '../src/volume';
import { FaultDevice } from './support/fault-device';
import { MemoryDevice } from './support/memory-device';
import { Recorder } from './support/recorder';
import { TempDir } from './support/temp';

/**
 * Model-based test: random interleavings of changes (awaited, and bursts of
 * concurrent ones with commits between them), concurrent clients that each
 * change and await their own commit, reads, and commits (awaited or not) drive the volume and a plain model side by side, over a device that
 * delays and reorders completions at random. The model is an array of block
 * contents and the list of every write, each with the delta its change
 * landed in (which the volume decides: commits asked for while `maxDeltas`
 * deltas are in flight group into one delta).
 *
 * Checked: reads always see the latest writes; every write called before a
 * commit is in the delta that commit resolves with, or an earlier one; when
 * commit N resolves, the device held for delta N exactly the contents of its
 * blocks when N closed (G1), a flush followed (G3; on the memory device, what
 * a power cut would leave holds N or a later delta), and commits resolve in
 * order (G4). At the end, the device holds the model's last state.
 */

interface Config {
  blockSize: number;
  pages: number;
  cachePages: number;
  maxDeltas: number;
  fork: boolean;
  seed: number;
}

/** Block contents are write ids: id 0 is zeros, any other fills the block with a pattern led by the id. */
function content(id: number, blockSize: number): Buffer {
  if (id === 0) return Buffer.alloc(blockSize);
  const data = Buffer.alloc(blockSize, (id % 251) + 1);
  data.writeUInt32LE(id, 0);
  return data;
}

interface Write {
  readonly block: number;
  readonly id: number;
  /** The delta its change landed in, once the change has run. */
  delta: number | undefined;
}

class Model {
  readonly blocks: number[];
  readonly writes: Write[] = [];
  private nextId = 1;

  constructor(readonly blockCount: number) {
    this.blocks = new Array<number>(blockCount).fill(0);
  }

  write(block: number): Write {
    const write: Write = { block, id: this.nextId++, delta: undefined };
    this.blocks[block] = write.id;
    this.writes.push(write);
    return write;
  }

  /** The last write id handed out: a commit called now covers every write up to it. */
  get lastId(): number {
    return this.nextId - 1;
  }

  /** Each block's contents once delta `n` closed: its last write in a delta up to n. */
  snapshot(n: number): number[] {
    const blocks = new Array<number>(this.blockCount).fill(0);
    for (const w of this.writes) if (w.delta !== undefined && w.delta <= n) blocks[w.block] = w.id;
    return blocks;
  }

  dirtyIn(n: number): Set<number> {
    return new Set(this.writes.filter((w) => w.delta === n).map((w) => w.block));
  }

  /** Writes of `block` in deltas after n (or not yet run, so in a later delta). */
  laterWrites(n: number, block: number): number[] {
    return this.writes.filter((w) => w.block === block && (w.delta === undefined || w.delta > n)).map((w) => w.id);
  }
}

class Real {
  readonly pending: Promise<void>[] = [];
  readonly resolved: number[] = [];
  private readonly checked = new Set<number>();
  failure: unknown;

  constructor(
    readonly vol: Volume,
    readonly recorder: Recorder,
    readonly memory: MemoryDevice | undefined,
    readonly blockSize: number,
  ) {}

  /** Starts a commit; its checks run when it resolves. */
  commit(model: Model): Promise<void> {
    const covers = model.lastId;
    const checked = this.vol.commit().then((number) => this.check(model, covers, number));
    // A commit not awaited now is awaited at the next settle; keep its failure until then.
    checked.catch((error) => (this.failure ??= error));
    return checked;
  }

  async settle(): Promise<void> {
    await Promise.allSettled(this.pending.splice(0));
    if (this.failure !== undefined) throw this.failure;
  }

  private check(model: Model, covers: number, number: number): void {
    for (const w of model.writes) {
      if (w.id > covers) break;
      assert.ok(w.delta !== undefined && w.delta <= number, `write ${w.id}, called before the commit, is in delta ${w.delta}, not in ${number} or before`);
    }
    assert.ok(this.resolved.every((earlier) => earlier <= number), `G4: delta ${number} durable after ${this.resolved.at(-1)}`);
    this.resolved.push(number);
    if (number === 0 || this.checked.has(number)) return;
    this.checked.add(number);
    const snapshot = model.snapshot(number);
    const dirty = model.dirtyIn(number);
    assert.ok(dirty.size > 0, `delta ${number} has a number, so it has blocks`);
    // Every numbered delta has blocks, so delta n went out as the n-th batch.
    const batch = this.recorder.batches[number - 1];
    assert.ok(batch, `delta ${number} wrote a batch`);
    // A fork carries the earlier delta's dirty blocks of the page along, so a batch may hold more than its own writes.
    for (const block of dirty) assert.ok(batch.blocks.has(block), `G1: delta ${number} wrote block ${block}`);
    for (const [block, image] of batch.blocks) {
      assert.ok(image.equals(content(snapshot[block], this.blockSize)), `G1: delta ${number} wrote block ${block} as it was when the delta closed`);
    }
    const batchEvent = this.recorder.events.findIndex((e) => e.kind === 'batch' && e.batch === number - 1);
    assert.ok(this.recorder.events.slice(batchEvent).some((e) => e.kind === 'flush'), `G3: a flush followed delta ${number}'s writes`);
    if (this.memory) {
      for (const block of dirty) {
        const held = this.memory.durable.subarray(block * this.blockSize, (block + 1) * this.blockSize);
        const ids = [snapshot[block], ...model.laterWrites(number, block)];
        assert.ok(
          ids.some((id) => held.equals(content(id, this.blockSize))),
          `G3: after commit ${number}, the durable image of block ${block} is that of delta ${number} or later`,
        );
      }
    }
  }
}

type Command = fc.AsyncCommand<Model, Real>;

type Op = { readonly kind: 'write' | 'overwrite' | 'read'; readonly block: number };

class ChangeCommand implements Command {
  constructor(readonly ops: readonly Op[]) {}
  check(): boolean {
    return true;
  }
  async run(model: Model, real: Real): Promise<void> {
    const size = real.blockSize;
    await real.vol.change(async (tx) => {
      const delta = real.vol.stats().delta;
      for (const { kind, block: raw } of this.ops) {
        const block = raw % model.blockCount;
        if (kind === 'read') {
          assert.ok((await tx.read(block)).equals(content(model.blocks[block], size)), `tx.read(${block}) sees the latest write`);
        } else {
          const view = kind === 'write' ? await tx.write(block) : await tx.overwrite(block);
          const before = kind === 'write' ? model.blocks[block] : 0;
          assert.ok(view.equals(content(before, size)), `tx.${kind}(${block}) starts from ${kind === 'write' ? 'the latest write' : 'zeros'}`);
          const write = model.write(block);
          write.delta = delta;
          content(write.id, size).copy(view);
        }
      }
    });
  }
  toString(): string {
    return `change(${this.ops.map((o) => `${o.kind[0]}${o.block}`).join(' ')})`;
  }
}

/**
 * Changes started together without awaiting, with commits between some of
 * them: the order of calls decides each one's delta. They may all run
 * concurrently in one delta (commits asked for while the pipeline is full
 * group), so they get disjoint blocks and the outcome is defined.
 */
class BurstCommand implements Command {
  constructor(readonly changes: readonly { readonly blocks: readonly number[]; readonly commitAfter: boolean }[]) {}
  check(): boolean {
    return true;
  }
  async run(model: Model, real: Real): Promise<void> {
    const started: Promise<void>[] = [];
    const taken = new Set<number>();
    for (const { blocks, commitAfter } of this.changes) {
      const mine = [...new Set(blocks.map((b) => b % model.blockCount))].filter((b) => !taken.has(b));
      for (const b of mine) taken.add(b);
      const writes = mine.map((block) => model.write(block));
      started.push(
        real.vol.change(async (tx) => {
          const delta = real.vol.stats().delta;
          for (const write of writes) write.delta = delta;
          for (const { block, id } of writes) content(id, real.blockSize).copy(await tx.write(block));
        }),
      );
      if (commitAfter) real.pending.push(real.commit(model));
    }
    await Promise.all(started);
  }
  toString(): string {
    return `burst(${this.changes.map((c) => `[${c.blocks.join(',')}]${c.commitAfter ? ' commit' : ''}`).join(' ')})`;
  }
}

/**
 * Clients as a server has them: each makes one change and awaits its own
 * commit, all at once, so commits arrive while deltas are in flight and
 * group. Disjoint blocks, so the outcome is defined.
 */
class ClientsCommand implements Command {
  constructor(readonly clients: readonly (readonly number[])[]) {}
  check(): boolean {
    return true;
  }
  async run(model: Model, real: Real): Promise<void> {
    const taken = new Set<number>();
    const blocks = this.clients.map((wanted) => {
      const mine = [...new Set(wanted.map((b) => b % model.blockCount))].filter((b) => !taken.has(b));
      for (const b of mine) taken.add(b);
      return mine;
    });
    await Promise.all(
      blocks.map(async (mine) => {
        await real.vol.change(async (tx) => {
          const delta = real.vol.stats().delta;
          for (const block of mine) {
            const view = await tx.write(block);
            const write = model.write(block);
            write.delta = delta;
            content(write.id, real.blockSize).copy(view);
          }
        });
        await real.commit(model);
      }),
    );
  }
  toString(): string {
    return `clients(${this.clients.map((c) => `[${c.join(',')}]`).join(' ')})`;
  }
}

class CommitCommand implements Command {
  constructor(readonly wait: boolean) {}
  check(): boolean {
    return true;
  }
  async run(model: Model, real: Real): Promise<void> {
    const commit = real.commit(model);
    if (this.wait) await commit;
    else real.pending.push(commit);
  }
  toString(): string {
    return this.wait ? 'commit' : 'commit(no wait)';
  }
}

class ReadCommand implements Command {
  constructor(readonly block: number) {}
  check(): boolean {
    return true;
  }
  async run(model: Model, real: Real): Promise<void> {
    const block = this.block % model.blockCount;
    assert.ok((await real.vol.read(block)).equals(content(model.blocks[block], real.blockSize)), `read(${block}) sees the latest write`);
  }
  toString(): string {
    return `read(${this.block})`;
  }
}

class SettleCommand implements Command {
  check(): boolean {
    return true;
  }
  async run(_model: Model, real: Real): Promise<void> {
    await real.settle();
  }
  toString(): string {
    return 'settle';
  }
}

const block = fc.nat({ max: 200 });
const commands = fc.commands(
  [
    fc
      .array(fc.record({ kind: fc.constantFrom<Op['kind']>('write', 'write', 'overwrite', 'read'), block }), { minLength: 1, maxLength: 12 })
      .map((ops) => new ChangeCommand(ops)),
    fc
      .array(fc.record({ blocks: fc.array(block, { minLength: 1, maxLength: 4 }), commitAfter: fc.boolean() }), { minLength: 2, maxLength: 6 })
      .map((changes) => new BurstCommand(changes)),
    fc.array(fc.array(block, { minLength: 1, maxLength: 3 }), { minLength: 2, maxLength: 8 }).map((clients) => new ClientsCommand(clients)),
    fc.boolean().map((wait) => new CommitCommand(wait)),
    block.map((b) => new ReadCommand(b)),
    fc.constant(new SettleCommand()),
  ],
  { maxCommands: 40, size: 'large' },
);

const config: fc.Arbitrary<Config> = fc.record({
  blockSize: fc.constantFrom(512, 1024, 4096),
  pages: fc.integer({ min: 2, max: 6 }),
  cachePages: fc.integer({ min: 2, max: 12 }),
  maxDeltas: fc.integer({ min: 1, max: 3 }),
  fork: fc.oneof(fc.constant(true), fc.constant(true), fc.constant(false)),
  seed: fc.nat(),
});

async function play(settings: Config, cmds: Iterable<Command>, device: BlockIo, memory: MemoryDevice | undefined): Promise<Model> {
  const recorder = new Recorder(new FaultDevice(device, { seed: settings.seed, maxTurns: 5 }), settings.blockSize);
  const vol = Volume.over(recorder, {
    blockSize: settings.blockSize,
    cacheSize: settings.cachePages * 4096,
    // No transition but those of commits.
    highWater: 1 << 30,
    maxDeltas: settings.maxDeltas,
    fork: settings.fork,
  });
  const model = new Model(vol.blockCount);
  const real = new Real(vol, recorder, memory, settings.blockSize);
  try {
    await fc.asyncModelRun(() => ({ model, real }), cmds);
    await real.settle();
    await real.commit(model);
  } finally {
    await vol.close().catch(() => undefined);
  }
  return model;
}

function assertHolds(model: Model, read: (block: number) => Buffer, blockSize: number): void {
  for (let b = 0; b < model.blockCount; b++) {
    assert.ok(read(b).equals(content(model.blocks[b], blockSize)), `the device holds the last write of block ${b}`);
  }
}

describe('model-based: the volume against a plain model', () => {
  it('G1, G3, G4 and read-your-writes over a memory device that delays and reorders completions', async () => {
    await fc.assert(
      fc.asyncProperty(config, commands, async (settings, cmds) => {
        const memory = new MemoryDevice({ size: settings.pages * 4096 });
        const model = await play(settings, cmds, memory, memory);
        assertHolds(model, (b) => memory.durable.subarray(b * settings.blockSize, (b + 1) * settings.blockSize), settings.blockSize);
      }),
      { numRuns: 150 },
    );
  });

  it('G1, G3, G4 and read-your-writes on the real Device (O_DIRECT temp file), completions reordered', async () => {
    const temp = new TempDir();
    try {
      await fc.assert(
        fc.asyncProperty(config, commands, async (settings, cmds) => {
          const path = temp.file();
          const device = await Device.open(path, { size: settings.pages * 4096, direct: true });
          const model = await play(settings, cmds, device, undefined);
          const check = await Device.open(path);
          const vol = Volume.over(check, { blockSize: settings.blockSize });
          try {
            const images: Buffer[] = [];
            for (let b = 0; b < model.blockCount; b++) images.push(await vol.read(b));
            assertHolds(model, (b) => images[b], settings.blockSize);
          } finally {
            await vol.close();
          }
        }),
        { numRuns: 50 },
      );
    } finally {
      temp.remove();
    }
  });
});
