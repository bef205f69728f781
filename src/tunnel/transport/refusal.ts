import { ErrorCodes, UdpTunnelError } from '../errors.js';
import { proxyStatusReport, type ProxyStatusReport } from '../proxy-status.js';

/** How a refusal's message shows the proxy's Proxy-Status: ` (error): "details"`, or why it could not be read. */
export function describeProxyStatus(ps: ProxyStatusReport | undefined): string {
  if (ps === undefined) return '';
  if (ps.malformed !== undefined) return ` (unreadable Proxy-Status: ${ps.malformed})`;
  const kind = [ps.error, ps.rcode !== undefined ? `rcode ${ps.rcode}` : undefined].filter((x) => x !== undefined);
  let out = kind.length > 0 ? ` (${kind.join(', ')})` : '';
  if (ps.details !== undefined) out += `: ${JSON.stringify(ps.details)}`;
  return out;
}

/**
 * Error for a proxy's refusal, shared by both client transports: a non-2xx answer over HTTP/2 (or a 2xx that ends the
 * stream), anything but 101 over HTTP/1.1. 401 and 407 become AUTH_REQUIRED, the rest TUNNEL_REFUSED; the RFC 9209
 * Proxy-Status error type and details, if any, are named in the message and parsed into `details.proxyStatus`.
 */
export function refusedError(
  status: number,
  headers: Record<string, string | string[] | undefined>,
  what: string,
  sentCredentials = false,
): UdpTunnelError {
  const proxyStatus = proxyStatusReport(headers['proxy-status']);
  // 5xx and 429 may succeed on another attempt; other 4xx will not.
  const retryable = status >= 500 || status === 429;
  const message = `proxy refused ${what}: HTTP ${status}${describeProxyStatus(proxyStatus)}`;
  const details = { status, ...(proxyStatus !== undefined ? { proxyStatus } : {}) };
  if (status === 401 || status === 407) {
    if (sentCredentials) return new UdpTunnelError(ErrorCodes.AUTH_REQUIRED, `${message}; the proxy rejected the credentials`, details);
    const hint = '; the proxy requires credentials: set token or user:pass@ in the proxy URL';
    return new UdpTunnelError(ErrorCodes.AUTH_REQUIRED, `${message}${hint}`, { ...details, related: ['token'] });
  }
  return new UdpTunnelError(ErrorCodes.TUNNEL_REFUSED, message, details, { retryable });
}
