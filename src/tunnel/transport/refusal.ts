import { ErrorCodes, UdpTunnelError } from '../errors.js';
import { parseProxyStatusError } from '../proxy-status.js';

/**
 * Error for a proxy's refusal, shared by both client transports: a non-2xx answer over HTTP/2 (or a 2xx that ends the
 * stream), anything but 101 over HTTP/1.1. 401 and 407 become AUTH_REQUIRED, the rest TUNNEL_REFUSED; the RFC 9209
 * Proxy-Status error type, if any, is named in the message.
 */
export function refusedError(
  status: number,
  headers: Record<string, string | string[] | undefined>,
  what: string,
  sentCredentials = false,
): UdpTunnelError {
  const raw = headers['proxy-status'];
  const proxyStatus = Array.isArray(raw) ? raw.join(', ') : raw;
  const kind = parseProxyStatusError(proxyStatus);
  // 5xx and 429 may succeed on another attempt; other 4xx will not.
  const retryable = status >= 500 || status === 429;
  const message = `proxy refused ${what}: HTTP ${status}${kind ? ` (${kind})` : ''}`;
  if (status === 401 || status === 407) {
    if (sentCredentials) return new UdpTunnelError(ErrorCodes.AUTH_REQUIRED, `${message}; the proxy rejected the credentials`, { status, proxyStatus });
    const hint = '; the proxy requires credentials: set token or user:pass@ in the proxy URL';
    return new UdpTunnelError(ErrorCodes.AUTH_REQUIRED, `${message}${hint}`, { status, proxyStatus, related: ['token'] });
  }
  return new UdpTunnelError(ErrorCodes.TUNNEL_REFUSED, message, { status, proxyStatus }, { retryable });
}
