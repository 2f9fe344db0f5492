import { performance } from 'node:perf_hooks';
import { native, isNativeErrno, type NativeEngine, type NativeErrno, type NativeRequest } from '../native';
import { describe } from './describe';
import { BlockforkError, systemError, type SystemError } from './errors';
import { KnownData } from './known-data';
import type { Geometry } from './geometry';
import type { BlockIo, IoRequest, IoResult } from './request';

export type EngineKind = 'io_uring' | 'threads';

export interface DeviceOptions {
  /** A regular file that does not exist is created, sparse, at this many bytes. */
  size?: number;
  /** O_DIRECT (default true). `false` for file systems that refuse it, such as tmpfs. */
  direct?: boolean;
  readOnly?: boolean;
  /** 'auto' (default): io_uring where the kernel allows it, else the thread pool. */
  engine?: EngineKind | 'auto';
  /** Requests in flight at once (default 32, at most 4096). */
  queueDepth?: number;
  /**
   * Milliseconds to wait for the lock when another handle holds it (default
   * 5000; 0 fails at once): a process killed while writing keeps its lock
   * until its I/O in flight drains, so an immediate restart must wait.
   */
  lockTimeout?: number;
}

export const DEFAULT_QUEUE_DEPTH = 32;
const MAX_QUEUE_DEPTH = 4096;
/** As better-sqlite3's `timeout`: long enough for a supervisor's restart right after a kill. */
export const DEFAULT_LOCK_TIMEOUT_MS = 5000;
/** setTimeout's limit. */
const MAX_LOCK_TIMEOUT_MS = 2 ** 31 - 1;
/** The first retry comes soon (a dead process's I/O drains in milliseconds); later ones back off to this. */
const LOCK_RETRY_FIRST_MS = 1;
const LOCK_RETRY_MAX_MS = 100;

/**
 * A block device or a regular file opened for aligned, batched, vectored I/O
 * (O_DIRECT unless `direct: false`), locked exclusively (flock) against other
 * processes. It is usable alone for raw aligned I/O; the cache builds on it.
 *
 * Every request is checked (alignment of address, offset and length to the
 * device's sector size, bounds, open handle) before it is submitted: misuse is
 * a TypeError or RangeError, never an EINVAL from the kernel.
 */
export class Device implements BlockIo {
  private closing: Promise<void> | undefined;
  private pending = 0;
  /** Where a regular file is known to hold data; undefined where holes are never looked for. */
  private knownData: KnownData | undefined;
  private drained: (() => void) | undefined;

  private constructor(
    readonly path: string,
    readonly geometry: Geometry,
    readonly engine: EngineKind,
    readonly queueDepth: number,
    /** The file was created by this open. */
    readonly created: boolean,
    private readonly fd: number,
    private readonly io: NativeEngine,
  ) {}

