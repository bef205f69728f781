import { UdpTunnelError } from '../tunnel/errors.js';

/** Exit codes: 0 ok, 1 runtime failure, 2 usage error. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Thrown by command code for bad flags and values; maps to exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

const USAGE_CODES = new Set(['UT_ERR_INVALID_ADDRESS', 'UT_ERR_INVALID_OPTION', 'UT_ERR_INVALID_TEMPLATE', 'UT_ERR_INVALID_INPUT']);

/** The one place that maps an error to an exit code and a one-line message. */
export function describeError(err: unknown): { code: number; message: string } {
  if (err instanceof UsageError) return { code: EXIT_USAGE, message: err.message };
  if (err instanceof UdpTunnelError) {
    return { code: USAGE_CODES.has(err.code) ? EXIT_USAGE : EXIT_FAILURE, message: `${err.message} [${err.code}]` };
  }
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e === 'object' && typeof e.code === 'string') {
    if (e.code === 'EADDRINUSE') return { code: EXIT_FAILURE, message: `address already in use: ${e.message}` };
    if (e.code === 'EACCES') return { code: EXIT_FAILURE, message: `permission denied: ${e.message}` };
    if (e.code === 'ENOENT') return { code: EXIT_FAILURE, message: `file not found: ${e.message}` };
    return { code: EXIT_FAILURE, message: `${e.message} [${e.code}]` };
  }
  return { code: EXIT_FAILURE, message: e?.message ?? String(err) };
}
