import assert from 'node:assert/strict';
import { Device } from '../src/io/device';
import { Volume } from '../src/volume';
import { FaultDevice } from './support/fault-device';
import { MemoryDevice } from './support/memory-device';
import { TempDir } from './support/temp';
import { realVolumesPerTest, settles, until } from './support/volumes';

const BLOCK = 4096;

/** Writes `value` into each block, one change. */
function fill(vol: Volume, blocks: readonly number[], value: number): Promise<void> {
  return vol.change(async (tx) => {
    for (const b of blocks) (await tx.write(b)).fill(value);
  });
}

describe('G2 when commits come faster than the device: deferred switches and group commit', () => {
  // Registered before the volumes' own hook: a failed assertion must not leave
  // writes held, or closing the volume would wait for them.
  const held: (() => void)[] = [];
  afterEach(() => {
    for (const release of held.splice(0)) release();
  });
  const volumes = realVolumesPerTest();

  it('G2: with maxDeltas deltas held in flight and more commits asked for, changes of cached blocks and of blocks under writeout (forks) complete while the device holds everything', async () => {
    const { vol, device } = await volumes.open(1 << 20, { maxDeltas: 2 });
    await fill(vol, [0, 1, 2, 3], 1);
    assert.equal(await vol.commit(), 1);
    const release = device.hold();
    held.push(release);
    await fill(vol, [0], 2);
    const second = vol.commit();
    await fill(vol, [1], 3);
    const third = vol.commit();
    // Delta 2's write is held; delta 3's waits behind it (two writes of a block go out in delta order).
    await until(() => device.heldRequests() === 1 && vol.stats().deltasInFlight === 2, 'two deltas in flight, writes held');
    await fill(vol, [2], 4);
    const fourth = vol.commit();
    assert.equal(vol.stats().deltasInFlight, 2, 'the pipeline is full');

    const forks = vol.stats().forks;
    assert.equal(await settles(fill(vol, [3], 5)), true, 'a change of a cached clean block completes');
    assert.equal(await settles(fill(vol, [0, 1], 6)), true, 'a change of blocks under writeout completes');
    assert.equal(vol.stats().forks, forks + 2, 'by forking their pages');
    const fifth = vol.commit();
    assert.equal(await settles(vol.change(async (tx) => (await tx.write(2)).fill(7))), true, 'and so does one after yet another commit');

    assert.equal(device.heldRequests(), 1, 'the device still holds every write');
    for (const commit of [second, third, fourth, fifth]) assert.equal(await settles(commit, 5), false, 'no commit resolved over held writes');
    release();
    assert.deepEqual(await Promise.all([second, third, fourth, fifth]), [2, 3, 4, 4], 'the commits asked for while the pipeline was full closed one delta');
    assert.equal(vol.stats().groupedCommits, 1);
    for (const [block, value] of [
      [0, 6],
      [1, 6],
      [2, 7],
      [3, 5],
    ]) {
      assert.deepEqual(await vol.read(block), Buffer.alloc(BLOCK, value), `block ${block}`);
    }
  });

  it('group commit: concurrent change + commit pairs over a held device share as few deltas as the pipeline allows, resolve in order, each once its data is durable', async () => {
    const memory = new MemoryDevice({ size: 64 * BLOCK });
    const device = new FaultDevice(memory);
    const maxDeltas = 2;
    const vol = Volume.over(device, { maxDeltas });
    try {
      const clients = 24;
      // Cached first, so that no change waits for a read.
      await fill(
        vol,
        Array.from({ length: clients }, (_, i) => i),
        0xff,
      );
      await vol.commit();
      const release = device.hold();
      held.push(release);
      const resolved: number[] = [];
      const runs = Array.from({ length: clients }, async (_, i) => {
        await fill(vol, [i], i + 1);
        const number = await vol.commit();
        // G3: durable when it resolves, not merely written.
        assert.deepEqual(memory.durable.subarray(i * BLOCK, (i + 1) * BLOCK), Buffer.alloc(BLOCK, i + 1), `client ${i}'s block is durable`);
        resolved.push(number);
        return number;
      });
      await until(() => device.heldRequests() > 0, 'a delta writing, held');
      assert.equal(await settles(Promise.race(runs), 5), false, 'nothing resolves over held writes');
      release();
      const numbers = await Promise.all(runs);
      assert.deepEqual(resolved, [...resolved].sort((a, b) => a - b), 'G4: resolved in delta order');
      const deltas = new Set(numbers);
      assert.ok(deltas.size <= maxDeltas + 1, `${clients} commits closed ${deltas.size} deltas: the ones with a place at once, then one for all the rest`);
      assert.equal(vol.stats().deltasCommitted, 1 + deltas.size, 'one delta and one writeout per group, not per commit');
    } finally {
      await vol.close();
    }
  });

  it('deltaClosed(): after commit() and deltaClosed(), a change lands in a later delta, also when the pipeline was full', async () => {
    const { vol, device } = await volumes.open(1 << 20, { maxDeltas: 1 });
    await fill(vol, [0, 1, 2], 1);
    await vol.commit();
    const release = device.hold();
    held.push(release);
    await fill(vol, [0], 2);
    const first = vol.commit();
    await until(() => device.heldRequests() > 0, 'delta 2 writing, held');
    await fill(vol, [1], 3);
    const second = vol.commit();
    const closed = vol.deltaClosed();
    assert.equal(await settles(closed), false, 'delta 3 waits for a place: it has not closed');
    let landed = 0;
    const after = closed.then(() => vol.change(async (tx) => {
      landed = vol.stats().delta;
      (await tx.write(2)).fill(4);
    }));
    release();
    await after;
    assert.deepEqual(await Promise.all([first, second]), [2, 3]);
    assert.equal(landed, 4, 'the change after deltaClosed() is in the delta after the commit\'s');
    await vol.deltaClosed();
  });

  it('a commit that waited for a change that dirtied nothing spends no delta: it resolves with the delta last closed', async () => {
    const { vol } = await volumes.open(1 << 20);
    await fill(vol, [0], 1);
    assert.equal(await vol.commit(), 1);
    let letGo!: () => void;
    const gate = new Promise<void>((resolve) => (letGo = resolve));
    const reader = vol.change(async (tx) => {
      await gate;
      return tx.read(0);
    });
    const commit = vol.commit();
    assert.equal(await settles(commit), false, 'the commit waits for the change in progress');
    letGo();
    assert.deepEqual(await reader, Buffer.alloc(BLOCK, 1));
    assert.equal(await commit, 1);
    assert.equal(vol.stats().delta, 2, 'the open delta kept its number');
    await fill(vol, [1], 2);
    assert.equal(await vol.commit(), 2);
  });

  it('journal mode: a delta that reaches its share of the log while the pipeline is full holds new changes until it closes, and says so in stats', async () => {
    const temp = new TempDir();
    try {
      const device = new FaultDevice(await Device.open(temp.file(), { size: 4 << 20, direct: true }));
      // A log of 48 blocks: a delta asks to close by itself at a third of it (16 blocks).
      const vol = await Volume.mount(device, { journal: true, format: true, logSize: 48 * BLOCK, maxDeltas: 1 });
      try {
        await fill(vol, [0], 1);
        const release = device.hold();
        held.push(release);
        const first = vol.commit();
        await until(() => device.heldRequests() > 0, 'delta 1 logging, held');
        const big = Array.from({ length: 16 }, (_, i) => 100 + i);
        await fill(vol, big, 2);
        assert.equal(vol.stats().autoTransitions, 1, 'the delta reached the mark and asked to close');
        const waiting = fill(vol, [200], 3);
        assert.equal(await settles(waiting), false, 'a change waits: the delta must fit the log');
        assert.equal(vol.stats().fullDeltaWaits, 1);
        release();
        await first;
        await waiting;
        const last = await vol.commit();
        assert.equal(last, 3, 'the held change landed in the delta after the full one');
      } finally {
        await vol.close();
      }
    } finally {
      temp.remove();
    }
  });
});
