/**
 * A small persistent key-value store on blockfork: a hash table over blocks.
 *
 * Layout. Block 0 is the store's superblock; blocks 1 .. tableBlocks are the
 * table. Each table block is a bucket that holds as many variable-length
 * records as fit:
 *
 *   table block:  used u32 LE (bytes of records) | flags u8 | 3 bytes zero | records ... | zeros
 *   record:       keyLength u8 | valueLength u16 LE | key | value
 *
 * A key's home is block 1 + hash(key) mod tableBlocks. Collisions are handled
 * by open addressing over whole blocks (linear probing): a record lives in its
 * home block or, when that is full, in the next block with room, wrapping
 * around. Each block passed over on the way gets the OVERFLOW flag, which
 * says "a key whose search passes here may live further on". So:
 *
 * - get(key) reads blocks from the home onwards and stops at the key, or at
 *   the first block without OVERFLOW (usually the home block itself: one read).
 * - put(key, value) finds the key as get does, then the first block from the
 *   home with room for the new record (counting the room the old record
 *   frees), and writes: the old record out, the new one in, OVERFLOW on the
 *   blocks in between. The plan is made before any byte is changed, so a
 *   put that fails (a full table) changes nothing.
 * - delete(key) removes the record and packs its block. OVERFLOW flags stay
 *   (they are tombstones at block granularity): deleting never breaks the
 *   search for another key. A table that has overflowed a lot and then
 *   shrunk keeps longer searches for missing keys; copy it into a new store
 *   to tidy it.
 *
 * Atomicity. Each put or delete is one `vol.change()`: with `journal: true`
 * a crash never leaves half of one. Changes are not written until
 * `flush()` (= `vol.commit()`, then the operations after it wait for
 * `vol.deltaClosed()`): a batch of puts followed by one flush is one
 * delta, atomic across crashes, as long as it dirties less than the volume's
 * high-water mark (half of `cacheSize` by default: 128 MiB, 32768 blocks of
 * 4 KiB; with the journal, also at most half of the log); past that the
 * volume starts a delta by itself and the batch lands in several, each of
 * them whole. Operations on one store run one at a time,
 * in call order (a small queue), so a put need not be awaited before the next
 * call and `flush()` covers every put called before it.
 *
 * Limits: keys of 0 to MAX_KEY_BYTES (255) bytes, values of 0 to
 * MAX_VALUE_BYTES (1024) bytes, strings as UTF-8; blocks of at least
 * 2048 bytes. A store on a new (zero) file is formatted on open.
 */
import { open, type Change, type OpenOptions, type Volume } from 'blockfork';

export const MAX_KEY_BYTES = 255;
export const MAX_VALUE_BYTES = 1024;

/** A key or a value: bytes, or a string stored as UTF-8. */
export type Bytes = Buffer | Uint8Array | string;

export interface KvOptions extends OpenOptions {
  /** Crash atomicity for each flush (default true). */
  journal?: boolean;
  /** Table blocks, when the store is created (default: all blocks of the volume but the superblock). */
  tableBlocks?: number;
}

const MAGIC = 'BFKV';
const VERSION = 1;
const MIN_BLOCK_SIZE = 2048;

// Superblock (block 0).
const SB_MAGIC = 0; // 4 bytes, 'BFKV'
const SB_VERSION = 4; // u32
const SB_BLOCK_SIZE = 8; // u32
const SB_TABLE_BLOCKS = 12; // u32
const SB_MAX_KEY = 16; // u16
const SB_MAX_VALUE = 18; // u16

// Table blocks.
const HEADER = 8;
const USED = 0; // u32: bytes of records after the header
const FLAGS = 4; // u8
const OVERFLOW = 1;
const RECORD_HEADER = 3; // keyLength u8, valueLength u16

/** A record: where it is, and the block (as read) that holds it. */
interface Found {
  block: number;
  data: Buffer;
  offset: number;
  length: number;
}

/** Reads a block, as the operation under way sees it. */
type Reader = (block: number) => Promise<Buffer>;

function noop(): void {}

