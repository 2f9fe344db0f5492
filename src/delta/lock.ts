interface Waiter {
  readonly exclusive: boolean;
  readonly grant: () => void;
}

/**
 * The delta lock: a readers/writer lock. Each change holds it shared for its
 * whole duration, so every block it dirties lands in one delta; a delta
 * transition holds it exclusive, between changes.
 *
 * Waiters are served strictly in the order they asked: a change that asks
 * after a transition waits for it, so the order of calls decides which delta
 * a change lands in ("a change called before commit() is in the delta that
 * commit closes"). Asking is synchronous: the place in line is taken at the
 * call, before anything awaits.
 */
export class DeltaLock {
  private readers = 0;
  private writer = false;
  private readonly queue: Waiter[] = [];

  /** No one holds or awaits it: no change is in progress, and no switch under way. */
  get idle(): boolean {
    return this.readers === 0 && !this.writer && this.queue.length === 0;
  }

  /** Changes waiting for the lock (behind a switch that holds or awaits it exclusive). */
  get sharedWaiting(): boolean {
    return this.queue.some((waiter) => !waiter.exclusive);
  }

  /** Takes the lock shared now if no one holds or awaits it exclusive. */
  tryShared(): boolean {
    if (this.writer || this.queue.length > 0) return false;
    this.readers++;
    return true;
  }

  shared(): Promise<void> {
    if (this.tryShared()) return Promise.resolve();
    return new Promise<void>((grant) => this.queue.push({ exclusive: false, grant }));
  }

  exclusive(): Promise<void> {
    if (!this.writer && this.readers === 0 && this.queue.length === 0) {
      this.writer = true;
      return Promise.resolve();
    }
    return new Promise<void>((grant) => this.queue.push({ exclusive: true, grant }));
  }

  releaseShared(): void {
    this.readers--;
    this.serve();
  }

  releaseExclusive(): void {
    this.writer = false;
    this.serve();
  }

  /** Grants the head of the line, and every shared waiter up to the next exclusive one. */
  private serve(): void {
    while (this.queue.length > 0 && !this.writer) {
      const head = this.queue[0];
      if (head.exclusive) {
        if (this.readers > 0) return;
        this.writer = true;
      } else {
        this.readers++;
      }
      this.queue.shift();
      head.grant();
    }
  }
}
