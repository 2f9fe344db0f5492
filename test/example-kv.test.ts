import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import type * as KvModule from '../examples/kv/kv';
import type { Report } from '../examples/kv/bench';
import { buildCli } from './cli-support';
import { Device } from '../src/io/device';
import { Volume } from '../src/volume';
import { PowerLossDevice } from './support/power-loss-device';
import { seeded } from './support/random';
import { TempDir } from './support/temp';

/**
 * The key-value store of examples/kv, as a user runs it: it imports
 * 'blockfork' by name, which Node resolves to this package's lib/ (the
 * `exports` self-reference), so lib/ is compiled first and the example is
 * loaded after. Real O_DIRECT files on a disk file system.
 */

const ROOT = path.join(__dirname, '..');
/** The kv store opens journaled by default; the tests run it so. */
const JOURNAL = true;
const MiB = 1 << 20;

let kvm: typeof KvModule;

type Kv = KvModule.Kv;
type Key = Buffer | string;

function bytes(x: Key): Buffer {
  return typeof x === 'string' ? Buffer.from(x, 'utf8') : x;
}

/** The model's name for a key: its bytes. */
function name(key: Key): string {
  return bytes(key).toString('hex');
}

async function contents(kv: Kv): Promise<Map<string, string>> {
  const seen = new Map<string, string>();
  for await (const [key, value] of kv.entries()) {
    assert.ok(!seen.has(key.toString('hex')), `key ${key.toString('hex')} is stored twice`);
    seen.set(key.toString('hex'), value.toString('hex'));
  }
  return seen;
}

/** Every key of the model reads back, and the store holds nothing else. */
async function agrees(kv: Kv, model: Map<string, Buffer>, when: string): Promise<void> {
  for (const [key, value] of model) {
    assert.deepEqual(await kv.get(Buffer.from(key, 'hex')), value, `${when}: get(${key})`);
  }
  const stored = await contents(kv);
  assert.deepEqual(stored, new Map([...model].map(([k, v]) => [k, v.toString('hex')])), `${when}: entries()`);
}

/** `count` distinct keys whose search starts at `home`. */
function keysAt(kv: Kv, home: number, count: number, prefix = 'k'): string[] {
  const keys: string[] = [];
  for (let i = 0; keys.length < count; i++) if (kv.homeBlock(`${prefix}${i}`) === home) keys.push(`${prefix}${i}`);
  return keys;
}

function sameMap(a: ReadonlyMap<string, string>, b: ReadonlyMap<string, string>): boolean {
  return a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);
}

function value(i: number, length = 100): Buffer {
  const v = Buffer.alloc(length, i & 0xff);
  if (length >= 4) v.writeUInt32LE(i, 0);
  return v;
}

