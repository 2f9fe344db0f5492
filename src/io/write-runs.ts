import { AdjacentViews } from './adjacent';
import { blocksPerRequest, MAX_BUFFERS_PER_REQUEST, type IoRequest } from './request';

/** A block to write: its device block number (relative to where the caller's area starts), and its image. */
export interface BlockImage {
  readonly home: number;
  readonly image: Uint8Array;
}

/**
 * Consecutive blocks to write from block `home`: `images` end to end, each a
 * view of one whole block or of several (blocks that follow one another in
 * memory may come joined, so that a run of thousands needs no view per block).
 */
export interface BlockRun {
  readonly home: number;
  readonly images: readonly Uint8Array[];
}

/**
 * Blocks sorted by home (strictly ascending), read by index: a delta's
 * thousands need no object or view per block until one is asked for.
 */
export interface BlockList {
  readonly length: number;
  home(i: number): number;
  /** Block i's image: a view of its memory. */
  image(i: number): Uint8Array;
  /** The images of blocks `from` to `to - 1`, end to end: views of whole blocks, joined where adjacent in memory. */
  images(from: number, to: number): Uint8Array[];
  /** Every block as an object of its own, in order. */
  toArray(): BlockImage[];
}

/** The blocks a run holds (its images' bytes, in blocks). */
export function runBlockCount(run: BlockRun, blockSize: number): number {
  let bytes = 0;
  for (const image of run.images) bytes += image.byteLength;
  return bytes / blockSize;
}

/**
 * Blocks sorted by home as vectored writes: consecutive homes make one
 * request (up to MAX_REQUEST_BYTES), images adjacent in memory one buffer,
 * and a request never takes more than MAX_BUFFERS_PER_REQUEST buffers.
 * `firstBlock` is the device block where home 0 lies.
 */
export function writeRuns(blocks: readonly BlockImage[], blockSize: number, firstBlock = 0): IoRequest[] {
  const builder = new WriteRunBuilder(blockSize, firstBlock);
  for (const b of blocks) builder.add(b.home, b.image.buffer, b.image.byteOffset);
  return builder.finish();
}

/** Runs already made (sorted by home, apart) as the same writes: each run cut at MAX_REQUEST_BYTES (a joined image across the cut, in two). */
export function runWrites(runs: readonly BlockRun[], blockSize: number, firstBlock = 0): IoRequest[] {
  const builder = new WriteRunBuilder(blockSize, firstBlock);
  for (const run of runs) {
    let home = run.home;
    for (const image of run.images) {
      builder.addBlocks(home, image);
      home += image.byteLength / blockSize;
    }
  }
  return builder.finish();
}

/**
 * writeRuns made block by block from where each image lies (its memory and
 * byte offset), blocks sorted by home: no view and no object per block, but
 * one view per stretch of adjacent memory. A delta's writeout of a stream
 * (thousands of blocks in consecutive frames) makes a few views instead of a
 * view and an object per block that a collector would then have to trace.
 */
export class WriteRunBuilder {
  /** Blocks added. */
  blocks = 0;
  private readonly out: IoRequest[] = [];
  private readonly maxBlocks: number;
  /** The run being built: `runBlocks` blocks from `runHome`, their memory joined where adjacent. */
  private runHome = 0;
  private runBlocks = 0;
  private readonly memory = new AdjacentViews();

  constructor(
    private readonly blockSize: number,
    /** The device block where home 0 lies. */
    private readonly firstBlock = 0,
  ) {
    this.maxBlocks = blocksPerRequest(blockSize);
  }

  /** Block `home`, whose image is the `blockSize` bytes at `byteOffset` of `memory`. */
  add(home: number, memory: ArrayBufferLike, byteOffset: number): void {
    this.blocks++;
    if (this.runBlocks > 0 && home === this.runHome + this.runBlocks && this.runBlocks < this.maxBlocks) {
      this.runBlocks++;
    } else {
      this.endRun();
      this.runHome = home;
      this.runBlocks = 1;
    }
    this.memory.add(memory, byteOffset, this.blockSize);
  }

  /** Blocks `home` onwards, whose images are `images` end to end (whole blocks, joined): cut where a request ends. */
  addBlocks(home: number, images: Uint8Array): void {
    const count = images.byteLength / this.blockSize;
    this.blocks += count;
    for (let at = 0; at < count; ) {
      if (!(this.runBlocks > 0 && home + at === this.runHome + this.runBlocks && this.runBlocks < this.maxBlocks)) {
        this.endRun();
        this.runHome = home + at;
      }
      const take = Math.min(count - at, this.maxBlocks - this.runBlocks);
      this.memory.add(images.buffer, images.byteOffset + at * this.blockSize, take * this.blockSize);
      this.runBlocks += take;
      at += take;
    }
  }

  /** The requests, in the order of the blocks added. */
  finish(): IoRequest[] {
    this.endRun();
    return this.out;
  }

  /** The run's writes: one request unless it holds too many buffers. */
  private endRun(): void {
    if (this.runBlocks === 0) return;
    const buffers = this.memory.finish();
    let offset = (this.firstBlock + this.runHome) * this.blockSize;
    for (let j = 0; j < buffers.length; j += MAX_BUFFERS_PER_REQUEST) {
      const part = buffers.length <= MAX_BUFFERS_PER_REQUEST ? buffers : buffers.slice(j, j + MAX_BUFFERS_PER_REQUEST);
      this.out.push({ op: 'write', offset, buffers: part });
      for (const b of part) offset += b.byteLength;
    }
    this.runBlocks = 0;
  }
}
