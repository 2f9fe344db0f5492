import { systemError, type SystemError } from '../../src/io/errors';
import type { BlockIo, IoRequest, IoResult } from '../../src/io/request';
import { seeded, turns } from './random';

export interface FaultPlan {
  /** Fails the write request with this index (0-based, counted over every batch, in submission order). */
  failWrite?: number;
  /** Fails the read request with this index (0-based), likewise. */
  failRead?: number;
  /** Fails the flush with this index (0-based). */
  failFlush?: number;
  /** The failure's errno (default -5, EIO). */
  errno?: number;
  /** Seeds the delays; without it requests complete in order, at once. */
  seed?: number;
  /** Each request waits 0 .. maxTurns turns of the event loop, so a batch completes out of order (default 4). */
  maxTurns?: number;
}

/**
 * Wraps a BlockIo to fail a chosen write or flush, and to delay and reorder
 * completions at random: each request of a batch goes to the inner device
 * alone, after its own random delay. `hold()` keeps every write (or read)
 * from completing until it is let go, to catch a writeout or a read in
 * flight; `holdWhere()` only the ones a test picks out.
 */
export class FaultDevice implements BlockIo {
  reads = 0;
  writes = 0;
  flushes = 0;
  /** The errors this device made up, in order. */
  readonly injected: SystemError[] = [];
  private readonly random: (() => number) | undefined;
  private readonly held = new Map<IoRequest['op'], Promise<void>>();
  private readonly picked = new Set<{ readonly which: (request: IoRequest) => boolean; readonly gate: Promise<void> }>();
  private readonly releases = new Set<() => void>();
  private readonly waiting = { read: 0, write: 0 };
  private nextFlushFails = false;

  constructor(
    readonly inner: BlockIo,
    private readonly plan: FaultPlan = {},
  ) {
    this.random = plan.seed === undefined ? undefined : seeded(plan.seed);
  }

  get path(): string {
    return this.inner.path;
  }

  get geometry(): BlockIo['geometry'] {
    return this.inner.geometry;
  }

  /** Requests submitted and waiting on `hold()`. */
  heldRequests(op: IoRequest['op'] = 'write'): number {
    return this.waiting[op];
  }

  /** Fails the next flush (with the plan's errno), whatever its index: for a flush the test cannot count ahead. */
  failNextFlush(): void {
    this.nextFlushFails = true;
  }

  /** Holds every request of this kind until the returned function (or `releaseAll`) is called. */
  hold(op: IoRequest['op'] = 'write'): () => void {
    let release!: () => void;
    this.held.set(op, new Promise<void>((resolve) => (release = resolve)));
    const letGo = (): void => {
      if (this.held.get(op) === gate) this.held.delete(op);
      this.releases.delete(letGo);
      release();
    };
    const gate = this.held.get(op);
    this.releases.add(letGo);
    return letGo;
  }

  /** Holds every request that `which` picks until the returned function (or `releaseAll`) is called; the others go through. */
  holdWhere(op: IoRequest['op'], which: (request: IoRequest) => boolean): () => void {
    let release!: () => void;
    const entry = { which: (request: IoRequest) => request.op === op && which(request), gate: new Promise<void>((resolve) => (release = resolve)) };
    this.picked.add(entry);
    const letGo = (): void => {
      this.picked.delete(entry);
      this.releases.delete(letGo);
      release();
    };
    this.releases.add(letGo);
    return letGo;
  }

  /** Lets go of everything held: after a failed test, so that its volume can close. */
  releaseAll(): void {
    for (const release of [...this.releases]) release();
  }

  submit(requests: readonly IoRequest[]): Promise<IoResult[]> {
    return Promise.all(requests.map((request) => this.one(request)));
  }

  async run(requests: readonly IoRequest[]): Promise<void> {
    const results = await this.submit(requests);
    for (const [i, result] of results.entries()) {
      if (result.error) throw result.error;
      const expected = requests[i].buffers.reduce((sum, b) => sum + b.byteLength, 0);
      if (result.bytes !== expected) throw systemError(-5, 'pwritev', this.path, `short transfer: ${result.bytes} of ${expected}`);
    }
  }

  async flush(): Promise<void> {
    const index = this.flushes++;
    await this.delay();
    if (index === this.plan.failFlush || this.nextFlushFails) {
      this.nextFlushFails = false;
      throw this.inject('fdatasync');
    }
    return this.inner.flush();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async one(request: IoRequest): Promise<IoResult> {
    const index = request.op === 'write' ? this.writes++ : this.reads++;
    await this.delay();
    for (let gate = this.held.get(request.op); gate; gate = this.held.get(request.op)) {
      this.waiting[request.op]++;
      await gate;
      this.waiting[request.op]--;
    }
    for (let entry = this.pickedFor(request); entry; entry = this.pickedFor(request)) {
      this.waiting[request.op]++;
      await entry.gate;
      this.waiting[request.op]--;
    }
    if (request.op === 'write' && index === this.plan.failWrite) return { bytes: 0, error: this.inject('pwritev') };
    if (request.op === 'read' && index === this.plan.failRead) return { bytes: 0, error: this.inject('preadv') };
    const [result] = await this.inner.submit([request]);
    return result;
  }

  private pickedFor(request: IoRequest): { readonly gate: Promise<void> } | undefined {
    for (const entry of this.picked) if (entry.which(request)) return entry;
    return undefined;
  }

  private inject(syscall: string): SystemError {
    const error = systemError(this.plan.errno ?? -5, syscall, this.path);
    this.injected.push(error);
    return error;
  }

  private delay(): Promise<void> {
    if (!this.random) return Promise.resolve();
    return turns(Math.floor(this.random() * ((this.plan.maxTurns ?? 4) + 1)));
  }
}
