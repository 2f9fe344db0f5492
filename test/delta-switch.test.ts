import assert from 'node:assert/strict';
import { Device } from '../src/io/device';
import { Volume } from '../src/volume';
import { FaultDevice } from './support/fault-device';
import { TempDir } from './support/temp';
import { fileBytes, realVolumesPerTest, settles, until } from './support/volumes';

// The switch from one delta to the next (transition.ts) as commit() and
// changes see it, on a real Device (O_DIRECT on a temp file) behind a
// FaultDevice that holds or fails requests on command.

const BLOCK = 4096;

function pattern(value: number): Buffer {
  return Buffer.alloc(BLOCK, value);
}

/** Gates of held changes not let go yet: a failed test must not leave a change holding the delta lock, or its volume could not close. */
const gates: (() => void)[] = [];

/** A change (it takes the delta lock at once) that writes `value` into `block` once let go. */
function heldChange(vol: Volume, block: number, value: number): { done: Promise<void>; letGo: () => void } {
  let letGo!: () => void;
  const gate = new Promise<void>((resolve) => (letGo = resolve));
  gates.push(letGo);
  const done = vol.change(async (tx) => {
    await gate;
    (await tx.write(block)).fill(value);
  });
  return { done, letGo };
}

describe('the delta switch as commit() sees it', () => {
  // Registered before the volumes' own hook, which closes them.
  afterEach(() => {
    for (const letGo of gates.splice(0)) letGo();
  });
  const volumes = realVolumesPerTest();

  it('a commit called while the switch waits for a change in progress joins the closing delta (group commit), when no change waits behind the switch', async () => {
    const { vol, path } = await volumes.open(1 << 20, { readahead: 0 });
    const a = heldChange(vol, 0, 1);
    const first = vol.commit();
    const second = vol.commit();
    assert.equal(vol.stats().groupedCommits, 1, 'the second commit joined the first one\'s delta');
    assert.equal(await settles(second), false, 'and waits with it for the change in progress');
    a.letGo();
    await a.done;
    assert.deepEqual(await Promise.all([first, second]), [1, 1]);
    assert.deepEqual(fileBytes(path, 0, BLOCK), pattern(1));
    assert.equal(vol.stats().delta, 2, 'one delta was spent');
  });

  it('a commit called after a change that waits behind the switch resolves with the next delta, which holds that change', async () => {
    const { vol, path } = await volumes.open(1 << 20, { readahead: 0 });
    const a = heldChange(vol, 0, 1);
    const first = vol.commit();
    // Called after the commit: it waits for the delta lock behind the switch, and lands in delta 2.
    const b = vol.change(async (tx) => (await tx.write(1)).fill(2));
    const second = vol.commit();
    assert.equal(vol.stats().groupedCommits, 0, 'the second commit cannot join delta 1: a change called before it is not in delta 1');
    a.letGo();
    assert.equal(await first, 1);
    await b;
    assert.equal(await second, 2);
    assert.deepEqual(fileBytes(path, BLOCK, BLOCK), pattern(2), 'the change called before commit 2 was durable when it resolved');
  });

  it('past the high-water mark exactly: the page that reaches it asks the delta to close, not the one before', async () => {
    const { vol } = await volumes.open(1 << 20, { readahead: 0, highWater: 3 * BLOCK, maxDeltas: 1 });
    await vol.change(async (tx) => {
      for (const b of [0, 1]) (await tx.overwrite(b)).fill(1);
    });
    assert.equal(vol.stats().autoTransitions, 0, 'two pages of three');
    await vol.change(async (tx) => (await tx.overwrite(2)).fill(1));
    assert.equal(vol.stats().autoTransitions, 1, 'the third page reached the mark');
    await until(() => vol.stats().durableDelta === 1, 'delta 1 durable by itself');
  });

  it('dropMapping waits for the deltas in flight: a mapping committed but still being written is dropped once written, even when a switch comes meanwhile', async () => {
    const { vol, device } = await volumes.open(1 << 20, { readahead: 0, maxDeltas: 2 });
    const file = vol.createMapping({ map: (block) => 100 + block, blockCount: 4 });
    await vol.change(async (tx) => (await tx.write(0, file)).fill(9));
    const release = device.hold();
    const first = vol.commit();
    await until(() => device.heldRequests() > 0, 'delta 1 writing');
    let dropped = false;
    const drop = vol.dropMapping(file).then(() => (dropped = true));
    // A switch while the drop waits: delta 2 closes (its write held behind delta 1's).
    await vol.change(async (tx) => (await tx.write(5)).fill(5));
    const second = vol.commit();
    await until(() => vol.stats().deltasInFlight === 2, 'delta 2 closed');
    assert.equal(await settles(drop), false, 'the drop waits for the writeout of its pages');
    release();
    await until(() => dropped, 'the mapping dropped once the deltas in flight were written');
    await drop;
    assert.deepEqual(await Promise.all([first, second]), [1, 2]);
    await assert.rejects(vol.read(0, file), { code: 'ERR_MAPPING_DROPPED' });
  });

  it('fork: false waits for the writeout of the delta that holds the block, once, not for another delta in flight', async () => {
    const { vol, device, path } = await volumes.open(1 << 20, { readahead: 0, fork: false, maxDeltas: 2 });
    await vol.change(async (tx) => (await tx.write(0)).fill(1));
    const release = device.hold();
    const first = vol.commit();
    await until(() => device.heldRequests() > 0, 'delta 1 writing');
    await vol.change(async (tx) => (await tx.write(5)).fill(2));
    const second = vol.commit();
    await until(() => vol.stats().deltasInFlight === 2, 'delta 2 closed');
    const change = vol.change(async (tx) => (await tx.write(5)).fill(3));
    assert.equal(await settles(change), false, 'block 5 is delta 2\'s image: the write waits');
    release();
    await change;
    assert.equal(vol.stats().stableWaits, 1, 'one wait, for delta 2');
    assert.deepEqual(await Promise.all([first, second]), [1, 2]);
    assert.deepEqual(fileBytes(path, 5 * BLOCK, BLOCK), pattern(2), 'delta 2 wrote its own image');
    assert.equal(await vol.commit(), 3);
    assert.deepEqual(fileBytes(path, 5 * BLOCK, BLOCK), pattern(3));
  });

  it('G6: the first error fails the volume; a later error of another delta in flight does not replace it', async () => {
    // Delta 1 is two runs (writes, then a flush that fails); delta 2, one run written
    // with RWF_DSYNC after delta 1's writes, fails too.
    const { vol, device } = await volumes.open(1 << 20, { readahead: 0, maxDeltas: 2 }, { failFlush: 0, failWrite: 2 });
    await vol.change(async (tx) => {
      for (const b of [0, 5]) (await tx.overwrite(b)).fill(1);
    });
    const first = vol.commit();
    await vol.change(async (tx) => (await tx.overwrite(9)).fill(2));
    const second = vol.commit();
    const results = await Promise.allSettled([first, second]);
    assert.deepEqual(
      results.map((r) => r.status),
      ['rejected', 'rejected'],
    );
    assert.equal(device.injected.length, 2, 'both failed');
    assert.equal(vol.failure, device.injected[0], 'the volume failed with the first');
    await assert.rejects(vol.commit(), (e) => e === device.injected[0]);
  });
});

