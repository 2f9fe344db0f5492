import { performance } from 'node:perf_hooks';
import { Device } from '../io/device';
import { Slab } from '../io/slab';
import { JournalWriter } from '../journal/journal-writer';
import { formatVolume } from '../journal/volume-format';
import { benchLogSize, noiseBlock, wipeSuperblocks } from './bench-volume';
import type { Measurement, Subject, Target } from './subject';
import { formatBytes } from './units';

/**
 * How long open() takes to replay a full log: the cost of a crash in a busy
 * journaled volume. The target is formatted with the bench's log, the log is
 * filled with deltas of DELTA_BLOCKS blocks (their commit records durable,
 * no home write, no checkpoint: as a crash at the worst moment leaves it),
 * and JournalWriter.open, which open() runs, is timed: it reads the log,
 * checks every checksum, writes each delta home, flushes and records the
 * checkpoint.
 */
const BLOCK_SIZE = 4096;
const DELTA_BLOCKS = 256;

export function replaySubject(): Subject {
  return { name: 'replay of a full log', unavailable: undefined, run: (target) => runReplay(target) };
}

async function runReplay(target: Target): Promise<Measurement> {
  const logBytes = await fillLog(target);
  const device = await Device.open(target.path);
  try {
    const start = performance.now();
    const { journal, report } = await JournalWriter.open(device);
    const seconds = (performance.now() - start) / 1000;
    await journal.close();
    const MB = logBytes / 1e6;
    return {
      bytesPerSecond: logBytes / seconds,
      opsPerSecond: report.deltas.length / seconds,
      note: `${((seconds * 1000) / MB).toFixed(2)} ms per MB of log: ${report.deltas.length} deltas of ${DELTA_BLOCKS} blocks, ${formatBytes(logBytes)} of log replayed in ${(seconds * 1000).toFixed(0)} ms (ops/s: deltas)`,
    };
  } finally {
    await device.close();
    await wipeSuperblocks(target.path);
  }
}

/** Formats the target and appends deltas until the log is full; resolves with the log bytes they hold. */
async function fillLog(target: Target): Promise<number> {
  const device = await Device.open(target.path);
  const images = Slab.alloc(BLOCK_SIZE, DELTA_BLOCKS);
  try {
    const noise = noiseBlock(BLOCK_SIZE, target.seed);
    for (let i = 0; i < DELTA_BLOCKS; i++) images.page(i).set(noise);
    const logBlocks = benchLogSize(target) / BLOCK_SIZE;
    const superblock = await formatVolume(device, { blockSize: BLOCK_SIZE, logBlocks, overwrite: true });
    const journal = new JournalWriter(device, superblock);
    const runs = Math.floor(superblock.blockCount / DELTA_BLOCKS);
    let delta = 0;
    for (;;) {
      const before = journal.space();
      // A delta's log blocks: its images, a descriptor and a commit record (and a little slack).
      if (before.free < DELTA_BLOCKS + 8) break;
      delta++;
      const first = ((delta - 1) % runs) * DELTA_BLOCKS;
      await journal.appendDelta(
        delta,
        Array.from({ length: DELTA_BLOCKS }, (_, i) => ({ home: first + i, image: images.page(i) })),
      );
    }
    const used = journal.space().used;
    await journal.close();
    return used * BLOCK_SIZE;
  } finally {
    images.release();
    await device.close();
  }
}
