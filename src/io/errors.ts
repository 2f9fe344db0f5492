import { getSystemErrorMap } from 'node:util';

/** A failed system call, shaped as Node's `fs` shapes them. */
export interface SystemError extends Error {
  code: string;
  /** Negative, as libuv and `fs` report it. */
  errno: number;
  syscall: string;
  path?: string;
}

const systemErrors = getSystemErrorMap();

/**
 * Errors that block I/O meets on Linux and libuv does not name (the numbers
 * are Linux's generic ones): without them a full quota or a character device
 * would read `UNKNOWN: unknown error -122`.
 */
const linuxOnlyErrors = new Map<number, [string, string]>([
  [-15, ['ENOTBLK', 'block device required']],
  [-37, ['ENOLCK', 'no locks available']],
  [-74, ['EBADMSG', 'bad message']],
  [-116, ['ESTALE', 'stale file handle']],
  [-117, ['EUCLEAN', 'structure needs cleaning']],
  [-122, ['EDQUOT', 'disk quota exceeded']],
]);

/**
 * The one place a `-errno` from the addon becomes an Error, so that every
 * layer reports failures alike: `EINVAL: invalid argument, open '/x'`.
 * `detail` is appended where the raw message alone would mislead.
 */
export function systemError(errno: number, syscall: string, path?: string, detail?: string): SystemError {
  const negative = errno > 0 ? -errno : errno;
  const [code, description] = systemErrors.get(negative) ?? linuxOnlyErrors.get(negative) ?? ['UNKNOWN', `unknown error ${negative}`];
  let message = `${code}: ${description}, ${syscall}`;
  if (path !== undefined) message += ` '${path}'`;
  if (detail !== undefined) message += ` (${detail})`;
  const error = new Error(message) as SystemError;
  error.errno = negative;
  error.code = code;
  error.syscall = syscall;
  if (path !== undefined) error.path = path;
  Error.captureStackTrace?.(error, systemError);
  return error;
}

/** Errors of blockfork's own (not of a system call) carry a stable `code`. */
export class BlockforkError extends Error {
  constructor(public readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BlockforkError';
  }
}