describe('the delta switch in journal mode, where a delta must fit its share of the log', () => {
  const held: (() => void)[] = [];
  let temp: TempDir;
  beforeEach(() => {
    temp = new TempDir();
  });
  afterEach(() => {
    for (const release of held.splice(0)) release();
    temp.remove();
  });

  it('a delta takes changes up to its limit exactly; a commit called after a change held for room resolves with the delta that holds it', async () => {
    const device = new FaultDevice(await Device.open(temp.file(), { size: 4 << 20, direct: true }));
    const vol = await Volume.mount(device, { journal: true, format: true, logSize: 48 * BLOCK, maxDeltas: 1, readahead: 0 });
    try {
      await vol.change(async (tx) => (await tx.write(0)).fill(1));
      const release = device.hold();
      held.push(release);
      const first = vol.commit();
      await until(() => device.heldRequests() > 0, 'delta 1 logging, held');
      // One page per change until the delta asks to close by itself: that many pages is its limit.
      let pages = 0;
      while (vol.stats().autoTransitions === 0) {
        await vol.change(async (tx) => (await tx.overwrite(100 + pages)).fill(2));
        pages++;
        assert.ok(pages < 1000, 'the delta never reached its limit');
      }
      let landed = 0;
      const waiting = vol.change(async (tx) => {
        landed = vol.stats().delta;
        (await tx.overwrite(50)).fill(3);
      });
      assert.equal(await settles(waiting), false, `a change waits once the delta holds its limit (${pages} pages)`);
      assert.equal(vol.stats().fullDeltaWaits, 1);
      const commit = vol.commit();
      release();
      assert.equal(await first, 1);
      await waiting;
      assert.equal(landed, 3, 'the held change landed in the delta after the full one');
      assert.equal(await commit, 3, 'the commit called after it resolves with its delta');
      assert.deepEqual(await vol.read(50), pattern(3));
    } finally {
      // Before close, which would wait for held writes.
      for (const release of held.splice(0)) release();
      await vol.close();
    }
  });
});