  static async open(path: string, options: DeviceOptions = {}): Promise<Device> {
    if (typeof path !== 'string' || path.length === 0 || path.includes('\0')) {
      throw new TypeError(`path must be a non-empty string without NUL bytes, got ${describe(path)}`);
    }
    if (typeof options !== 'object' || options === null) {
      throw new TypeError(`options must be an object, got ${describe(options)}`);
    }
    const direct = optionalBoolean(options.direct, 'direct', true);
    const readOnly = optionalBoolean(options.readOnly, 'readOnly', false);
    const size = options.size;
    if (size !== undefined && (!Number.isSafeInteger(size) || size <= 0)) {
      throw new RangeError(`size must be a positive integer number of bytes, got ${describe(size)}`);
    }
    const queueDepth = options.queueDepth ?? DEFAULT_QUEUE_DEPTH;
    if (!Number.isInteger(queueDepth) || queueDepth < 1 || queueDepth > MAX_QUEUE_DEPTH) {
      throw new RangeError(`queueDepth must be an integer from 1 to ${MAX_QUEUE_DEPTH}, got ${describe(queueDepth)}`);
    }
    const wanted = options.engine ?? 'auto';
    if (wanted !== 'auto' && wanted !== 'io_uring' && wanted !== 'threads') {
      throw new TypeError(`engine must be 'auto', 'io_uring' or 'threads', got ${describe(wanted)}`);
    }
    const lockTimeout = options.lockTimeout === undefined ? DEFAULT_LOCK_TIMEOUT_MS : options.lockTimeout;
    if (typeof lockTimeout !== 'number') throw new TypeError(`lockTimeout must be a number of milliseconds, got ${describe(lockTimeout)}`);
    if (!Number.isSafeInteger(lockTimeout) || lockTimeout < 0 || lockTimeout > MAX_LOCK_TIMEOUT_MS) {
      throw new RangeError(`lockTimeout must be an integer from 0 to ${MAX_LOCK_TIMEOUT_MS} (milliseconds), got ${describe(lockTimeout)}`);
    }

    const flags = { readOnly, direct, create: size !== undefined && !readOnly, size: size ?? 0 };
    // The lock is taken on the descriptor that does the I/O, and waited for
    // rather than moved: a killed process's writes still in flight keep it,
    // and they must not land under a successor that already writes.
    const deadline = performance.now() + lockTimeout;
    let opened = native.open(path, flags);
    let delay = LOCK_RETRY_FIRST_MS;
    while (isLockHeld(opened) && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(delay, Math.max(0, deadline - performance.now()))));
      delay = Math.min(delay * 2, LOCK_RETRY_MAX_MS);
      opened = native.open(path, flags);
    }
    if (isNativeErrno(opened)) throw openError(opened.errno, opened.syscall, path, direct, lockTimeout);

    let kind: EngineKind = wanted === 'auto' ? (native.probeIoUring() === 0 ? 'io_uring' : 'threads') : wanted;
    const engine = native.createEngine({
      fd: opened.fd,
      kind,
      queueDepth,
      sectorSize: opened.logicalSectorSize,
      memoryAlignment: opened.memoryAlignment,
      size: opened.size,
      readOnly,
    });
    if (isNativeErrno(engine)) {
      native.close(opened.fd);
      throw systemError(engine.errno, engine.syscall, path, kind === 'io_uring' ? "io_uring is unavailable here; use engine: 'threads'" : undefined);
    }
    kind = engine.kind;
    const geometry: Geometry = Object.freeze({
      size: opened.size,
      logicalSectorSize: opened.logicalSectorSize,
      physicalSectorSize: opened.physicalSectorSize,
      memoryAlignment: opened.memoryAlignment,
      isBlockDevice: opened.isBlockDevice,
      direct,
      readOnly,
    });
    return new Device(path, geometry, kind, queueDepth, opened.created, opened.fd, engine);
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  /**
   * Whether the bytes [offset, offset + length) of a regular file hold no
   * data now: they are a hole of a sparse file (or space allocated and never
   * written), which reads as zeros. The read path fills such pages itself,
   * without a request. False for a block device, where it is not known, and
   * where the file system cannot tell (then it is not asked again).
   *
   * Asked on the JS thread (lseek SEEK_DATA and SEEK_HOLE); the data found is
   * remembered, so that a file already written in full is asked once. A
   * block whose write is in flight may still look like a hole: the cache
   * never reads a block it is writing (the page holds it meanwhile), and a
   * read racing a write gets either image anyway.
   */
  holeAt(offset: number, length: number): boolean {
    if (this.geometry.isBlockDevice || this.closing) return false;
    const known = (this.knownData ??= new KnownData());
    const end = offset + length;
    if (known.covers(offset, end)) return false;
    const extent = native.dataExtent(this.fd, offset);
    if (extent === null) return true;
    if (isNativeErrno(extent)) {
      // The file system cannot say: everything is data, as far as reads are concerned.
      known.add(0, Number.MAX_SAFE_INTEGER);
      return false;
    }
    known.add(extent[0], extent[1]);
    return extent[0] >= end;
  }

  submit(requests: readonly IoRequest[]): Promise<IoResult[]> {
    // Every refusal rejects, as the addon's own checks do inside track(): a
    // caller never needs both a try and a catch().
    let nativeRequests: NativeRequest[];
    try {
      if (this.closing) throw this.closedError();
      nativeRequests = toNative(requests);
    } catch (error) {
      return Promise.reject(error);
    }
    if (nativeRequests.length === 0) return Promise.resolve([]);
    return this.track<IoResult[]>('submit', (resolve) =>
      this.io.submit(nativeRequests, (raw) => {
        const results: IoResult[] = new Array(raw.length);
        for (let i = 0; i < raw.length; i++) {
          const r = raw[i];
          results[i] = r < 0 ? { bytes: 0, error: systemError(r, nativeRequests[i].op === 0 ? 'preadv' : 'pwritev', this.path) } : { bytes: r };
        }
        resolve(results);
      }),
    );
  }

  async run(requests: readonly IoRequest[]): Promise<void> {
    const results = await this.submit(requests);
    for (let i = 0; i < results.length; i++) {
      const result = results[i];
      if (result.error) throw result.error;
      const request = requests[i];
      const expected = byteLength(request);
      if (result.bytes !== expected) await this.finishShort(request, result.bytes, expected);
    }
  }

  /**
   * A short transfer goes on from where it stopped, as fs's write loops do:
   * the kernel says why it stopped (ENOSPC when a sparse file's file system
   * is full) only when asked for the rest. It fails with that error, or with
   * EIO if the kernel moves nothing more without one (a read past the end of
   * a file that shrank), or if what is left cannot be asked for (a remainder
   * misaligned for O_DIRECT).
   */
  private async finishShort(request: IoRequest, done: number, expected: number): Promise<void> {
    const syscall = request.op === 'read' ? 'preadv' : 'pwritev';
    const short = () => `short ${request.op}: ${done} of ${expected} bytes at offset ${request.offset}`;
    while (done < expected) {
      let results: IoResult[];
      try {
        results = await this.submit([{ ...request, offset: request.offset + done, buffers: remainder(request.buffers, done) }]);
      } catch (error) {
        if (error instanceof RangeError) break;
        throw error;
      }
      const [result] = results;
      if (result.error) throw systemError(result.error.errno, syscall, this.path, short());
      if (result.bytes === 0) break;
      done += result.bytes;
    }
    if (done < expected) throw systemError(-5 /* EIO */, syscall, this.path, short());
  }

  flush(): Promise<void> {
    if (this.closing) return Promise.reject(this.closedError());
    if (this.geometry.readOnly) return Promise.reject(new BlockforkError('ERR_READ_ONLY', `device '${this.path}' is open read-only`));
    return this.track<number>('flush', (resolve) => this.io.flush(resolve)).then((result) => {
      if (result < 0) throw systemError(result, 'fdatasync', this.path);
    });
  }

  /** Waits for requests in flight, then closes the engine, unlocks and closes the file. Harmless twice. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.pending > 0) await new Promise<void>((resolve) => (this.drained = resolve));
      this.io.close();
      const result = native.close(this.fd);
      if (result < 0) throw systemError(result, 'close', this.path);
    })();
    return this.closing;
  }

  /**
   * Counts an engine call as pending until its callback runs, so that close()
   * can wait for it. If the addon refuses the call (a bad request throws, or
   * a system call fails, before anything is queued), the count is undone and
   * the promise rejects.
   */
  private track<T>(call: 'submit' | 'flush', start: (resolve: (value: T) => void) => NativeErrno | undefined): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending++;
      try {
        const failed = start((value) => {
          this.settle();
          resolve(value);
        });
        if (failed !== undefined) {
          this.settle();
          reject(systemError(failed.errno, failed.syscall, this.path, `the ${call} was not started`));
        }
      } catch (error) {
        this.settle();
        reject(error);
      }
    });
  }

  private settle(): void {
    if (--this.pending === 0 && this.drained) {
      const drained = this.drained;
      this.drained = undefined;
      drained();
    }
  }

  private closedError(): BlockforkError {
    return new BlockforkError('ERR_DEVICE_CLOSED', `device '${this.path}' is closed`);
  }
}

