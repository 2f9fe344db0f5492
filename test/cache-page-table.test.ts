import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PageTable } from '../src/cache/page-table';

// The page table (page-table.ts): open addressing with backward-shift removal.
// Its model is a Map: after any sequence of operations both must hold the same entries,
// and every lookup must agree, including keys that were removed from the middle of a cluster.

type Op = { kind: 'set'; key: number; frame: number } | { kind: 'delete'; key: number } | { kind: 'clear' };

/** Keys as a cache makes them: runs of neighbours, strides of a power of two, and indexes past 2^32. */
const key = fc.oneof(
  fc.integer({ min: 0, max: 40 }),
  fc.integer({ min: 0, max: 12 }).map((k) => k * 1024),
  fc.integer({ min: 0, max: 12 }).map((k) => 2 ** 33 + k * 2 ** 20),
  fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
);
const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('set' as const), key, frame: fc.integer({ min: 0, max: 2 ** 31 - 1 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('delete' as const), key }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'clear' as const }) },
);

function assertSame(table: PageTable, model: Map<number, number>, probes: readonly number[]): void {
  assert.equal(table.size, model.size);
  assert.deepEqual([...table.values()].sort((a, b) => a - b), [...model.values()].sort((a, b) => a - b));
  for (const [k, frame] of model) assert.equal(table.get(k), frame, `key ${k}`);
  for (const k of probes) {
    assert.equal(table.get(k), model.get(k), `probe ${k}`);
    assert.equal(table.has(k), model.has(k), `has ${k}`);
  }
}

describe('page table: a hash table on typed arrays, checked against a Map', () => {
  it('holds what a Map holds after any sequence of sets, deletes and clears (property)', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const table = new PageTable();
        const model = new Map<number, number>();
        const probes: number[] = [];
        for (const o of ops) {
          if (o.kind === 'clear') {
            table.clear();
            model.clear();
            continue;
          }
          probes.push(o.key);
          if (o.kind === 'set') {
            table.set(o.key, o.frame);
            model.set(o.key, o.frame);
          } else {
            assert.equal(table.delete(o.key), model.delete(o.key), `delete ${o.key}`);
          }
        }
        assertSame(table, model, probes);
      }),
      { numRuns: 300 },
    );
  });

  it('in its smallest size, where clusters wrap past the last slot, every removal leaves the rest findable (property)', () => {
    // At most 8 keys keep the table at its first 16 slots: a cluster that reaches the end goes on at slot 0.
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 2 ** 40 }), { minLength: 2, maxLength: 8 }), fc.infiniteStream(fc.nat()), (keys, picks) => {
        const table = new PageTable();
        const model = new Map<number, number>();
        keys.forEach((k, i) => {
          table.set(k, i);
          model.set(k, i);
        });
        const left = [...keys];
        const pick = picks[Symbol.iterator]();
        while (left.length > 0) {
          const [k] = left.splice((pick.next().value as number) % left.length, 1);
          assert.equal(table.delete(k), true);
          model.delete(k);
          assertSame(table, model, [k]);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('a stream that adds a page and removes the oldest keeps every page findable, across growth and wrap-around', () => {
    const table = new PageTable();
    const model = new Map<number, number>();
    const window = 3000;
    for (let k = 0; k < 20000; k++) {
      table.set(k, k % 65536);
      model.set(k, k % 65536);
      if (k >= window) {
        assert.equal(table.delete(k - window), true);
        model.delete(k - window);
      }
      if (k % 997 === 0) assertSame(table, model, [k - window, k - window + 1, k + 1]);
    }
    assertSame(table, model, []);
  });

  it('keys at a large power-of-two stride stay findable and removable one by one', () => {
    const table = new PageTable();
    const keys = Array.from({ length: 2000 }, (_, i) => i * 2 ** 20);
    keys.forEach((k, i) => table.set(k, i));
    keys.forEach((k, i) => assert.equal(table.get(k), i));
    // Removed from the middle outwards: each removal shifts later entries of a cluster back.
    for (let i = 0; i < keys.length; i += 2) assert.equal(table.delete(keys[i]), true);
    keys.forEach((k, i) => assert.equal(table.get(k), i % 2 === 0 ? undefined : i));
    assert.equal(table.size, keys.length / 2);
  });

  it('values() is a copy: a caller may remove entries while it walks them', () => {
    const table = new PageTable();
    for (let k = 0; k < 100; k++) table.set(k, 1000 + k);
    let walked = 0;
    for (const frame of table.values()) {
      assert.equal(table.delete(frame - 1000), true);
      walked++;
    }
    assert.equal(walked, 100);
    assert.equal(table.size, 0);
  });

  it('refuses a key that it could never find again', () => {
    const table = new PageTable();
    for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 53]) {
      assert.throws(() => table.set(bad, 0), { name: 'RangeError', message: `page index must be a non-negative integer, got ${String(bad)}` });
    }
    assert.equal(table.size, 0);
  });
});
