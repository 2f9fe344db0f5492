/**
 * How the command line ends: 0 ok, 1 failure, 2 usage. A failure is reported
 * on stderr as one line that carries its cause, so that scripts can log it
 * and people can read it without a stack trace.
 */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** A refusal or failure the CLI itself decides on (not a bug, not a system error). */
export class CliError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CliError';
  }
}

/** The error's message and its chain of causes, on one line. */
export function oneLine(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  while (current !== undefined && current !== null && parts.length < 5) {
    const message = current instanceof Error ? current.message : String(current);
    parts.push(message.split('\n')[0].trim());
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(': ');
}
