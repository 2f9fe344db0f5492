/**
 * A fault-injection double for power loss, after SQLite's crash-test VFS and
 * CrashMonkey: it wraps a real device, lets every request through, and
 * records each write (a copy of its bytes) and each flush, in order. From
 * that trace it builds, offline, the bytes the device could hold after the
 * power failed at any point of the run:
 *
 *   - every write covered by a completed flush is there;
 *   - of the writes since (not covered by a flush), a random subset is
 *     there, applied in a random order (the disk may reorder);
 *   - one more of them is torn: only a random subset of its sectors landed.
 *
 * A write with `dsync` (RWF_DSYNC) is durable once it has completed: it is
 * recorded as a flush of that write alone (a real device's flush would also
 * keep the other writes completed by then: the double is the stricter).
 * One recorded run thus yields as many crash states as a test asks for.
 */
import { createHash } from 'node:crypto';
import type { Geometry } from '../../src/io/geometry';
import type { BlockIo, IoRequest, IoResult } from '../../src/io/request';
import { Slab } from '../../src/io/slab';
import type { Random } from './random';

interface WriteEvent {
  readonly kind: 'write';
  readonly id: number;
  readonly offset: number;
  readonly data: Uint8Array;
  /** The submit() call it came in: writes of one batch share it. */
  readonly batch: number;
}

interface FlushEvent {
  readonly kind: 'flush';
  /** Writes that had completed when the flush was issued: durable once it returned. */
  readonly durable: readonly number[];
  /** The completion of a write with RWF_DSYNC, which made that write alone durable. */
  readonly dsync?: boolean;
}

/** A point of the workload's own (an acknowledged delta, say), to know what a crash there must preserve. */
interface MarkEvent {
  readonly kind: 'mark';
  readonly label: string;
  readonly value: number;
}

export type PowerLossEvent = WriteEvent | FlushEvent | MarkEvent;

/** What a crash image made of the writes not durable at its point (ids of WriteEvents). */
export interface CrashOutcome {
  readonly kept: number[];
  readonly lost: number[];
  /** The lost write of which some sectors landed (one of `lost`), if any. */
  torn: number | undefined;
}


export class PowerLossDevice implements BlockIo {
  readonly events: PowerLossEvent[] = [];
  private nextId = 0;
  private nextBatch = 0;
  private readonly completed = new Set<number>();

  /** The flush in flight, when requests submitted meanwhile wait for it (`flushBarrier`). */
  private flushing: Promise<void> | undefined;

  private constructor(
    private readonly inner: BlockIo,
    /** The device's bytes when recording began: all durable. */
    readonly initial: Uint8Array,
    private readonly flushBarrier: boolean,
  ) {}

  /**
   * Reads the whole device (keep it small) as the durable starting state.
   * `flushBarrier`: requests submitted while a flush is in flight start only
   * once it is done, as both engines do (IOSQE_IO_DRAIN; the thread pool's
   * barrier) and durability-block-layer.test.ts shows at the device. Without
   * it, the double is stricter than the engines: a later write may land
   * before an earlier flush returns.
   */
  static async wrap(inner: BlockIo, options: { flushBarrier?: boolean } = {}): Promise<PowerLossDevice> {
    const size = inner.geometry.size;
    const slab = Slab.alloc(4096, Math.ceil(size / 4096));
    const all = Buffer.from(slab.memory, 0, size);
    await inner.run([{ op: 'read', offset: 0, buffers: [all] }]);
    const initial = Buffer.from(all);
    slab.release();
    return new PowerLossDevice(inner, initial, options.flushBarrier ?? false);
  }

  get path(): string {
    return this.inner.path;
  }

  get geometry(): Geometry {
    return this.inner.geometry;
  }

  mark(label: string, value: number): void {
    this.events.push({ kind: 'mark', label, value });
  }

