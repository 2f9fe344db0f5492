import { SingleBar } from 'cli-progress';

/**
 * A progress bar on stderr while a long command runs. Only on a terminal:
 * piped or logged stderr gets no escape sequences, and stdout is never
 * touched, so `--json` output stays clean.
 */
export class Progress {
  private readonly bar: SingleBar | undefined;

  constructor(total: number) {
    if (!process.stderr.isTTY) return;
    this.bar = new SingleBar({
      stream: process.stderr,
      format: '{bar} {value}/{total} {step}',
      hideCursor: true,
      clearOnComplete: true,
    });
    this.bar.start(total, 0, { step: '' });
  }

  /** Says what runs now; `done` counts steps finished. */
  show(done: number, step: string): void {
    this.bar?.update(done, { step });
  }

  stop(): void {
    this.bar?.stop();
  }
}
