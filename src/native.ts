/**
 * The typed loader of the addon. The addon holds memory, copies, devices and
 * I/O, nothing of the cache: every decision is made in TypeScript above it.
 * Failed system calls come back as `{ errno, syscall }` (errno negative) and
 * become Errors in one place, src/io/errors.ts.
 */
import * as path from 'node:path';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const load: (dir: string) => unknown = require('node-gyp-build');

/** A failed system call as the addon reports it. */
export interface NativeErrno {
  readonly errno: number;
  readonly syscall: string;
}

export interface NativeOpenFlags {
  readOnly: boolean;
  direct: boolean;
  /** Create a regular file (sparse) at `size` bytes if it does not exist. */
  create: boolean;
  /** Bytes for a created file; 0 when not creating. */
  size: number;
}

export interface NativeOpened {
  readonly fd: number;
  readonly size: number;
  readonly logicalSectorSize: number;
  readonly physicalSectorSize: number;
  readonly memoryAlignment: number;
  readonly isBlockDevice: boolean;
  readonly created: boolean;
}

export interface NativeEngineOptions {
  fd: number;
  kind: 'io_uring' | 'threads';
  queueDepth: number;
  /** Offsets and lengths must be multiples of this. */
  sectorSize: number;
  /** Buffer addresses must be multiples of this. */
  memoryAlignment: number;
  /** Bytes on the device: no request may reach past it. */
  size: number;
  readOnly: boolean;
}

/** One request as the addon takes it (op: 0 read, 1 write). */
export interface NativeRequest {
  op: 0 | 1;
  offset: number;
  buffers: readonly Uint8Array[];
  dsync: boolean;
}

export interface NativeEngine {
  readonly kind: 'io_uring' | 'threads';
  readonly queueDepth: number;
  /** Requests not yet completed. */
  readonly inFlight: number;
  /**
   * Validates every request (throws TypeError/RangeError before any I/O),
   * then queues them; `done` gets one number per request: bytes moved or
   * -errno. Requests beyond the queue depth wait inside the engine. Every
   * buffer must be a view of a slab allocated by this thread; the engine
   * holds its own references to them, so the caller's arrays may be reused
   * at once. Returns a failed system call (a thread that could not be
   * started) with nothing queued, else undefined.
   */
  submit(requests: readonly NativeRequest[], done: (results: number[]) => void): NativeErrno | undefined;
  /** fdatasync after everything submitted before it; `done(0 | -errno)`. Returns as submit does. */
  flush(done: (result: number) => void): NativeErrno | undefined;
  /** Stops the engine; refuses (throws) while requests are in flight. */
  close(): void;
}

export interface NativeAddon {
  /** The system page size. */
  readonly pageSize: number;
  /**
   * mmap'd page-aligned memory outside the V8 heap; freed by GC or
   * releaseSlab. It belongs to the thread (main or Worker) that allocated it:
   * only that thread may use it for I/O or release it.
   */
  allocSlab(byteLength: number): ArrayBuffer;
  /** Frees a slab now; its views become empty. Throws while I/O uses it. */
  releaseSlab(slab: ArrayBuffer): void;
  /** memcpy between two views of equal length. */
  copy(target: Uint8Array, source: Uint8Array): void;
  open(path: string, flags: NativeOpenFlags): NativeOpened | NativeErrno;
  /** Unlocks and closes; 0 or -errno. */
  close(fd: number): number;
  /**
   * A regular file's first run of data at or after `offset` (lseek SEEK_DATA,
   * then SEEK_HOLE): [start, end); null when only holes follow.
   */
  dataExtent(fd: number, offset: number): [number, number] | null | NativeErrno;
  /** Whether io_uring can be set up here (kernel, seccomp, io_uring_disabled): 0 or -errno. */
  probeIoUring(): number;
  createEngine(options: NativeEngineOptions): NativeEngine | NativeErrno;
  /** CRC32C of `data`, continuing from `previous` (0 to start). */
  crc32c(data: Uint8Array, previous?: number): number;
  /** The same by the slicing-by-8 tables alone, as a CPU without the instruction computes it (the tests compare both). */
  crc32cTables(data: Uint8Array, previous?: number): number;
  /**
   * The CRC32C of each view, on libuv's thread pool: `done` gets them in
   * order; with `chunkBytes`, one per chunk of that many bytes of each view
   * (whose lengths must be multiples of it), in order. Views of slabs are
   * pinned until then (releaseSlab refuses); any other view is checksummed
   * before the call returns.
   */
  crc32cBatch(views: readonly Uint8Array[], done: (checksums: Uint32Array) => void, chunkBytes?: number): void;
  /** Whether the CPU's CRC32C instruction is used (SSE4.2, arm64's CRC extension). */
  readonly crc32cHardware: boolean;
}

/**
 * BLOCKFORK_ADDON names a build of the addon to load instead of the package's
 * own (the sanitizer run of CI builds one with AddressSanitizer).
 */
export const native = (
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  process.env.BLOCKFORK_ADDON ? require(path.resolve(process.env.BLOCKFORK_ADDON)) : load(path.join(__dirname, '..'))
) as NativeAddon;

export function isNativeErrno(value: unknown): value is NativeErrno {
  return typeof value === 'object' && value !== null && 'errno' in value && 'syscall' in value;
}