describe('examples/kv: a key-value store on blockfork (O_DIRECT temp files)', () => {
  let temp: TempDir;

  before(function () {
    this.timeout(180_000);
    buildCli(); // compiles lib/, which `import ... from 'blockfork'` resolves to
    kvm = require('../examples/kv/kv') as typeof KvModule;
  });

  beforeEach(() => {
    temp = new TempDir();
  });

  afterEach(() => temp.remove());

  const open = (file: string, options: KvModule.KvOptions = {}) => kvm.Kv.open(file, { size: 8 * MiB, journal: JOURNAL, ...options });

  it('puts, gets, overwrites and deletes agree with a Map, across flushes and reopens', async () => {
    const key = fc.oneof(
      fc.constantFrom<Key>('a', 'b', 'apple', '', Buffer.from([0, 1, 2])),
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.uint8Array({ maxLength: kvm.MAX_KEY_BYTES }).map((u) => Buffer.from(u)),
    );
    const val = fc.oneof(fc.string({ maxLength: 60 }), fc.uint8Array({ maxLength: kvm.MAX_VALUE_BYTES }).map((u) => Buffer.from(u)));
    const op = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('put' as const), key, value: val }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), key }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('get' as const), key }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('flush' as const) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('reopen' as const) }) },
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(1, 2, 5, 64), fc.array(op, { maxLength: 60 }), async (tableBlocks, ops) => {
        const file = temp.file();
        const model = new Map<string, Buffer>();
        let kv = await open(file, { tableBlocks });
        try {
          for (const o of ops) {
            if (o.kind === 'put') {
              try {
                await kv.put(o.key, o.value);
                model.set(name(o.key), bytes(o.value));
              } catch (error) {
                // Small tables fill up; a refused put changes nothing.
                assert.ok(error instanceof RangeError && /table is full/.test(error.message), String(error));
              }
            } else if (o.kind === 'delete') {
              assert.equal(await kv.delete(o.key), model.delete(name(o.key)));
            } else if (o.kind === 'get') {
              assert.deepEqual(await kv.get(o.key), model.get(name(o.key)));
            } else if (o.kind === 'flush') {
              await kv.flush();
            } else {
              await kv.close();
              kv = await open(file);
            }
          }
          await agrees(kv, model, 'before close');
          await kv.close();
          kv = await open(file);
          assert.equal(kv.tableBlocks, tableBlocks);
          await agrees(kv, model, 'after reopen');
        } finally {
          await kv.close();
        }
      }),
      { numRuns: 40 },
    );
  });

  it('keys that share a home block overflow into the next blocks, wrap around, and stay findable when others are deleted', async () => {
    const file = temp.file();
    let kv = await open(file, { tableBlocks: 16 });
    const model = new Map<string, Buffer>();
    // Records of 3 + (2 to 5) + 100 bytes: 120 keys homed at block 5 fill blocks 5, 6 and 7 and spill into 8.
    const crowd = keysAt(kv, 5, 120);
    for (const [i, k] of crowd.entries()) {
      await kv.put(k, value(i));
      model.set(name(k), value(i));
    }
    const flags = async (b: number) => (await kv.volume.read(b))[4] & 1;
    assert.deepEqual([await flags(4), await flags(5), await flags(6), await flags(7), await flags(8)], [0, 1, 1, 1, 0], 'OVERFLOW on the blocks passed over');
    // A key homed at 6 now lives past the crowd, and one homed at 9 is not disturbed.
    const [late] = keysAt(kv, 6, 1, 'late');
    const [other] = keysAt(kv, 9, 1, 'other');
    await kv.put(late, 'late');
    await kv.put(other, 'other');
    model.set(name(late), Buffer.from('late'));
    model.set(name(other), Buffer.from('other'));
    await agrees(kv, model, 'crowded');
    // Delete the first half (from the home block): the rest, further on, are still found.
    for (const k of crowd.slice(0, 50)) {
      assert.equal(await kv.delete(k), true);
      model.delete(name(k));
    }
    assert.equal(await kv.delete(crowd[0]), false, 'deleted twice');
    assert.equal(await kv.get(crowd[0]), undefined);
    await agrees(kv, model, 'after deletes');
    // An overwrite that grows moves the record to the first block with room; a new colliding key takes the freed room.
    await kv.put(crowd[119], value(119, 1000));
    model.set(name(crowd[119]), value(119, 1000));
    const [fresh] = keysAt(kv, 5, 1, 'fresh');
    await kv.put(fresh, 'fresh');
    model.set(name(fresh), Buffer.from('fresh'));
    await agrees(kv, model, 'after moves');
    // Wrap-around: keys homed at the last block spill into block 1.
    for (const [i, k] of keysAt(kv, 16, 40, 'wrap').entries()) {
      await kv.put(k, value(i));
      model.set(name(k), value(i));
    }
    assert.equal(await flags(16), 1);
    await agrees(kv, model, 'wrapped');
    await kv.flush();
    await kv.close();
    kv = await open(file);
    await agrees(kv, model, 'after reopen');
    await kv.close();
  });

  it('oversize keys and values are RangeErrors, other types TypeErrors, and the limits themselves fit', async () => {
    const kv = await open(temp.file(), { tableBlocks: 4 });
    try {
      const longest = Buffer.alloc(kvm.MAX_KEY_BYTES, 'k');
      const biggest = Buffer.alloc(kvm.MAX_VALUE_BYTES, 'v');
      await kv.put(longest, biggest);
      assert.deepEqual(await kv.get(longest), biggest);
      await assert.rejects(kv.put(Buffer.alloc(kvm.MAX_KEY_BYTES + 1), 'x'), { name: 'RangeError', message: /key is 256 bytes; the most a key may have is 255 bytes/ });
      await assert.rejects(kv.put('k', Buffer.alloc(kvm.MAX_VALUE_BYTES + 1)), { name: 'RangeError', message: /value is 1025 bytes; the most a value may have is 1024/ });
      // Strings count as UTF-8: 128 characters, 256 bytes.
      await assert.rejects(kv.put('é'.repeat(128), 'x'), { name: 'RangeError', message: /key is 256 bytes/ });
      await assert.rejects(kv.put(longest, 'é'.repeat(513)), { name: 'RangeError', message: /value is 1026 bytes/ });
      await assert.rejects(kv.get(Buffer.alloc(300)), RangeError);
      await assert.rejects(kv.delete(Buffer.alloc(300)), RangeError);
      await assert.rejects(kv.put(42 as unknown as string, 'x'), { name: 'TypeError', message: /key must be a Buffer, Uint8Array or string, got number/ });
      await assert.rejects(kv.put('k', null as unknown as string), { name: 'TypeError', message: /value must be .* got null/ });
      assert.deepEqual(await kv.get(longest), biggest, 'refused puts changed nothing');
      assert.equal((await contents(kv)).size, 1);
    } finally {
      await kv.close();
    }
  });

  it('a full table refuses a put with a RangeError and changes nothing; a delete makes room again', async () => {
    const file = temp.file();
    let kv = await open(file, { tableBlocks: 2 });
    const model = new Map<string, Buffer>();
    // Records of 3 + 3 + 1024 bytes: three fit in a 4088-byte block, with 998 bytes left.
    let i = 0;
    for (; ; i++) {
      const k = `k${i.toString().padStart(2, '0')}`;
      try {
        await kv.put(k, value(i, kvm.MAX_VALUE_BYTES));
      } catch (error) {
        assert.ok(error instanceof RangeError, String(error));
        assert.match(error.message, /the kv table is full: none of its 2 blocks has 1030 bytes free/);
        break;
      }
      model.set(name(k), value(i, kvm.MAX_VALUE_BYTES));
    }
    assert.equal(i, 6);
    // Growing a value that has no room is refused too, and keeps the old value.
    await kv.put('small', 'x');
    model.set(name('small'), Buffer.from('x'));
    await assert.rejects(kv.put('small', Buffer.alloc(1000)), /table is full/);
    await agrees(kv, model, 'full');
    // Smaller records still fit in what is left.
    await kv.put('medium', Buffer.alloc(900, 1));
    model.set(name('medium'), Buffer.alloc(900, 1));
    assert.equal(await kv.delete('k03'), true);
    model.delete(name('k03'));
    await kv.put('k99', value(99, kvm.MAX_VALUE_BYTES));
    model.set(name('k99'), value(99, kvm.MAX_VALUE_BYTES));
    await agrees(kv, model, 'after making room');
    await kv.close();
    kv = await open(file);
    await agrees(kv, model, 'after reopen');
    await kv.close();
  });

  it('flush() commits every put called before it; a copy of the file then (what the disk holds, the process still running) holds the flushed puts and none after', async () => {
    const file = temp.file();
    const kv = await open(file, { tableBlocks: 64 });
    try {
      // Not awaited one by one: the store runs them in call order, and flush() covers them all.
      const puts = Array.from({ length: 200 }, (_, i) => kv.put(`batch1-${i}`, value(i)));
      const flushed = kv.flush();
      const later = kv.put('batch2-0', 'not flushed');
      await Promise.all([...puts, later]);
      const delta = await flushed;
      assert.ok(delta > 0);
      await kv.put('batch2-1', 'not flushed either');
      assert.deepEqual(await kv.get('batch2-0'), Buffer.from('not flushed'), 'the store itself reads its unflushed puts');

      // What is on the disk now, nothing in flight: a copy of the file, opened (the log replays). Crashes: the next test.
      const copy = temp.file();
      fs.copyFileSync(file, copy);
      const disk = await open(copy);
      try {
        for (let i = 0; i < 200; i++) assert.deepEqual(await disk.get(`batch1-${i}`), value(i));
        assert.equal(await disk.get('batch2-0'), undefined);
        assert.equal(await disk.get('batch2-1'), undefined);
        assert.equal((await contents(disk)).size, 200);
      } finally {
        await disk.close();
      }
    } finally {
      await kv.close(); // commits batch 2
    }
    const again = await open(file);
    assert.deepEqual(await again.get('batch2-1'), Buffer.from('not flushed either'), 'close() flushed the rest');
    await again.close();
  });

  it('G5 for the store: after a power cut at any point, a batch of puts followed by flush() is all there or none of it, and every acknowledged batch is', async () => {
    const file = temp.file();
    await (await open(file, { size: 2 * MiB, tableBlocks: 64 })).close();
    const recorder = await PowerLossDevice.wrap(await Device.open(file));
    const kv = await kvm.Kv.on((await Volume.mount(recorder, { journal: true, maxDeltas: 2 })) as unknown as Parameters<typeof kvm.Kv.on>[0]);
    const random = seeded(3);
    const flushes: Promise<unknown>[] = [];
    const BATCHES = 12;
    // Batch b puts its own keys and overwrites 'last' and a few keys of earlier batches.
    const batch = (b: number): [string, Buffer][] => [
      ...Array.from({ length: 6 }, (_, i): [string, Buffer] => [`b${b}-${i}`, value(b * 100 + i)]),
      ['last', value(b)],
      ...(b > 1 ? [[`b${b - 1}-0`, value(b * 1000)] as [string, Buffer]] : []),
    ];
    for (let b = 1; b <= BATCHES; b++) {
      for (const [k, v] of batch(b)) void kv.put(k, v);
      const flushed = kv.flush().then(() => recorder.mark('ack', b));
      if (random() < 0.4) await flushed;
      else flushes.push(flushed);
    }
    await Promise.all(flushes);
    await kv.close();

    /** The store's contents after batches 1..b. */
    const after = (b: number): Map<string, string> => {
      const model = new Map<string, string>();
      for (let i = 1; i <= b; i++) for (const [k, v] of batch(i)) model.set(Buffer.from(k).toString('hex'), v.toString('hex'));
      return model;
    };
    const states = Array.from({ length: BATCHES + 1 }, (_, b) => after(b));
    const points = [...recorder.flushBoundaries(), ...Array.from({ length: 30 }, () => Math.floor(random() * (recorder.events.length + 1)))];
    const crashFile = temp.file();
    const seen = new Set<number>();
    for (const [i, point] of points.entries()) {
      const acked = recorder.lastMark(point, 'ack') ?? 0;
      fs.writeFileSync(crashFile, recorder.crashImage(point, seeded(500 + i)));
      const crashed = await open(crashFile);
      let stored: Map<string, string>;
      try {
        stored = await contents(crashed);
      } finally {
        await crashed.close();
      }
      const whole = states.findIndex((state) => sameMap(state, stored));
      assert.ok(whole >= 0, `crash point ${point}: the store holds no whole batch's state (${stored.size} keys)`);
      assert.ok(whole >= acked, `crash point ${point}: the store holds batch ${whole}, but batch ${acked} was acknowledged`);
      seen.add(whole);
    }
    assert.ok(seen.size > 2, `crashes at different points recover different batches (${[...seen]})`);
  });

  it('refuses a volume whose block 0 is not a kv superblock, and a closed store', async () => {
    const file = temp.file();
    const kv = await open(file, { tableBlocks: 4 });
    await kv.volume.change(async (tx) => (await tx.write(0)).fill(0x5a));
    await kv.close();
    await assert.rejects(open(file), /not a kv store/);
    await assert.rejects(kv.put('a', 'b'), /closed/);
    await assert.rejects(kv.flush(), /closed/);
  });

  it('bench --quick runs both stores end to end and reports positive rates', function () {
    const dir = temp.path;
    const run = spawnSync(process.execPath, ['-r', 'ts-node/register/transpile-only', path.join(ROOT, 'examples', 'kv', 'bench.ts'), '--quick', '--json', '--dir', dir], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 110_000,
    });
    assert.equal(run.status, 0, run.stderr);
    const report = JSON.parse(run.stdout) as Report;
    assert.equal(report.quick, true);
    assert.equal(report.journal, JOURNAL);
    assert.deepEqual(
      report.rows.map((r) => r.batch),
      [1, 100, 10_000],
    );
    for (const row of report.rows) {
      assert.equal(row.blockfork.puts, row.lmdb.puts, 'the same number of puts');
      assert.equal(row.blockforkAutoDeltas, 0, 'each batch was one delta');
      for (const m of [row.blockfork, row.lmdb]) assert.ok(m.putsPerSecond > 0 && Number.isFinite(m.putsPerSecond), JSON.stringify(m));
      assert.ok(row.ratio > 0 && Number.isFinite(row.ratio));
    }
    assert.deepEqual(
      report.clientRows.map((r) => r.clients),
      [1, 8, 64],
    );
    for (const row of report.clientRows) {
      for (const m of [row.blockfork, row.lmdb]) assert.ok(m.puts >= row.clients && m.putsPerSecond > 0, `${row.clients} clients: ${JSON.stringify(m)}`);
    }
  });
});
