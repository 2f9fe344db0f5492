import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Allocator, type Run } from '../src/journal/allocator';

/**
 * The physical-area allocator of redirect-on-write volumes, against a model
 * that keeps an owner per physical block: FREE, USED, or the delta whose
 * deferred free is waiting for its checkpoint. Random histories play deltas
 * that redirect runs of logical blocks (allocate new physical blocks, defer
 * the free of the old ones), close, and get checkpointed some deltas behind.
 */

const FREE = -2;
const USED = -1;
/** Freed, but held by the caller (as redirect.ts holds a block a logged image targets) until freeNow. */
const HELD = -3;

/** The free extents of a per-block owner array: ascending, coalesced. */
function runsOf(owner: readonly number[], isFree: (o: number) => boolean): Run[] {
  const runs: Run[] = [];
  for (let b = 0; b < owner.length; b++) {
    if (!isFree(owner[b])) continue;
    const last = runs[runs.length - 1];
    if (last && last.start + last.length === b) runs[runs.length - 1] = { start: last.start, length: last.length + 1 };
    else runs.push({ start: b, length: 1 });
  }
  return runs;
}

/**
 * Next-fit as specified, on the model: the first extent in cursor order
 * that holds `count` (the extent the cursor is in counts from the cursor
 * first, whole last), else the first free blocks in cyclic order from the
 * cursor, up to `count`.
 */
function referenceAllocate(owner: readonly number[], cursor: number, count: number): { runs: Run[]; cursor: number } {
  const P = owner.length;
  const extents = runsOf(owner, (o) => o === FREE);
  if (count === 0 || extents.length === 0) return { runs: [], cursor };
  const after = extents.findIndex((e) => e.start + e.length > cursor);
  const first = after < 0 ? 0 : after;
  const from = after < 0 ? extents[0].start : Math.max(extents[first].start, cursor);
  const candidates: Run[] = [{ start: from, length: extents[first].start + extents[first].length - from }];
  for (let k = 1; k < extents.length; k++) candidates.push(extents[(first + k) % extents.length]);
  if (from > extents[first].start) candidates.push(extents[first]);
  const fit = candidates.find((c) => c.length >= count);
  if (fit) return { runs: [{ start: fit.start, length: count }], cursor: fit.start + count };
  const order: number[] = [];
  for (let k = 0; k < P; k++) {
    const b = (from + k) % P;
    if (owner[b] === FREE) order.push(b);
  }
  const runs: Run[] = [];
  for (const b of order.slice(0, count)) {
    const last = runs[runs.length - 1];
    if (last && last.start + last.length === b) runs[runs.length - 1] = { start: last.start, length: last.length + 1 };
    else runs.push({ start: b, length: 1 });
  }
  const last = runs[runs.length - 1];
  return { runs, cursor: last.start + last.length };
}

/** The runs of consecutive values in `blocks` (in the order given). */
function consecutive(blocks: readonly number[]): Run[] {
  const runs: Run[] = [];
  for (const b of blocks) {
    const last = runs[runs.length - 1];
    if (last && last.start + last.length === b) runs[runs.length - 1] = { start: last.start, length: last.length + 1 };
    else runs.push({ start: b, length: 1 });
  }
  return runs;
}

