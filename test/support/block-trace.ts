import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';

/**
 * The kernel's own account of what a block device received: the block
 * layer's tracepoints (`block:block_rq_issue`, `block:block_rq_complete`),
 * read through tracefs, filtered to one device, in a tracing instance of our
 * own so that nothing else on the machine that traces is disturbed.
 *
 * This is the durability oracle that trusts nothing above the kernel: not
 * the BlockIo interface, not the addon's `flush()`, not the `dsync` flag. A
 * write is durable once the device has seen a flush request issued after the
 * write completed, and that flush has completed (or the write itself carried
 * FUA and completed). A loop device over a file has a volatile write cache
 * and no FUA (its queue says `write back`, `fua 0`), so the block layer
 * turns an RWF_DSYNC (FUA) write into the write and then a flush request,
 * and fdatasync on the device into a flush request: both show as `FF` on the
 * loop device's own queue, which is where we look.
 *
 * `io_uring:io_uring_submit_req` is recorded too (for this process only) to
 * show which opcodes the ring really submitted.
 *
 * Events are kept in the order the trace gives them, under the `global`
 * clock (one clock for every CPU): that order is the order in time.
 */

const TRACEFS = '/sys/kernel/tracing';

export interface BlockRequest {
  readonly kind: 'write' | 'read' | 'flush' | 'other';
  /** 512-byte sectors, as the block layer counts. */
  readonly sector: number;
  readonly sectors: number;
  /** Carried REQ_FUA to the device (durable on completion). */
  readonly fua: boolean;
  /** Index of the issue event in the trace. */
  readonly issued: number;
  /** Index of the completion event, undefined if it never completed while traced. */
  completed: number | undefined;
  readonly rwbs: string;
}

export interface TraceMark {
  readonly label: string;
  readonly at: number;
}

export interface RingSubmit {
  readonly opcode: string;
  readonly at: number;
}

export class BlockTraceLog {
  constructor(
    readonly requests: readonly BlockRequest[],
    readonly marks: readonly TraceMark[],
    readonly submits: readonly RingSubmit[],
  ) {}

  mark(label: string): number {
    const found = this.marks.filter((m) => m.label === label);
    if (found.length !== 1) throw new Error(`trace mark ${JSON.stringify(label)} found ${found.length} times`);
    return found[0].at;
  }

  writes(): BlockRequest[] {
    return this.requests.filter((r) => r.kind === 'write');
  }

  /** Writes whose sectors overlap [sector, sector + sectors), issued in the event range (from, to). */
  writesTo(sector: number, sectors: number, from = -1, to = Infinity): BlockRequest[] {
    return this.writes().filter((w) => w.issued > from && w.issued < to && w.sector < sector + sectors && sector < w.sector + w.sectors);
  }

  /**
   * The event index by which `write` was durable, or undefined if it never
   * was while traced: its own completion if it carried FUA, else the
   * completion of the first flush issued after the write completed.
   */
  durableAt(write: BlockRequest): number | undefined {
    if (write.completed === undefined) return undefined;
    if (write.fua) return write.completed;
    let best: number | undefined;
    for (const f of this.requests) {
      if (f.kind !== 'flush' || f.issued < write.completed || f.completed === undefined) continue;
      if (best === undefined || f.completed < best) best = f.completed;
    }
    return best;
  }

  /** One line per request and mark, in trace order, for a failure message. */
  describe(from = 0, to = Infinity): string {
    const lines: [number, string][] = [];
    for (const r of this.requests) {
      if (r.issued >= from && r.issued <= to) lines.push([r.issued, `issue    ${r.rwbs} ${r.sector}+${r.sectors}`]);
      if (r.completed !== undefined && r.completed >= from && r.completed <= to) lines.push([r.completed, `complete ${r.rwbs} ${r.sector}+${r.sectors}`]);
    }
    for (const m of this.marks) if (m.at >= from && m.at <= to) lines.push([m.at, `mark     ${m.label}`]);
    for (const s of this.submits) if (s.at >= from && s.at <= to) lines.push([s.at, `ring     ${s.opcode}`]);
    return lines
      .sort((a, b) => a[0] - b[0])
      .map(([at, text]) => `${String(at).padStart(6)} ${text}`)
      .join('\n');
  }
}

/** Why the block layer cannot be traced here, or undefined if it can (mounting tracefs if need be). */
export function blockTraceUnavailable(): string | undefined {
  if (!fs.existsSync(`${TRACEFS}/instances`)) {
    try {
      fs.mkdirSync(TRACEFS, { recursive: true });
      execFileSync('mount', ['-t', 'tracefs', 'nodev', TRACEFS], { stdio: 'ignore' });
    } catch (error) {
      return `tracefs is not mounted at ${TRACEFS} and cannot be mounted (${(error as Error).message.split('\n')[0]})`;
    }
  }
  for (const event of ['block/block_rq_issue', 'block/block_rq_complete', 'io_uring/io_uring_submit_req']) {
    if (!fs.existsSync(`${TRACEFS}/events/${event}`)) return `the kernel has no tracepoint ${event.replace('/', ':')}`;
  }
  return undefined;
}

/** dev_t as the block tracepoints hold it: major << 20 | minor. */
function kernelDev(device: string): number {
  const rdev = fs.statSync(device).rdev;
  // Node's rdev is the userspace encoding (glibc): major in bits 8..19 and 32..43, minor in 0..7 and 20..31.
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
  return major * 2 ** 20 + minor;
}

export class BlockTrace {
  private readonly markFd: number;
  private stopped = false;