  async submit(requests: readonly IoRequest[]): Promise<IoResult[]> {
    while (this.flushing) await this.flushing;
    const batch = this.nextBatch++;
    const ids: (number | undefined)[] = requests.map((r) => {
      if (r.op !== 'write') return undefined;
      const id = this.nextId++;
      this.events.push({ kind: 'write', id, offset: r.offset, data: Buffer.concat(r.buffers.map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength))), batch });
      return id;
    });
    const results = await this.inner.submit(requests);
    results.forEach((result, i) => {
      const id = ids[i];
      if (id === undefined || result.error !== undefined) return;
      if (requests[i].dsync) this.events.push({ kind: 'flush', durable: [id], dsync: true });
      else this.completed.add(id);
    });
    return results;
  }

  async run(requests: readonly IoRequest[]): Promise<void> {
    const results = await this.submit(requests);
    results.forEach((result, i) => {
      if (result.error) throw result.error;
      const expected = requests[i].buffers.reduce((n, b) => n + b.byteLength, 0);
      if (result.bytes !== expected) throw new Error(`short ${requests[i].op}: ${result.bytes} of ${expected} bytes`);
    });
  }

  async flush(): Promise<void> {
    const durable = [...this.completed];
    this.completed.clear();
    const done = this.inner.flush().then(() => void this.events.push({ kind: 'flush', durable }));
    if (!this.flushBarrier) return done;
    const barrier = done.catch(() => undefined).finally(() => {
      if (this.flushing === barrier) this.flushing = undefined;
    });
    this.flushing = barrier;
    return done;
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** Event indexes at which a crash is most telling: just before and just after every flush. */
  flushBoundaries(): number[] {
    const points: number[] = [];
    this.events.forEach((e, i) => {
      if (e.kind === 'flush') points.push(i, i + 1);
    });
    return points;
  }

  /**
   * A version 2 journal's redirected writes, by id: writes at or past byte
   * `physicalFrom` of an image that no earlier write into the log
   * [logFrom, logTo) held. A logged block's home write copies an image the
   * log already has; a redirected block's image never goes to the log. It
   * holds for workloads whose every image is unique to its delta and block.
   */
  redirectedWrites(logFrom: number, logTo: number, physicalFrom: number, blockSize: number): Set<number> {
    const inLog = new Set<string>();
    const redirected = new Set<number>();
    const key = (data: Uint8Array, at: number): string => createHash('sha256').update(data.subarray(at, at + blockSize)).digest('hex');
    for (const e of this.events) {
      if (e.kind !== 'write') continue;
      if (e.offset >= logFrom && e.offset < logTo) {
        for (let at = 0; at < e.data.length; at += blockSize) inLog.add(key(e.data, at));
      } else if (e.offset >= physicalFrom && !inLog.has(key(e.data, 0))) {
        redirected.add(e.id);
      }
    }
    return redirected;
  }

  /** The last value of mark `label` among the first `point` events (undefined if none). */
  lastMark(point: number, label: string): number | undefined {
    let value: number | undefined;
    for (let i = 0; i < point; i++) {
      const e = this.events[i];
      if (e.kind === 'mark' && e.label === label) value = e.value;
    }
    return value;
  }

  /**
   * The device's bytes after a power cut at `point` (default: now) that kept
   * nothing but what flushes and dsync writes made durable: what a commit
   * acknowledged by then must be found in.
   */
  durableImage(point = this.events.length): Buffer {
    return this.replay(point).image;
  }

  /**
   * The device's bytes after a power cut once the first `point` events had
   * happened; `outcome`, if given, is told which pending writes were kept,
   * lost and torn.
   */
  crashImage(point: number, random: Random, outcome?: CrashOutcome): Buffer {
    const { image, pending } = this.replay(point);
    const rest = [...pending.values()];
    shuffle(rest, random);
    const kept = rest.filter(() => random() < 0.5);
    const lost = rest.filter((w) => !kept.includes(w));
    for (const w of kept) image.set(w.data, w.offset);
    if (outcome) {
      outcome.kept.push(...kept.map((w) => w.id));
      outcome.lost.push(...lost.map((w) => w.id));
    }
    if (lost.length > 0) {
      const torn = lost[Math.floor(random() * lost.length)];
      if (outcome) outcome.torn = torn.id;
      const sector = this.geometry.logicalSectorSize;
      for (let at = 0; at < torn.data.byteLength; at += sector) {
        if (random() < 0.5) image.set(torn.data.subarray(at, at + sector), torn.offset + at);
      }
    }
    return image;
  }
  /** The durable bytes at `point`, and the writes not yet durable. */
  private replay(point: number): { image: Buffer; pending: Map<number, WriteEvent> } {
    const image = Buffer.from(this.initial);
    const pending = new Map<number, WriteEvent>();
    for (let i = 0; i < point; i++) {
      const e = this.events[i];
      if (e.kind === 'write') pending.set(e.id, e);
      else if (e.kind === 'flush') {
        for (const id of e.durable) {
          const w = pending.get(id);
          if (w === undefined) continue;
          image.set(w.data, w.offset);
          pending.delete(id);
        }
      }
    }
    return { image, pending };
  }
}

function shuffle<T>(items: T[], random: Random): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j], items[i]];
  }
}
