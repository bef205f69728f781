import { ErrorCodes, type UdpTunnelError } from './errors.js';

/** What went wrong when checking a proxy, in words a script can match on. */
export type CheckProblem =
  | 'connection-refused'
  | 'unreachable'
  | 'scheme-mismatch'
  | 'tls'
  | 'timeout'
  | 'no-h2'
  | 'no-extended-connect'
  | 'protocol'
  | 'auth'
  | 'tunnel-refused'
  | 'tunnel-failed'
  | 'aborted';

/** A failure explained: its kind and what to try. The hint names library options, listed in `hintOptions`. */
export interface FailureExplanation {
  problem: CheckProblem;
  hint: string;
  /** Library option names the hint mentions (the CLI shows their flags). */
  hintOptions: string[];
}

// What a proxy's RFC 9209 §2.3 error type usually means for the person running the client.
const PROXY_ERROR_HINTS: Readonly<Record<string, string>> = {
  destination_ip_prohibited: "the proxy's target policy does not allow this target",
  destination_ip_unroutable: 'the proxy cannot reach the target address',
  destination_not_found: 'the proxy does not know the target',
  dns_error: 'the proxy could not resolve the target name',
  dns_timeout: 'the proxy timed out resolving the target name',
  connection_limit_reached: 'the proxy is at its session limit; try again later',
  http_request_denied: 'the proxy denied the request',
  proxy_internal_error: 'the proxy failed internally; its log says more',
};

/** Explains a refusal by status and Proxy-Status error type. */
function refusalHint(status: number | undefined, errorType: string | undefined): FailureExplanation {
  const known = errorType === undefined ? undefined : PROXY_ERROR_HINTS[errorType];
  if (known) return { problem: 'tunnel-refused', hint: known, hintOptions: [] };
  if (status === 404) return { problem: 'tunnel-refused', hint: "the path matches none of the proxy's routes: check template (or postPath)", hintOptions: ['template', 'postPath'] };
  if (status === 405 || status === 501) {
    return { problem: 'tunnel-refused', hint: 'the proxy does not take this kind of request: try mode or http', hintOptions: ['mode', 'http'] };
  }
  return { problem: 'tunnel-refused', hint: 'the response headers and the proxy log say why', hintOptions: [] };
}

/**
 * Classifies an error from connecting to a proxy or opening a tunnel (by code and details, never by message) and
 * suggests a fix. `proxy` is the proxy origin; `sentCredentials` says whether the request carried any.
 */
export function explainFailure(err: UdpTunnelError, proxy: URL, sentCredentials: boolean, errorType?: string): FailureExplanation {
  const d = err.details;
  const osCode = typeof d['osCode'] === 'string' ? d['osCode'] : undefined;
  const related = Array.isArray(d['related']) ? (d['related'] as string[]) : [];
  const other = proxy.protocol === 'https:' ? 'http' : 'https';
  const speaks = proxy.protocol === 'https:' ? 'cleartext HTTP' : 'TLS';
  switch (err.code) {
    case ErrorCodes.PROXY_UNREACHABLE:
      if (osCode === 'ECONNREFUSED') return { problem: 'connection-refused', hint: `is udp-tunnel serve running on ${proxy.host}?`, hintOptions: [] };
      if (osCode === 'ENOTFOUND' || osCode === 'EAI_AGAIN') return { problem: 'unreachable', hint: `the name ${proxy.hostname} does not resolve here`, hintOptions: [] };
      if (osCode) return { problem: 'unreachable', hint: `check the address and port, and any firewall on the way to ${proxy.host}`, hintOptions: [] };
      // Closed during setup without a socket error: most often a TLS port spoken to in cleartext or the reverse.
      return { problem: 'unreachable', hint: `the proxy closed the connection during setup: if it speaks ${speaks}, use ${other}://${proxy.host}`, hintOptions: [] };
    case ErrorCodes.TLS:
      if (osCode === 'ERR_SSL_WRONG_VERSION_NUMBER' || osCode === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') {
        return { problem: 'scheme-mismatch', hint: `the proxy speaks cleartext HTTP: use http://${proxy.host}`, hintOptions: [] };
      }
      if (typeof d['presented'] === 'string') {
        return { problem: 'tls', hint: `the proxy presented ${d['presented']}: add it to tls.pins if this is the right proxy`, hintOptions: ['tls.pins'] };
      }
      if (related.includes('tls.cert')) return { problem: 'tls', hint: 'the proxy wants a client certificate it trusts: set tls.cert and tls.key', hintOptions: ['tls.cert', 'tls.key'] };
      return { problem: 'tls', hint: 'set tls.ca, tls.pins or tls.insecure for a private proxy', hintOptions: ['tls.ca', 'tls.pins', 'tls.insecure'] };
    case ErrorCodes.TIMEOUT:
      return { problem: 'timeout', hint: `no answer from ${proxy.host} in time: check the address and port, or a firewall that drops packets`, hintOptions: [] };
    case ErrorCodes.CONNECT_PROTOCOL_DISABLED:
      if (related.includes('mode')) {
        return { problem: 'no-extended-connect', hint: 'the proxy does not enable extended CONNECT (RFC 8441): try http 1.1 or mode post', hintOptions: ['http', 'mode'] };
      }
      return { problem: 'no-h2', hint: 'the proxy does not speak HTTP/2 here: try http 1.1', hintOptions: ['http'] };
    case ErrorCodes.HTTP2_PROTOCOL:
      return { problem: 'protocol', hint: `the server at ${proxy.host} does not answer like an HTTP proxy: check the port`, hintOptions: [] };
    case ErrorCodes.AUTH_REQUIRED:
      return sentCredentials
        ? { problem: 'auth', hint: 'authentication failed: check token (or user:pass@ in the proxy URL)', hintOptions: ['token'] }
        : { problem: 'auth', hint: 'authentication required: set token or user:pass@ in the proxy URL', hintOptions: ['token'] };
    case ErrorCodes.TUNNEL_REFUSED:
      return refusalHint(typeof d['status'] === 'number' ? d['status'] : undefined, errorType);
    case ErrorCodes.CLOSED:
      return { problem: 'aborted', hint: 'the check was cancelled', hintOptions: [] };
    default:
      return { problem: 'tunnel-failed', hint: 'the proxy log says more; inspect shows the exchange', hintOptions: [] };
  }
}