function closed(): Error {
  return Object.assign(new Error('the kv store is closed'), { code: 'ERR_KV_CLOSED' });
}

/** FNV-1a over the key, then murmur3's finaliser so that nearby keys spread. */
export function hashKey(key: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key[i], 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function toBytes(what: 'key' | 'value', input: unknown, max: number): Buffer {
  let bytes: Buffer;
  if (typeof input === 'string') bytes = Buffer.from(input, 'utf8');
  else if (input instanceof Uint8Array) bytes = Buffer.from(input); // a copy: the caller may reuse theirs before the queued put runs
  else throw new TypeError(`${what} must be a Buffer, Uint8Array or string, got ${input === null ? 'null' : typeof input}`);
  if (bytes.length > max) throw new RangeError(`${what} is ${bytes.length} bytes; the most a ${what} may have is ${max} bytes`);
  return bytes;
}

function used(block: Buffer): number {
  return block.readUInt32LE(USED);
}

function overflowed(block: Buffer): boolean {
  return (block[FLAGS] & OVERFLOW) !== 0;
}

export class Kv {
  /** The number of table blocks (fixed when the store is created). */
  readonly tableBlocks: number;
  /** Bytes for records in each table block. */
  private readonly area: number;
  /** The queue that runs operations one at a time, in call order. */
  private tail: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | undefined;

  private constructor(
    /** The volume underneath, for stats and the lower layer. */
    readonly volume: Volume,
    tableBlocks: number,
  ) {
    this.tableBlocks = tableBlocks;
    this.area = volume.blockSize - HEADER;
  }

  /**
   * Opens the store in a file or on a block device (a file that does not
   * exist is created at `size` bytes), formatting it if block 0 is zero.
   */
  static async open(path: string, options: KvOptions = {}): Promise<Kv> {
    const { tableBlocks, journal = true, ...rest } = options;
    const volume = await open(path, { ...rest, journal });
    try {
      return await Kv.on(volume, { tableBlocks });
    } catch (error) {
      await volume.close().catch(noop);
      throw error;
    }
  }

  /** A store on an open volume (which it owns from here: `close()` closes it). */
  static async on(volume: Volume, options: { tableBlocks?: number } = {}): Promise<Kv> {
    const { blockSize, blockCount } = volume;
    if (blockSize < MIN_BLOCK_SIZE) throw new RangeError(`the kv store needs blocks of at least ${MIN_BLOCK_SIZE} bytes, the volume has ${blockSize}`);
    const most = Math.min(blockCount - 1, 0xffffffff);
    const sb = await volume.read(0);
    if (sb.every((byte) => byte === 0)) {
      const tableBlocks = options.tableBlocks ?? most;
      if (!Number.isSafeInteger(tableBlocks) || tableBlocks < 1 || tableBlocks > most) {
        throw new RangeError(`tableBlocks must be an integer from 1 to ${most} (the volume has ${blockCount} blocks), got ${tableBlocks}`);
      }
      await volume.change(async (tx) => {
        const b = await tx.write(0);
        b.write(MAGIC, SB_MAGIC, 'latin1');
        b.writeUInt32LE(VERSION, SB_VERSION);
        b.writeUInt32LE(blockSize, SB_BLOCK_SIZE);
        b.writeUInt32LE(tableBlocks, SB_TABLE_BLOCKS);
        b.writeUInt16LE(MAX_KEY_BYTES, SB_MAX_KEY);
        b.writeUInt16LE(MAX_VALUE_BYTES, SB_MAX_VALUE);
      });
      await volume.commit();
      return new Kv(volume, tableBlocks);
    }
    if (sb.toString('latin1', SB_MAGIC, SB_MAGIC + 4) !== MAGIC) throw new Error('not a kv store: block 0 is neither zero nor a kv superblock');
    const version = sb.readUInt32LE(SB_VERSION);
    if (version !== VERSION) throw new Error(`kv store version ${version} is not supported (this code reads version ${VERSION})`);
    const storedBlockSize = sb.readUInt32LE(SB_BLOCK_SIZE);
    if (storedBlockSize !== blockSize) throw new Error(`the kv store was made with ${storedBlockSize}-byte blocks; open the volume with blockSize: ${storedBlockSize}`);
    const tableBlocks = sb.readUInt32LE(SB_TABLE_BLOCKS);
    if (tableBlocks < 1 || tableBlocks > most) throw new Error(`corrupt kv superblock: ${tableBlocks} table blocks on a volume of ${blockCount}`);
    if (options.tableBlocks !== undefined && options.tableBlocks !== tableBlocks) {
      throw new RangeError(`tableBlocks is ${tableBlocks} in this store, not ${options.tableBlocks} (it is fixed when the store is created)`);
    }
    return new Kv(volume, tableBlocks);
  }

  /** The table block where the search for `key` starts. */
  homeBlock(key: Bytes): number {
    return 1 + (hashKey(toBytes('key', key, MAX_KEY_BYTES)) % this.tableBlocks);
  }

  /** The value of `key` (as the cache holds it now: flushed or not), or undefined. */
  get(key: Bytes): Promise<Buffer | undefined> {
    return this.call(() => toBytes('key', key, MAX_KEY_BYTES), async (k) => {
      const found = await this.find((block) => this.volume.read(block), k);
      if (!found) return undefined;
      return Buffer.from(found.data.subarray(found.offset + RECORD_HEADER + k.length, found.offset + found.length));
    });
  }

  /** Sets `key` to `value` as one change. A RangeError if either is too long or no block has room. */
  put(key: Bytes, value: Bytes): Promise<void> {
    return this.call(
      () => [toBytes('key', key, MAX_KEY_BYTES), toBytes('value', value, MAX_VALUE_BYTES)] as const,
      ([k, v]) => this.volume.change((tx) => this.putIn(tx, k, v)),
    );
  }

  /** Removes `key` as one change; resolves with whether it was there. */
  delete(key: Bytes): Promise<boolean> {
    return this.call(
      () => toBytes('key', key, MAX_KEY_BYTES),
      (k) =>
        this.volume.change(async (tx) => {
          const found = await this.find((block) => tx.read(block), k); // copies: a delete of a missing key dirties nothing
          if (!found) return false;
          removeRecord(await tx.write(found.block), found);
          return true;
        }),
    );
  }

  /**
   * Commits every put and delete called before it, as one delta; resolves
   * with the delta's number once it is durable. Later calls go on meanwhile
   * (they land in the next delta) and do not wait for the disk.
   */
  flush(): Promise<number> {
    if (this.closing) return Promise.reject(closed());
    // The commit takes its place in the volume's line when called; later operations wait until
    // its delta has closed, so that they land in the next one (a batch stays whole, G5).
    const started = this.tail.then(() => ({ durable: this.volume.commit() }));
    this.tail = started.then(() => this.volume.deltaClosed()).then(noop, noop);
    return started.then((s) => s.durable);
  }

  /**
   * Every key and value, block by block. Operations that run during the
   * iteration may or may not be seen (a key moved by a put may be seen twice or not at all).
   */
  async *entries(): AsyncGenerator<[Buffer, Buffer]> {
    for (let b = 1; b <= this.tableBlocks; b++) {
      const block = await this.call(() => b, (n) => this.volume.read(n));
      for (const { offset, length } of records(block, b)) {
        const keyLength = block[offset];
        yield [block.subarray(offset + RECORD_HEADER, offset + RECORD_HEADER + keyLength), block.subarray(offset + RECORD_HEADER + keyLength, offset + length)];
      }
    }
  }

  /** Flushes what is pending and closes the volume. */
  close(): Promise<void> {
    if (!this.closing) this.closing = this.tail.then(() => this.volume.close());
    return this.closing;
  }

  /**
   * Checks the arguments now (so a bad one rejects at once, and the bytes are
   * copied before the caller can change them), then queues `op` behind every
   * operation called before it.
   */
  private call<A, T>(args: () => A, op: (args: A) => Promise<T>): Promise<T> {
    try {
      if (this.closing) throw closed();
      const checked = args();
      return this.run(() => op(checked));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private run<T>(op: () => Promise<T>): Promise<T> {
    const result = this.tail.then(op);
    this.tail = result.then(noop, noop);
    return result;
  }

  /** The table block `step` blocks after `home`, wrapping around. */
  private probe(home: number, step: number): number {
    return 1 + ((home - 1 + step) % this.tableBlocks);
  }

  private async find(read: Reader, key: Buffer): Promise<Found | undefined> {
    const home = 1 + (hashKey(key) % this.tableBlocks);
    for (let step = 0; step < this.tableBlocks; step++) {
      const b = this.probe(home, step);
      const block = await read(b);
      const found = findIn(block, b, key);
      if (found) return found;
      if (!overflowed(block)) return undefined;
    }
    return undefined;
  }

  private async putIn(tx: Change, key: Buffer, value: Buffer): Promise<void> {
    const need = RECORD_HEADER + key.length + value.length;
    const home = 1 + (hashKey(key) % this.tableBlocks);
    // Plan from reads, remembered so each block is read once. The home block
    // is nearly always the one written, so it is taken writable at once (a
    // view, where tx.read would copy the block); the others are read as copies.
    const seen = new Map<number, Buffer>();
    const read: Reader = async (b) => {
      let block = seen.get(b);
      if (!block) seen.set(b, (block = await (b === home ? tx.write(b) : tx.read(b))));
      return block;
    };
    const found = await this.find(read, key);
    let steps = -1;
    for (let step = 0; step < this.tableBlocks; step++) {
      const b = this.probe(home, step);
      const block = await read(b);
      const free = this.area - used(block) + (found?.block === b ? found.length : 0);
      if (free >= need) {
        steps = step;
        break;
      }
    }
    if (steps < 0) {
      throw new RangeError(`the kv table is full: none of its ${this.tableBlocks} blocks has ${need} bytes free for this key and value`);
    }
    // Then write: OVERFLOW on the blocks passed over, the old record out, the new one in.
    for (let step = 0; step < steps; step++) {
      const b = this.probe(home, step);
      if (!overflowed(await read(b))) (await tx.write(b))[FLAGS] |= OVERFLOW;
    }
    if (found) removeRecord(await tx.write(found.block), found);
    const block = await tx.write(this.probe(home, steps));
    let at = HEADER + used(block);
    block[at] = key.length;
    block.writeUInt16LE(value.length, at + 1);
    at += RECORD_HEADER;
    at += key.copy(block, at);
    value.copy(block, at);
    block.writeUInt32LE(used(block) + need, USED);
  }
}

/** The records of a table block, checked to tile its used bytes exactly. */
function* records(block: Buffer, b: number): Generator<Found> {
  const end = HEADER + used(block);
  if (end > block.length) throw new Error(`corrupt kv table block ${b}: ${end - HEADER} bytes used of ${block.length - HEADER}`);
  let offset = HEADER;
  while (offset < end) {
    if (offset + RECORD_HEADER > end) throw new Error(`corrupt kv table block ${b}: a record header runs past the used bytes`);
    const length = RECORD_HEADER + block[offset] + block.readUInt16LE(offset + 1);
    if (offset + length > end) throw new Error(`corrupt kv table block ${b}: a record runs past the used bytes`);
    yield { block: b, data: block, offset, length };
    offset += length;
  }
}

/** The record of `key` in a table block, if it is there. */
function findIn(block: Buffer, b: number, key: Buffer): Found | undefined {
  for (const record of records(block, b)) {
    const start = record.offset + RECORD_HEADER;
    // compare() with ranges compares in place: no Buffer made per record.
    if (block[record.offset] === key.length && block.compare(key, 0, key.length, start, start + key.length) === 0) return record;
  }
  return undefined;
}

/** Removes a record and packs the ones after it down, leaving zeros at the end. */
function removeRecord(block: Buffer, { offset, length }: { offset: number; length: number }): void {
  const end = HEADER + used(block);
  block.copyWithin(offset, offset + length, end);
  block.fill(0, end - length, end);
  block.writeUInt32LE(end - HEADER - length, USED);
}
