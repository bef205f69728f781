import { isUdpTunnelError } from '../tunnel/errors.js';

/** What an inspect error event needs from a thrown error. */
export interface ErrorFacts {
  /** The UdpTunnelError's code, else the fallback. */
  code: string;
  /** details.offset of a UdpTunnelError (where in the input it failed), else 0. */
  offset: number;
  /** details.rfc of a UdpTunnelError, else null. */
  rfc: string | null;
  message: string;
}

/** Reads code, offset, RFC and message out of a thrown value; `fallbackCode` stands in for an uncoded error. */
export function errorFacts(err: unknown, fallbackCode: string): ErrorFacts {
  const coded = isUdpTunnelError(err);
  return {
    code: coded ? err.code : fallbackCode,
    offset: coded && typeof err.details['offset'] === 'number' ? err.details['offset'] : 0,
    rfc: coded && typeof err.details['rfc'] === 'string' ? err.details['rfc'] : null,
    message: err instanceof Error ? err.message : String(err),
  };
}