  private constructor(private readonly dir: string) {
    this.markFd = fs.openSync(`${dir}/trace_marker`, 'w');
  }

  /** Starts tracing requests to `device` (a block device path) in a new tracing instance. */
  static start(device: string): BlockTrace {
    const dir = `${TRACEFS}/instances/blockfork-test-${process.pid}-${Date.now()}`;
    fs.mkdirSync(dir);
    const write = (file: string, value: string): void => fs.writeFileSync(`${dir}/${file}`, value);
    try {
      write('tracing_on', '0');
      write('trace_clock', 'global');
      write('buffer_size_kb', '4096');
      write('options/record-tgid', '1');
      const dev = kernelDev(device);
      for (const event of ['block_rq_issue', 'block_rq_complete']) {
        write(`events/block/${event}/filter`, `dev == ${dev}`);
        write(`events/block/${event}/enable`, '1');
      }
      write('events/io_uring/io_uring_submit_req/enable', '1');
      write('trace', '');
      write('tracing_on', '1');
    } catch (error) {
      fs.rmdirSync(dir);
      throw error;
    }
    return new BlockTrace(dir);
  }

  /** A point of the test's own in the trace ("commit 3 resolved"), written by this thread now. */
  mark(label: string): void {
    fs.writeSync(this.markFd, `blockfork: ${label}\n`);
  }

  /** Stops, parses and removes the instance. */
  stop(): BlockTraceLog {
    if (this.stopped) throw new Error('the trace was stopped already');
    this.stopped = true;
    fs.closeSync(this.markFd);
    fs.writeFileSync(`${this.dir}/tracing_on`, '0');
    const text = fs.readFileSync(`${this.dir}/trace`, 'utf8');
    this.remove();
    return parse(text);
  }

  /** Removes the instance without reading it (harmless after stop). */
  remove(): void {
    if (!fs.existsSync(this.dir)) return;
    try {
      fs.writeFileSync(`${this.dir}/tracing_on`, '0');
      for (const event of ['block/block_rq_issue', 'block/block_rq_complete', 'io_uring/io_uring_submit_req']) {
        fs.writeFileSync(`${this.dir}/events/${event}/enable`, '0');
      }
    } finally {
      fs.rmdirSync(this.dir);
    }
  }
}

// "  comm-pid  (  tgid) [cpu] flags  123.456789: event: details"
const LINE = /^\s*.+?-(\d+)\s+\(\s*(\d+|-+)\)\s+\[\d+\]\s+\S+\s+\d+\.\d+:\s+(\w+):\s+(.*)$/;
// "7,0 WS 4096 () 80 + 8 be,0,4 [dd]" (issue) or "7,0 WS () 80 + 8 be,0,4 [0]" (complete)
const RQ = /^\d+,\d+\s+(\S+)\s+(?:\d+\s+)?\(.*?\)\s+(\d+)\s+\+\s+(\d+)/;

// rwbs as the kernel writes it (blk_fill_rwbs): 'F' for REQ_PREFLUSH, then the
// operation (W, R, D, F for a flush, N), then 'F' for REQ_FUA, then A, S, M.
function parseRwbs(rwbs: string, sectors: number): { kind: BlockRequest['kind']; fua: boolean } {
  const preflush = rwbs[0] === 'F' && 'WRDFN'.includes(rwbs[1] ?? '');
  const op = rwbs[preflush ? 1 : 0];
  const fua = rwbs.slice(preflush ? 2 : 1).startsWith('F');
  if (op === 'F' || (op === 'W' && preflush && sectors === 0)) return { kind: 'flush', fua: false };
  if (op === 'W') return { kind: 'write', fua };
  if (op === 'R') return { kind: 'read', fua: false };
  return { kind: 'other', fua: false };
}

function parse(text: string): BlockTraceLog {
  const requests: BlockRequest[] = [];
  const marks: TraceMark[] = [];
  const submits: RingSubmit[] = [];
  const outstanding = new Map<string, BlockRequest[]>();
  let at = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const [, , tgid, event, details] = m;
    at++;
    if (event === 'tracing_mark_write') {
      const label = /blockfork: (.*)$/.exec(details);
      if (label) marks.push({ label: label[1], at });
      continue;
    }
    if (event === 'io_uring_submit_req') {
      if (Number(tgid) !== process.pid) continue;
      const op = /opcode (\S+?),/.exec(details);
      if (op) submits.push({ opcode: op[1], at });
      continue;
    }
    const rq = RQ.exec(details);
    if (!rq) continue;
    const [, rwbs, sectorText, sectorsText] = rq;
    const sectors = Number(sectorsText);
    const { kind, fua } = parseRwbs(rwbs, sectors);
    // A flush completes with sector -1; pair flushes in order, data requests by their extent.
    const key = kind === 'flush' ? 'flush' : `${kind}:${sectorText}+${sectors}`;
    if (event === 'block_rq_issue') {
      const request: BlockRequest = { kind, sector: kind === 'flush' ? 0 : Number(sectorText), sectors, fua, issued: at, completed: undefined, rwbs };
      requests.push(request);
      const queue = outstanding.get(key) ?? [];
      queue.push(request);
      outstanding.set(key, queue);
    } else if (event === 'block_rq_complete') {
      // A write that went through the flush machinery (FUA or PREFLUSH on a
      // queue without FUA) completes its data first (its extent) and then, once
      // the flush is done, once more with no sectors: that second completion
      // carries no news for the device.
      if (kind !== 'flush' && sectors === 0) continue;
      const request = outstanding.get(key)?.shift();
      if (request) request.completed = at;
    }
  }
  return new BlockTraceLog(requests, marks, submits);
}