function toNative(requests: readonly IoRequest[]): NativeRequest[] {
  if (!Array.isArray(requests)) throw new TypeError(`requests must be an array, got ${describe(requests)}`);
  const out: NativeRequest[] = new Array(requests.length);
  for (let i = 0; i < requests.length; i++) {
    const r = requests[i];
    if (typeof r !== 'object' || r === null) throw new TypeError(`request ${i} must be an object, got ${describe(r)}`);
    if (r.op !== 'read' && r.op !== 'write') throw new TypeError(`request ${i}: op must be 'read' or 'write', got ${describe(r.op)}`);
    // dsync goes through as given: the addon refuses anything but a boolean.
    out[i] = { op: r.op === 'read' ? 0 : 1, offset: r.offset, buffers: r.buffers, dsync: r.dsync ?? false };
  }
  return out;
}

/** The views of `buffers` past their first `skip` bytes. */
function remainder(buffers: readonly Uint8Array[], skip: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const b of buffers) {
    if (skip >= b.byteLength) {
      skip -= b.byteLength;
      continue;
    }
    out.push(skip > 0 ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}

function byteLength(request: IoRequest): number {
  let total = 0;
  for (const b of request.buffers) total += b.byteLength;
  return total;
}

function isLockHeld(opened: ReturnType<typeof native.open>): boolean {
  return isNativeErrno(opened) && opened.syscall === 'flock' && opened.errno === -11; /* EWOULDBLOCK */
}

function openError(errno: number, syscall: string, path: string, direct: boolean, lockTimeout: number): SystemError {
  if (syscall === 'open' && direct && errno === -22 /* EINVAL */) {
    return systemError(errno, syscall, path, 'the file system refuses O_DIRECT; open with { direct: false } to use buffered I/O');
  }
  if (syscall === 'flock' && errno === -11 /* EWOULDBLOCK */) {
    return systemError(
      errno,
      syscall,
      path,
      `another open handle held its lock for the ${lockTimeout} ms of lockTimeout: one writer per volume`,
    );
  }
  return systemError(errno, syscall, path);
}

function optionalBoolean(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${describe(value)}`);
  return value;
}
