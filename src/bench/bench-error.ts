/** A refusal or failure the bench itself decides on (not a bug, not a system error): fio failed, no directory takes O_DIRECT, a report cannot be written. */
export class BenchError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BenchError';
  }
}
