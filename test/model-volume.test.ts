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
 * concurrent ones with commits between them), reads, and commits (awaited or
 * not) drive the volume and a plain model side by side, over a device that
 * delays and reorders completions at random. The model is an array of block
 * contents and, per closed delta, the snapshot at the instant it closed.
 *
 * Checked: reads always see the latest writes; when commit N resolves, the
 * device held for delta N exactly the snapshot of N (G1), a flush followed
 * (G3; on the memory device, what a power cut would leave holds N or a later
 * delta), and commits resolve in order with the numbers the model expects
 * (G4). At the end, the device holds the model's last state.
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

interface ClosedDelta {
  readonly number: number;
  readonly snapshot: readonly number[];
  readonly dirty: ReadonlySet<number>;
  /** Which batch of writes is this delta's (-1: it wrote nothing). */
  readonly batch: number;
}

class Model {
  readonly blocks: number[];
  dirty = new Set<number>();
  readonly closed: ClosedDelta[] = [];
  private nextId = 1;
  private batches = 0;

  constructor(readonly blockCount: number) {
    this.blocks = new Array<number>(blockCount).fill(0);
  }

  write(block: number): number {
    const id = this.nextId++;
    this.blocks[block] = id;
    this.dirty.add(block);
    return id;
  }

  close(): ClosedDelta {
    const delta: ClosedDelta = {
      number: this.closed.length + 1,
      snapshot: [...this.blocks],
      dirty: this.dirty,
      batch: this.dirty.size > 0 ? this.batches++ : -1,
    };
    this.closed.push(delta);
    this.dirty = new Set();
    return delta;
  }
}

class Real {
  readonly pending: Promise<void>[] = [];
  readonly resolved: number[] = [];
  failure: unknown;

  constructor(
    readonly vol: Volume,
    readonly recorder: Recorder,
    readonly memory: MemoryDevice | undefined,
    readonly blockSize: number,
  ) {}

  /** Starts a commit of the delta the model has just closed; its checks run when it resolves. */
  commit(model: Model, delta: ClosedDelta): Promise<void> {
    const checked = this.vol.commit().then((number) => this.check(model, delta, number));
    // A commit not awaited now is awaited at the next settle; keep its failure until then.
    checked.catch((error) => (this.failure ??= error));
    return checked;
  }

  async settle(): Promise<void> {
    await Promise.allSettled(this.pending.splice(0));
    if (this.failure !== undefined) throw this.failure;
  }

  private check(model: Model, delta: ClosedDelta, number: number): void {
    assert.equal(number, delta.number, 'commit resolves with the number of the delta it closed');
    assert.ok(this.resolved.every((earlier) => earlier < number), `G4: delta ${number} durable after ${this.resolved.at(-1)}`);
    this.resolved.push(number);
    if (delta.batch === -1) return;
    const batch = this.recorder.batches[delta.batch];
    assert.ok(batch, `delta ${number} wrote a batch`);
    for (const block of delta.dirty) assert.ok(batch.blocks.has(block), `G1: delta ${number} wrote block ${block}`);
    for (const [block, image] of batch.blocks) {
      assert.ok(image.equals(content(delta.snapshot[block], this.blockSize)), `G1: delta ${number} wrote block ${block} as it was when the delta closed`);
    }
    const batchEvent = this.recorder.events.findIndex((e) => e.kind === 'batch' && e.batch === delta.batch);
    assert.ok(this.recorder.events.slice(batchEvent).some((e) => e.kind === 'flush'), `G3: a flush followed delta ${number}'s writes`);
    if (this.memory) {
      for (const block of delta.dirty) {
        const held = this.memory.durable.subarray(block * this.blockSize, (block + 1) * this.blockSize);
        const later = model.closed.slice(number - 1).map((d) => d.snapshot[block]);
        assert.ok(
          later.some((id) => held.equals(content(id, this.blockSize))),
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
      for (const { kind, block: raw } of this.ops) {
        const block = raw % model.blockCount;
        if (kind === 'read') {
          assert.ok((await tx.read(block)).equals(content(model.blocks[block], size)), `tx.read(${block}) sees the latest write`);
        } else {
          const view = kind === 'write' ? await tx.write(block) : await tx.overwrite(block);
          const before = kind === 'write' ? model.blocks[block] : 0;
          assert.ok(view.equals(content(before, size)), `tx.${kind}(${block}) starts from ${kind === 'write' ? 'the latest write' : 'zeros'}`);
          content(model.write(block), size).copy(view);
        }
      }
    });
  }
  toString(): string {
    return `change(${this.ops.map((o) => `${o.kind[0]}${o.block}`).join(' ')})`;
  }
}

/** Changes started together without awaiting, with commits between some of them: the order of calls decides each one's delta. */
class BurstCommand implements Command {
  constructor(readonly changes: readonly { readonly blocks: readonly number[]; readonly commitAfter: boolean }[]) {}
  check(): boolean {
    return true;
  }
  async run(model: Model, real: Real): Promise<void> {
    const started: Promise<void>[] = [];
    let segment = new Set<number>();
    for (const { blocks, commitAfter } of this.changes) {
      // Changes between two commits run concurrently in one delta: give them disjoint blocks, so the outcome is defined.
      const mine = [...new Set(blocks.map((b) => b % model.blockCount))].filter((b) => !segment.has(b));
      for (const b of mine) segment.add(b);
      const writes = mine.map((block) => ({ block, id: model.write(block) }));
      started.push(
        real.vol.change(async (tx) => {
          for (const { block, id } of writes) content(id, real.blockSize).copy(await tx.write(block));
        }),
      );
      if (commitAfter) {
        real.pending.push(real.commit(model, model.close()));
        segment = new Set();
      }
    }
    await Promise.all(started);
  }
  toString(): string {
    return `burst(${this.changes.map((c) => `[${c.blocks.join(',')}]${c.commitAfter ? ' commit' : ''}`).join(' ')})`;
  }
}

class CommitCommand implements Command {
  constructor(readonly wait: boolean) {}
  check(): boolean {
    return true;
  }
  async run(model: Model, real: Real): Promise<void> {
    const commit = real.commit(model, model.close());
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
    // No transition but the model's own: each delta is one the model closed.
    highWater: 1 << 30,
    maxDeltas: settings.maxDeltas,
    fork: settings.fork,
  });
  const model = new Model(vol.blockCount);
  const real = new Real(vol, recorder, memory, settings.blockSize);
  try {
    await fc.asyncModelRun(() => ({ model, real }), cmds);
    await real.settle();
    await real.commit(model, model.close());
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