type Op =
  | { kind: 'redirect'; logical: number; length: number; hold: number }
  | { kind: 'release' }
  | { kind: 'doubleFreeNow'; block: number; length: number }
  | { kind: 'close' }
  | { kind: 'checkpoint'; pick: number }
  | { kind: 'doubleFree'; block: number; length: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('redirect' as const), logical: fc.nat({ max: 1000 }), length: fc.integer({ min: 1, max: 24 }), hold: fc.nat({ max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('release' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('doubleFreeNow' as const), block: fc.nat({ max: 1000 }), length: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('close' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('checkpoint' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('doubleFree' as const), block: fc.nat({ max: 1000 }), length: fc.integer({ min: 1, max: 4 }) }) },
);

const area = fc
  .record({ logical: fc.integer({ min: 1, max: 96 }), reserve: fc.integer({ min: 0, max: 64 }) })
  .map(({ logical, reserve }) => ({ N: logical, P: logical + reserve }));

/** A volume's map and owners beside an Allocator, driven by ops; check() after each. */
class Scenario {
  readonly owner: number[];
  /** logical -> physical */
  readonly map: number[];
  readonly allocator: Allocator;
  cursor = 0;
  openDelta = 1;
  lastCheckpoint = -1;

  constructor(readonly P: number, readonly N: number) {
    this.owner = Array.from({ length: P }, (_, b) => (b < N ? USED : FREE));
    this.map = Array.from({ length: N }, (_, l) => l);
    this.allocator = new Allocator(P, P > N ? [{ start: N, length: P - N }] : []);
  }

  apply(o: Op): void {
    const a = this.allocator;
    switch (o.kind) {
      case 'redirect': {
        const first = o.logical % this.N;
        const length = Math.min(o.length, this.N - first);
        const expected = referenceAllocate(this.owner, this.cursor, length);
        const runs = a.allocate(length);
        assert.deepEqual(runs, expected.runs, `allocate(${length}) from cursor ${this.cursor}`);
        const total = runs.reduce((sum, r) => sum + r.length, 0);
        const freeBefore = this.owner.filter((x) => x === FREE).length;
        assert.equal(total, Math.min(length, freeBefore), 'allocate returns less only when less is free');
        const fresh: number[] = [];
        for (const r of runs) {
          assert.ok(r.length > 0 && r.start >= 0 && r.start + r.length <= this.P, `run ${r.start}+${r.length} in the area`);
          for (let b = r.start; b < r.start + r.length; b++) {
            assert.equal(this.owner[b], FREE, `block ${b} handed out while ${this.owner[b] === USED ? 'used' : `pending delta ${this.owner[b]}'s checkpoint`}`);
            this.owner[b] = USED;
            fresh.push(b);
          }
        }
        this.cursor = expected.cursor;
        // The first `total` logical blocks move to the new blocks; the rest would be logged whole.
        const old = fresh.map((_, k) => this.map[first + k]);
        fresh.forEach((b, k) => (this.map[first + k] = b));
        for (const r of consecutive(old)) {
          // One redirect in four holds its frees instead (a logged image still targets them): freeNow releases them.
          if (o.hold === 0) {
            for (let b = r.start; b < r.start + r.length; b++) this.owner[b] = HELD;
            continue;
          }
          a.deferFree(this.openDelta, r);
          for (let b = r.start; b < r.start + r.length; b++) this.owner[b] = this.openDelta;
        }
        break;
      }
      case 'release': {
        // Every held block at once, as ascending runs (several, coalescing with free extents and each other).
        const held = runsOf(this.owner, (x) => x === HELD);
        a.freeNow(held);
        for (const r of held) for (let b = r.start; b < r.start + r.length; b++) this.owner[b] = FREE;
        break;
      }
      case 'doubleFreeNow': {
        const start = o.block % this.P;
        const run = { start, length: Math.min(o.length, this.P - start) };
        const blocks = this.owner.slice(run.start, run.start + run.length);
        if (!blocks.some((x) => x === FREE || x >= 0)) break; // nothing free or pending in it: not this op's business
        const before = { extents: a.extents(), pending: a.pendingRuns(), free: a.free, used: a.used };
        // Behind a legal run, so that the refusal also undoes nothing of a batch: the whole call changes nothing.
        const legal = runsOf(this.owner, (x) => x === HELD).filter((r) => r.start + r.length <= run.start);
        assert.throws(() => a.freeNow([...legal, run]), (error: Error & { code?: string }) => {
          assert.equal(error.code, 'ERR_DOUBLE_FREE');
          const found = /physical block (\d+) is (free|pending) already \(run (\d+)\.\.(\d+)\)/.exec(error.message);
          assert.ok(found, error.message);
          const block = Number(found[1]);
          assert.deepEqual([Number(found[3]), Number(found[4])], [run.start, run.start + run.length - 1], 'the run is named');
          assert.ok(block >= run.start && block < run.start + run.length, `block ${block} is in the run`);
          assert.ok(found[2] === 'free' ? this.owner[block] === FREE : this.owner[block] >= 0, `block ${block} is ${found[2]}`);
          return true;
        });
        assert.deepEqual({ extents: a.extents(), pending: a.pendingRuns(), free: a.free, used: a.used }, before, 'a refused freeNow changes nothing');
        break;
      }
      case 'close':
        this.openDelta++;
        break;
      case 'checkpoint': {
        // Checkpoints trail the deltas: any closed delta from the last checkpoint on.
        const newest = this.openDelta - 1;
        if (newest < 0 || newest < this.lastCheckpoint) break;
        const low = Math.max(this.lastCheckpoint, 0);
        const delta = low + (o.pick % (newest - low + 1));
        a.checkpointed(delta);
        this.lastCheckpoint = delta;
        for (let b = 0; b < this.P; b++) if (this.owner[b] >= 0 && this.owner[b] <= delta) this.owner[b] = FREE;
        break;
      }
      case 'doubleFree': {
        const start = o.block % this.P;
        const run = { start, length: Math.min(o.length, this.P - start) };
        const blocks = this.owner.slice(run.start, run.start + run.length);
        if (!blocks.some((x) => x === FREE || x >= 0)) break; // a legal free (used or held blocks only): not this op's business
        const before = { extents: a.extents(), pending: a.pendingRuns(), free: a.free, used: a.used };
        assert.throws(() => a.deferFree(this.openDelta, run), { code: 'ERR_DOUBLE_FREE' });
        assert.deepEqual({ extents: a.extents(), pending: a.pendingRuns(), free: a.free, used: a.used }, before, 'a refused free changes nothing');
        break;
      }
    }
  }

  check(): void {
    const a = this.allocator;
    const modelFree = this.owner.filter((x) => x === FREE).length;
    const modelPending = this.owner.filter((x) => x >= 0).length;
    assert.equal(a.free, modelFree, 'free');
    assert.equal(a.pending, modelPending, 'pending');
    assert.equal(a.used, this.P - modelFree - modelPending, 'used');
    assert.equal(a.free + a.pending + a.used, this.P);
    const extents = a.extents();
    for (let k = 0; k < extents.length; k++) {
      assert.ok(extents[k].length > 0, 'extents are not empty');
      if (k > 0) assert.ok(extents[k - 1].start + extents[k - 1].length < extents[k].start, 'extents ascending, disjoint and coalesced');
    }
    assert.deepEqual(extents, runsOf(this.owner, (x) => x === FREE), 'extents() is the model free set');
    const pendingOwner = new Array<number>(this.P).fill(USED);
    for (const r of a.pendingRuns()) {
      for (let b = r.start; b < r.start + r.length; b++) {
        assert.equal(pendingOwner[b], USED, `block ${b} pending twice`);
        pendingOwner[b] = r.delta;
      }
    }
    assert.deepEqual(pendingOwner, this.owner.map((x) => (x >= 0 ? x : USED)), 'pending blocks, each with the delta that freed it');
    // The model itself: used blocks are exactly the map's image.
    const image = new Set(this.map);
    assert.equal(image.size, this.N);
    this.owner.forEach((x, b) => assert.equal(x === USED, image.has(b), `block ${b}: used iff mapped`));
  }

  /** The map as fromMap takes it: the non-identity entries, plus identity ones where `withIdentity` says. */
  entries(withIdentity: (logical: number) => boolean): [number, number][] {
    return this.map.flatMap((p, l) => (p !== l || withIdentity(l) ? [[l, p] as [number, number]] : []));
  }
}

describe('journal: physical-area allocator', () => {
  describe('model', () => {
    it('random deltas that redirect runs, close and get checkpointed: no block out twice, none before its checkpoint, extents exact', () => {
      fc.assert(
        fc.property(area, fc.array(op, { maxLength: 80 }), ({ P, N }, ops) => {
          const s = new Scenario(P, N);
          s.check();
          for (const o of ops) {
            s.apply(o);
            s.check();
          }
        }),
        { numRuns: 300 },
      );
    });

    it('fromMap rebuilds free space from the map after a random history (pending counts free: the map is the checkpointed state)', () => {
      fc.assert(
        fc.property(area, fc.array(op, { maxLength: 80 }), fc.array(fc.boolean(), { minLength: 96, maxLength: 96 }), fc.boolean(), ({ P, N }, ops, identity, reverse) => {
          const s = new Scenario(P, N);
          for (const o of ops) s.apply(o);
          const entries = s.entries((l) => identity[l]);
          if (reverse) entries.reverse();
          const expected = runsOf(s.owner, (x) => x !== USED);
          const rebuilt = Allocator.fromMap(P, N, entries);
          assert.deepEqual(rebuilt.extents(), expected);
          assert.equal(rebuilt.free, P - N);
          assert.equal(rebuilt.pending, 0);
          assert.equal(rebuilt.used, N);
          const once = Allocator.fromMap(P, N, (function* () { yield* entries; })());
          assert.deepEqual(once.extents(), expected, 'a one-shot iterator rebuilds the same');
        }),
        { numRuns: 200 },
      );
    });

    it('fromMap refuses a map in which two logical blocks share a physical one, naming it', () => {
      fc.assert(
        fc.property(area, fc.array(op, { maxLength: 60 }), fc.nat(), fc.nat(), ({ P, N }, ops, x, y) => {
          fc.pre(N >= 2);
          const s = new Scenario(P, N);
          for (const o of ops) s.apply(o);
          const a = x % N;
          const b = (a + 1 + (y % (N - 1))) % N;
          const shared = s.map[b];
          const map = [...s.map];
          map[a] = shared;
          const entries = map.flatMap((p, l) => (p !== l ? [[l, p] as [number, number]] : []));
          assert.throws(() => Allocator.fromMap(P, N, entries), (error: Error & { code?: string }) => {
            assert.equal(error.code, 'ERR_MAP_CORRUPT');
            assert.match(error.message, new RegExp(`physical block ${shared} is referenced by `));
            return true;
          });
          assert.throws(() => Allocator.fromMap(P, N, entries.values()), { code: 'ERR_MAP_CORRUPT' }, 'one-shot iterator');
        }),
        { numRuns: 200 },
      );
    });
  });

  describe('next-fit', () => {
    it('a stream of allocate(64) on a fresh area gives one contiguous run after another, then less only when less is free', () => {
      const N = 1000;
      const P = N + 64 * 100 + 10;
      const a = new Allocator(P, [{ start: N, length: P - N }]);
      for (let k = 0; k < 100; k++) assert.deepEqual(a.allocate(64), [{ start: N + 64 * k, length: 64 }]);
      assert.deepEqual(a.allocate(64), [{ start: P - 10, length: 10 }], 'the 10 left');
      assert.deepEqual(a.allocate(64), []);
      assert.equal(a.free, 0);
      assert.equal(a.used, P);
    });

    it('the stream keeps going past the cursor while blocks behind it are freed, and wraps round to them', () => {
      const a = new Allocator(1000, [{ start: 0, length: 1000 }]);
      assert.deepEqual(a.allocate(100), [{ start: 0, length: 100 }]);
      a.deferFree(1, { start: 0, length: 50 });
      a.checkpointed(1);
      assert.deepEqual(a.allocate(100), [{ start: 100, length: 100 }], 'not back to block 0');
      assert.deepEqual(a.allocate(800), [{ start: 200, length: 800 }]);
      assert.deepEqual(a.allocate(30), [{ start: 0, length: 30 }], 'wrapped');
      assert.deepEqual(a.allocate(30), [{ start: 30, length: 20 }], 'less: 20 free');
    });

    it('freed blocks just behind the cursor join its extent, and the stream still goes on from the cursor', () => {
      const a = new Allocator(1000, [{ start: 0, length: 1000 }]);
      assert.deepEqual(a.allocate(100), [{ start: 0, length: 100 }]);
      a.deferFree(1, { start: 50, length: 50 });
      a.checkpointed(1);
      assert.deepEqual(a.extents(), [{ start: 50, length: 950 }]);
      assert.deepEqual(a.allocate(10), [{ start: 100, length: 10 }], 'from the cursor, not from the start of its extent');
    });

    it('a whole fit from a cursor inside an extent: short of its end the extent splits round the run, up to its end it keeps its head', () => {
      const inside = () => {
        const a = new Allocator(100, [{ start: 0, length: 100 }]);
        assert.deepEqual(a.allocate(50), [{ start: 0, length: 50 }]);
        a.deferFree(1, { start: 0, length: 50 });
        a.checkpointed(1);
        assert.deepEqual(a.extents(), [{ start: 0, length: 100 }], 'the cursor (50) is inside the one extent');
        return a;
      };
      const split = inside();
      assert.deepEqual(split.allocate(10), [{ start: 50, length: 10 }]);
      assert.deepEqual(split.extents(), [{ start: 0, length: 50 }, { start: 60, length: 40 }]);
      assert.equal(split.free, 90);
      assert.deepEqual(split.allocate(40), [{ start: 60, length: 40 }], 'the tail after the split');
      assert.deepEqual(split.allocate(50), [{ start: 0, length: 50 }], 'then the head, whole');
      const tail = inside();
      assert.deepEqual(tail.allocate(50), [{ start: 50, length: 50 }], 'from the cursor to the end of its extent');
      assert.deepEqual(tail.extents(), [{ start: 0, length: 50 }]);
      assert.equal(tail.free, 50);
    });

    it('prefers an extent that holds the whole count to pieces, and takes pieces in cursor order when none does', () => {
      const a = new Allocator(100, [
        { start: 60, length: 5 },
        { start: 10, length: 3 },
        { start: 30, length: 8 },
        { start: 80, length: 4 },
      ]);
      assert.deepEqual(a.allocate(6), [{ start: 30, length: 6 }], 'the first that holds 6, not the first extent');
      assert.deepEqual(a.allocate(4), [{ start: 60, length: 4 }], 'from the cursor (36): 36..37 holds 2 only');
      assert.deepEqual(a.allocate(9), [
        { start: 64, length: 1 },
        { start: 80, length: 4 },
        { start: 10, length: 3 },
        { start: 36, length: 1 },
      ]);
      assert.deepEqual(a.extents(), [{ start: 37, length: 1 }]);
    });

    it('the extent the cursor is in counts from the cursor first, whole last', () => {
      const a = new Allocator(100, [{ start: 0, length: 100 }]);
      a.allocate(100);
      for (const start of [10, 50]) a.deferFree(1, { start, length: 10 });
      a.checkpointed(1);
      assert.deepEqual(a.allocate(5), [{ start: 10, length: 5 }], 'wrapped to block 10 (cursor at 100)');
      assert.deepEqual(a.allocate(8), [{ start: 50, length: 8 }], '15..19 holds 5 only: the next extent');
      assert.deepEqual(a.allocate(2), [{ start: 58, length: 2 }]);
      a.deferFree(2, { start: 0, length: 10 });
      a.checkpointed(2);
      assert.deepEqual(a.extents(), [{ start: 0, length: 10 }, { start: 15, length: 5 }]);
      assert.deepEqual(a.allocate(12), [{ start: 0, length: 10 }, { start: 15, length: 2 }], 'pieces in cursor order from 60: wraps to 0');
      assert.deepEqual(a.allocate(3), [{ start: 17, length: 3 }]);
    });
  });

  describe('deferred free', () => {
    it('a block a delta frees is not allocatable until that delta is checkpointed', () => {
      const a = new Allocator(10, [{ start: 5, length: 5 }]);
      assert.deepEqual(a.allocate(5), [{ start: 5, length: 5 }]);
      a.deferFree(3, { start: 0, length: 2 });
      a.deferFree(5, { start: 2, length: 1 });
      assert.equal(a.pending, 3);
      assert.deepEqual(a.allocate(1), []);
      a.checkpointed(2);
      assert.deepEqual(a.allocate(1), [], 'checkpoint 2 is before delta 3');
      a.checkpointed(4);
      assert.equal(a.pending, 1);
      assert.deepEqual(a.extents(), [{ start: 0, length: 2 }]);
      assert.deepEqual(a.allocate(3), [{ start: 0, length: 2 }], "delta 5's block is still pending");
      a.checkpointed(4);
      assert.deepEqual(a.allocate(1), [], 'the same checkpoint again releases nothing new');
      a.checkpointed(5);
      assert.deepEqual(a.allocate(1), [{ start: 2, length: 1 }]);
      assert.equal(a.used, 10);
    });

    it('released runs coalesce with each other and with free extents', () => {
      const a = new Allocator(40, [{ start: 0, length: 10 }]);
      a.deferFree(1, { start: 10, length: 5 });
      a.deferFree(2, { start: 15, length: 5 });
      a.deferFree(1, { start: 20, length: 5 });
      a.deferFree(1, { start: 25, length: 5 });
      assert.deepEqual(a.pendingRuns(), [
        { start: 10, length: 5, delta: 1 },
        { start: 15, length: 5, delta: 2 },
        { start: 20, length: 10, delta: 1 },
      ]);
      a.checkpointed(2);
      assert.deepEqual(a.extents(), [{ start: 0, length: 30 }]);
      assert.equal(a.free, 30);
      assert.equal(a.pending, 0);
    });

    it('ERR_DOUBLE_FREE for a block already free or pending, changing nothing', () => {
      const a = new Allocator(20, [{ start: 10, length: 5 }]);
      a.deferFree(1, { start: 0, length: 3 });
      const state = () => ({ extents: a.extents(), pending: a.pendingRuns(), free: a.free, used: a.used });
      const before = state();
      assert.throws(() => a.deferFree(1, { start: 12, length: 1 }), { code: 'ERR_DOUBLE_FREE', message: /physical block 12, which is free/ });
      assert.throws(() => a.deferFree(2, { start: 8, length: 3 }), { code: 'ERR_DOUBLE_FREE', message: /physical block 10, which is free/ }, 'overlaps the start of a free extent');
      assert.throws(() => a.deferFree(2, { start: 14, length: 3 }), { code: 'ERR_DOUBLE_FREE', message: /physical block 14/ }, 'overlaps its end');
      assert.throws(() => a.deferFree(2, { start: 2, length: 1 }), { code: 'ERR_DOUBLE_FREE', message: /physical block 2, which delta 1 freed/ });
      assert.throws(() => a.deferFree(1, { start: 0, length: 1 }), { code: 'ERR_DOUBLE_FREE' }, 'same delta');
      assert.throws(() => a.deferFree(2, { start: 5, length: 20 - 5 }), { code: 'ERR_DOUBLE_FREE' }, 'spans a free extent');
      assert.deepEqual(state(), before);
      a.deferFree(2, { start: 3, length: 7 });
      assert.equal(a.used, 20 - 5 - 10);
    });
  });

  describe('freeNow', () => {
    it('makes held runs free at once, coalescing them with free extents, and refuses runs out of order or already free or pending, changing nothing', () => {
      const a = new Allocator(40, [{ start: 10, length: 5 }]);
      a.deferFree(1, { start: 30, length: 4 });
      a.freeNow([{ start: 5, length: 5 }, { start: 15, length: 2 }, { start: 20, length: 3 }]);
      assert.deepEqual(a.extents(), [{ start: 5, length: 12 }, { start: 20, length: 3 }]);
      assert.equal(a.free, 15);
      assert.equal(a.pending, 4);
      const state = () => ({ extents: a.extents(), pending: a.pendingRuns(), free: a.free, used: a.used });
      const before = state();
      assert.throws(() => a.freeNow([{ start: 3, length: 2 }, { start: 0, length: 2 }]), { name: 'RangeError', message: 'runs must be ascending and disjoint: 0 follows 4' });
      assert.throws(() => a.freeNow([{ start: 0, length: 3 }, { start: 2, length: 2 }]), { name: 'RangeError', message: 'runs must be ascending and disjoint: 2 follows 2' }, 'overlapping runs');
      assert.throws(() => a.freeNow([{ start: 0, length: 2 }, { start: 3, length: 3 }]), { code: 'ERR_DOUBLE_FREE', message: 'physical block 5 is free already (run 3..5)' });
      assert.throws(() => a.freeNow([{ start: 25, length: 8 }]), { code: 'ERR_DOUBLE_FREE', message: 'physical block 30 is pending already (run 25..32)' });
      assert.throws(() => a.freeNow([{ start: 33, length: 2 }]), { code: 'ERR_DOUBLE_FREE', message: 'physical block 33 is pending already (run 33..34)' });
      assert.throws(() => a.freeNow([{ start: 38, length: 3 }]), { code: 'ERR_OUT_OF_RANGE', message: 'run 38..40 is outside the physical area (blocks 0..39)' });
      assert.deepEqual(state(), before);
      a.freeNow([]);
      assert.deepEqual(state(), before, 'no runs, no change');
      a.freeNow([{ start: 17, length: 3 }]);
      assert.deepEqual(a.extents(), [{ start: 5, length: 18 }], 'a run between two extents joins them');
      assert.deepEqual(a.allocate(18), [{ start: 5, length: 18 }], 'and the joined extent is allocatable whole');
    });
  });

  describe('arguments', () => {
    it('refuses bad arguments with errors that name them', () => {
      const max = Number.MAX_SAFE_INTEGER;
      assert.throws(() => new Allocator('10' as unknown as number, []), { name: 'TypeError', message: 'physicalBlocks must be a number, not string' });
      assert.throws(() => new Allocator(1.5, []), { name: 'RangeError', message: `physicalBlocks must be an integer in 0..${max}, not 1.5` });
      for (const free of [null, undefined, 5, {}]) {
        assert.throws(() => new Allocator(10, free as unknown as Run[]), { name: 'TypeError', message: 'free must be an iterable of runs ({ start, length })' }, String(free));
      }
      assert.throws(() => new Allocator(10, [null as unknown as Run]), { name: 'TypeError', message: 'free extent must be a run ({ start, length }), not null' });
      assert.throws(() => new Allocator(10, [7 as unknown as Run]), { name: 'TypeError', message: 'free extent must be a run ({ start, length }), not 7' });
      assert.throws(() => new Allocator(10, [{ start: -1, length: 1 }]), { name: 'RangeError', message: `free extent.start must be an integer in 0..${max}, not -1` });
      assert.throws(() => new Allocator(10, [{ start: 1, length: 0 }]), { name: 'RangeError', message: `free extent.length must be an integer in 1..${max}, not 0` });
      assert.throws(() => new Allocator(10, [{ start: 8, length: 3 }]), { code: 'ERR_OUT_OF_RANGE', message: 'free extent 8..10 is outside the physical area (blocks 0..9)' });
      assert.throws(() => new Allocator(10, [{ start: 0, length: 5 }, { start: 3, length: 4 }]), { name: 'RangeError', message: 'free extents overlap at block 3 (0..4 and 3..6)' });
      // Extents in any order, adjacent ones coalesced.
      const a = new Allocator(10, [{ start: 6, length: 4 }, { start: 0, length: 2 }, { start: 2, length: 4 }]);
      assert.deepEqual(a.extents(), [{ start: 0, length: 10 }]);
      assert.equal(a.free, 10);
      assert.throws(() => a.allocate(-1), { name: 'RangeError', message: `count must be an integer in 0..${max}, not -1` });
      assert.throws(() => a.deferFree(-1, { start: 0, length: 1 }), { name: 'RangeError', message: `delta must be an integer in 0..${max}, not -1` });
      assert.throws(() => a.deferFree(1, null as unknown as Run), { name: 'TypeError', message: 'run must be a run ({ start, length }), not null' });
      assert.throws(() => a.checkpointed(0.5), { name: 'RangeError', message: `delta must be an integer in 0..${max}, not 0.5` });
      assert.throws(() => Allocator.fromMap('1' as unknown as number, 0, []), { name: 'TypeError', message: 'physicalBlocks must be a number, not string' });
      assert.throws(() => Allocator.fromMap(10, 11, []), { name: 'RangeError', message: 'logicalBlocks must be an integer in 0..10, not 11' });
      for (const entries of [null, undefined, 3, {}]) {
        assert.throws(() => Allocator.fromMap(10, 5, entries as unknown as [number, number][]), { name: 'TypeError', message: 'entries must be an iterable of [logical, physical] pairs' }, String(entries));
      }
    });

    it('deferFree names the run it refuses', () => {
      const a = new Allocator(20, [{ start: 10, length: 5 }]);
      a.deferFree(4, { start: 0, length: 3 });
      assert.throws(() => a.deferFree(5, { start: 8, length: 3 }), { code: 'ERR_DOUBLE_FREE', message: 'delta 5 frees physical block 10, which is free already (run 8..10)' });
      assert.throws(() => a.deferFree(5, { start: 1, length: 4 }), { code: 'ERR_DOUBLE_FREE', message: 'delta 5 frees physical block 1, which delta 4 freed already (pending its checkpoint; run 1..4)' });
    });
  });

  describe('fromMap', () => {
    it('identity map: the reserve is free; entries move blocks', () => {
      assert.deepEqual(Allocator.fromMap(100, 80, []).extents(), [{ start: 80, length: 20 }]);
      assert.deepEqual(Allocator.fromMap(80, 80, []).extents(), []);
      assert.deepEqual(Allocator.fromMap(100, 80, [[3, 3], [79, 79]]).extents(), [{ start: 80, length: 20 }], 'entries equal to identity');
      const a = Allocator.fromMap(100, 80, [[5, 90], [6, 5], [40, 81], [41, 6]]);
      assert.deepEqual(a.extents(), [{ start: 40, length: 2 }, { start: 80, length: 1 }, { start: 82, length: 8 }, { start: 91, length: 9 }]);
      assert.equal(a.used, 80);
      assert.equal(Allocator.fromMap(0, 0, []).free, 0);
    });

    it('ERR_MAP_CORRUPT naming the blocks: two entries, an entry and an identity block, out of range', () => {
      const corrupt = (entries: [number, number][], message: RegExp) =>
        assert.throws(() => Allocator.fromMap(100, 80, entries), (error: Error & { code?: string }) => {
          assert.equal(error.code, 'ERR_MAP_CORRUPT');
          assert.match(error.message, message);
          return true;
        });
      corrupt([[1, 90], [2, 90]], /physical block 90 is referenced by logical 1 and logical 2/);
      corrupt([[1, 7]], /physical block 7 is referenced by logical 1 and logical 7 \(identity\)/);
      corrupt([[1, 7], [7, 7]], /physical block 7 is referenced by logical 1 and logical 7 \(identity\)/);
      corrupt([[1, 90], [2, 90], [3, 90]], /physical block 90 is referenced by logical 1 and logical 2 and logical 3/);
      corrupt([[80, 81]], /entry \[logical 80, physical 81\] is out of range/);
      corrupt([[1, 100]], /entry \[logical 1, physical 100\] is out of range/);
      corrupt([[-1, 90]], /out of range/);
      corrupt([[1.5, 90]], /out of range/);
      corrupt([[1, 90], [1, 91]], /logical block 1 has 2 entries \(physical 90, 91\)/);
      assert.throws(() => Allocator.fromMap(100, 80, new Map([[1, 7]]).entries()), { code: 'ERR_MAP_CORRUPT' });
      // A one-shot iterator cannot be read twice to name the blocks: the message says how many are in use and how to get names.
      assert.throws(() => Allocator.fromMap(100, 80, new Map([[1, 90], [2, 90]]).entries()), {
        code: 'ERR_MAP_CORRUPT',
        message: /^block map references physical blocks more than once: \d+ blocks in use where 80 logical blocks are mapped \(pass the map as an array or a Map to name the blocks\)$/,
      });
    });

    it('ERR_MAP_CORRUPT names eight problems and counts the rest, through either way of reading the map', () => {
      // Ten physical blocks each referenced by two entries: ten problems.
      const entries: [number, number][] = [];
      for (let k = 0; k < 10; k++) entries.push([2 * k + 1, 85 + k], [2 * k + 2, 85 + k]);
      // 20 entries beside 100 blocks: the bitmap; beside 4000 blocks (N 3990): the sorted lists.
      for (const [P, N] of [[100, 80], [4000, 3990]]) {
        const big = P === 4000 ? entries.map(([l, p]) => [l, p + 3905] as [number, number]) : entries;
        assert.throws(() => Allocator.fromMap(P, N, big), (error: Error & { code?: string }) => {
          assert.equal(error.code, 'ERR_MAP_CORRUPT');
          assert.ok(error.message.startsWith(`block map is corrupt (${P} physical blocks, ${N} logical): physical block ${big[0][1]} is referenced by logical 1 and logical 2; `), error.message);
          assert.equal(error.message.split('; ').length, 9, `eight named, then the count: ${error.message}`);
          assert.ok(error.message.endsWith('; and 2 more'), error.message);
          return true;
        }, `P ${P}`);
      }
      // Eight problems exactly: all named, no count.
      assert.throws(() => Allocator.fromMap(100, 80, entries.slice(0, 16)), (error: Error) => {
        assert.equal(error.message.split('; ').length, 8);
        assert.ok(!error.message.includes('more'), error.message);
        return true;
      });
    });

    it('through the bitmap: a free run from block 0 over whole free words, ended by a whole used word and by a word in part', () => {
      // Logical 0..63 moved to 64..127: physical 0..63 free (two whole words), 64..127 used (two whole words), the reserve free.
      const moved = Array.from({ length: 64 }, (_, i) => [i, 64 + i] as [number, number]);
      const once = (entries: [number, number][]) => (function* () {
        yield* entries;
      })();
      assert.deepEqual(Allocator.fromMap(200, 64, once(moved)).extents(), [{ start: 0, length: 64 }, { start: 128, length: 72 }]);
      // The same with the first run ending inside a word (block 40 stays home).
      const most = moved.filter(([l]) => l !== 40).map(([l, p]) => (l > 40 ? [l, p - 1] : [l, p]) as [number, number]);
      assert.deepEqual(Allocator.fromMap(200, 64, once(most)).extents(), [{ start: 0, length: 40 }, { start: 41, length: 23 }, { start: 127, length: 73 }]);
      assert.deepEqual(Allocator.fromMap(128, 0, once([])).extents(), [{ start: 0, length: 128 }], 'no logical blocks: all free');
    });

    it('at a larger scale: 2^25 blocks, a bitmap scan over whole words', () => {
      const P = 2 ** 25;
      const N = P - 4096;
      const a = Allocator.fromMap(P, N, [[0, N], [1, N + 1], [2, P - 1], [N - 1, 1]]);
      assert.deepEqual(a.extents(), [{ start: 0, length: 1 }, { start: 2, length: 1 }, { start: N - 1, length: 1 }, { start: N + 2, length: 4096 - 3 }]);
    });
  });

  describe('scale', () => {
    it('an area of 2^32 blocks costs its extents only', () => {
      const P = 2 ** 32;
      const N = P - 2 ** 20;
      const a = new Allocator(P, [{ start: N, length: P - N }]);
      assert.deepEqual(a.allocate(2 ** 19), [{ start: N, length: 2 ** 19 }]);
      a.deferFree(2 ** 40, { start: 0, length: 2 ** 30 });
      a.deferFree(2 ** 40 + 1, { start: N - 1, length: 1 });
      assert.deepEqual(a.allocate(2 ** 20), [{ start: N + 2 ** 19, length: 2 ** 19 }], 'less: the rest is pending');
      a.checkpointed(2 ** 40 + 1);
      assert.deepEqual(a.extents(), [{ start: 0, length: 2 ** 30 }, { start: N - 1, length: 1 }]);
      assert.equal(a.used, P - 2 ** 30 - 1);
      assert.deepEqual(a.allocate(2), [{ start: 0, length: 2 }], 'wrapped: nothing free after the cursor (P)');
    });

    it('a hundred thousand extents: build, allocate pieces, free and coalesce', () => {
      const P = 200_000;
      const odd: Run[] = [];
      for (let b = 1; b < P; b += 2) odd.push({ start: b, length: 1 });
      for (let k = odd.length - 1; k > 0; k--) {
        const j = (k * 7919) % (k + 1);
        [odd[k], odd[j]] = [odd[j], odd[k]];
      }
      const a = new Allocator(P, odd);
      assert.equal(a.extents().length, P / 2);
      assert.deepEqual(a.allocate(3), [{ start: 1, length: 1 }, { start: 3, length: 1 }, { start: 5, length: 1 }], 'pieces: no extent holds 3');
      for (let k = 0; k < 1000; k++) a.allocate(2);
      assert.equal(a.free, P / 2 - 2003);
      for (let b = 0; b < P; b += 2) a.deferFree(7, { start: b, length: 1 });
      for (let b = 1; b < 2 * 2003; b += 2) a.deferFree(8, { start: b, length: 1 });
      assert.equal(a.pending, P / 2 + 2003);
      a.checkpointed(8);
      assert.deepEqual(a.extents(), [{ start: 0, length: P }]);
    });
  });

  describe('arguments', () => {
    it('constructor', () => {
      assert.throws(() => new Allocator(-1, []), RangeError);
      assert.throws(() => new Allocator(1.5, []), RangeError);
      assert.throws(() => new Allocator('8' as unknown as number, []), TypeError);
      assert.throws(() => new Allocator(8, null as unknown as Run[]), TypeError);
      assert.throws(() => new Allocator(8, [5 as unknown as Run]), TypeError);
      assert.throws(() => new Allocator(8, [{ start: 0, length: 0 }]), RangeError);
      assert.throws(() => new Allocator(8, [{ start: -1, length: 2 }]), RangeError);
      assert.throws(() => new Allocator(8, [{ start: 6, length: 3 }]), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => new Allocator(8, [{ start: 4, length: 2 }, { start: 1, length: 4 }]), /free extents overlap at block 4/);
      assert.deepEqual(new Allocator(8, [{ start: 4, length: 2 }, { start: 1, length: 3 }, { start: 7, length: 1 }]).extents(), [
        { start: 1, length: 5 },
        { start: 7, length: 1 },
      ], 'adjacent extents coalesce');
    });

    it('allocate, deferFree, checkpointed, fromMap', () => {
      const a = new Allocator(8, [{ start: 0, length: 4 }]);
      assert.throws(() => a.allocate(-1), RangeError);
      assert.throws(() => a.allocate(1.5), RangeError);
      assert.throws(() => a.allocate('2' as unknown as number), TypeError);
      assert.deepEqual(a.allocate(0), []);
      assert.throws(() => a.deferFree(-1, { start: 5, length: 1 }), RangeError);
      assert.throws(() => a.deferFree(2 ** 53, { start: 5, length: 1 }), RangeError);
      assert.throws(() => a.deferFree(1, { start: 5, length: 0 }), RangeError);
      assert.throws(() => a.deferFree(1, { start: 7, length: 2 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => a.deferFree(1, { start: 8, length: 1 }), { code: 'ERR_OUT_OF_RANGE' });
      assert.throws(() => a.deferFree(1, undefined as unknown as Run), TypeError);
      a.checkpointed(5);
      assert.throws(() => a.checkpointed(4), /checkpoints only grow/);
      assert.throws(() => a.checkpointed(0.5), RangeError);
      assert.throws(() => a.deferFree(5, { start: 5, length: 1 }), /delta 5 is checkpointed already/);
      assert.equal(a.pending, 0);
      assert.throws(() => Allocator.fromMap(8, 9, []), RangeError);
      assert.throws(() => Allocator.fromMap(8, 4, 3 as unknown as []), TypeError);
    });
  });
});
