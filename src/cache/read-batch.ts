import { joinAdjacent } from '../io/adjacent';
import { systemError } from '../io/errors';
import { MAX_BUFFERS_PER_REQUEST, MAX_REQUEST_BYTES, type BlockIo, type IoRequest } from '../io/request';

interface Job {
  readonly requests: readonly IoRequest[];
  resolve(): void;
  reject(error: unknown): void;
  failed?: unknown;
  /** Merged requests of this job not yet completed. */
  waiting: number;
}

interface Part {
  readonly request: IoRequest;
  readonly job: Job;
}

/**
 * The cache's reads on their way to the device: every read asked for while
 * the event loop runs the current batch of callbacks (32 readers whose
 * misses come back at once, the pages of a range) waits until that batch
 * has run (setImmediate), then all of them go down together, sorted by
 * offset, with requests that follow one another on the device merged into
 * one vectored request (up to MAX_REQUEST_BYTES and
 * MAX_BUFFERS_PER_REQUEST). One request per page, as each miss would issue
 * alone, costs the device its large transfers and costs us a system call
 * each. A merged request that fails fails every read that had a part in it.
 * One that the device says lies in a hole (a sparse file's never-written
 * blocks) is not sent: its buffers are zeroed here.
 *
 * Each merged request is submitted on its own, one after another in offset
 * order in the same turn: a submit resolves when its last request
 * completes, so unrelated requests in one submit (32 random readers)
 * would complete in lockstep, each reader waiting for the slowest, and the
 * queue would drain between batches instead of staying full.
 */
export class ReadBatch {
  private queued: Job[] = [];
  private scheduled = false;

  constructor(private readonly device: BlockIo) {}

  /**
   * Resolves once every request has read all of its bytes; rejects with the
   * first error of a request it had a part in. `now`: submit at once, with
   * whatever else is queued, rather than at the end of the turn: a
   * readahead window is asked for by a reader that goes on through cached
   * pages without yielding, and must be on its way meanwhile.
   */
  run(requests: readonly IoRequest[], now = false): Promise<void> {
    if (requests.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.queued.push({ requests, resolve, reject, waiting: 0 });
      if (now) {
        this.flush();
      } else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.flush();
        });
      }
    });
  }

  private flush(): void {
    const jobs = this.queued;
    if (jobs.length === 0) return;
    this.queued = [];
    const parts: Part[] = [];
    for (const job of jobs) for (const request of job.requests) parts.push({ request, job });
    parts.sort((a, b) => a.request.offset - b.request.offset);
    const merged: IoRequest[] = [];
    const members: Job[][] = [];
    let i = 0;
    while (i < parts.length) {
      const first = parts[i].request;
      let end = first.offset + bytesOf(first);
      if (i + 1 === parts.length || parts[i + 1].request.offset !== end) {
        // Nothing follows it on the device: it goes down as it is (32 random readers' misses).
        merged.push(first);
        members.push([parts[i].job]);
        i++;
        continue;
      }
      const buffers: Uint8Array[] = [...first.buffers];
      const owners = new Set<Job>([parts[i].job]);
      let j = i + 1;
      while (j < parts.length) {
        const next = parts[j].request;
        const bytes = bytesOf(next);
        if (next.offset !== end || end + bytes - first.offset > MAX_REQUEST_BYTES) break;
        if (buffers.length + next.buffers.length > MAX_BUFFERS_PER_REQUEST) break;
        buffers.push(...next.buffers);
        owners.add(parts[j].job);
        end += bytes;
        j++;
      }
      merged.push({ op: 'read', offset: first.offset, buffers: joinAdjacent(buffers) });
      members.push([...owners]);
      i = j;
    }
    for (const owners of members) for (const job of owners) job.waiting++;
    for (let k = 0; k < merged.length; k++) {
      const request = merged[k];
      if (this.device.holeAt?.(request.offset, bytesOf(request))) {
        // A hole of a sparse file: its zeros without a request (a stream of tx.write over fresh blocks).
        for (const buffer of request.buffers) buffer.fill(0);
        for (const job of members[k]) settle(job, undefined);
        continue;
      }
      this.device.submit([request]).then(
        ([result]) => {
          const error = result.error ?? this.shortRead(request, result.bytes);
          for (const job of members[k]) settle(job, error);
        },
        (error: unknown) => {
          for (const job of members[k]) settle(job, error);
        },
      );
    }
  }

  private shortRead(request: IoRequest, bytes: number): Error | undefined {
    const expected = bytesOf(request);
    if (bytes === expected) return undefined;
    return systemError(-5 /* EIO */, 'preadv', this.device.path, `short read: ${bytes} of ${expected} bytes at offset ${request.offset}`);
  }
}

function settle(job: Job, error: unknown): void {
  if (error !== undefined && job.failed === undefined) job.failed = error;
  if (--job.waiting > 0) return;
  if (job.failed !== undefined) job.reject(job.failed);
  else job.resolve();
}

function bytesOf(request: IoRequest): number {
  let n = 0;
  for (const b of request.buffers) n += b.byteLength;
  return n;
}
