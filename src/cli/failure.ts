/**
 * How the command line ends: 0 ok, 1 failure, 2 usage. A failure is reported
 * on stderr as one line that carries its cause (io/error-chain.ts).
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

