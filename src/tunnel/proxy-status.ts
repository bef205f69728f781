/** RFC 9209 §2.3 error types udp-tunnel reports in `Proxy-Status`. */
export type ProxyErrorType =
  | 'http_request_error'
  | 'http_request_denied'
  | 'destination_ip_prohibited'
  | 'destination_ip_unroutable'
  | 'destination_not_found'
  | 'dns_error'
  | 'dns_timeout'
  | 'connection_refused'
  | 'connection_limit_reached'
  | 'proxy_internal_error'
  | 'proxy_configuration_error'
  | 'connection_timeout'
  | 'connection_terminated'
  | 'tls_protocol_error'
  | 'tls_certificate_error'
  | 'http_protocol_error'
  | 'http_response_incomplete'
  | 'http_response_header_section_size';

/** The proxy name in our Proxy-Status entries (an sf-token, RFC 9209 §2). */
export const PROXY_STATUS_NAME = 'udp-tunnel';

/** Formats a Proxy-Status header value (RFC 9209 §2) with an error type and optional parameters. */
export function formatProxyStatus(error: ProxyErrorType, params: { rcode?: string; details?: string; name?: string } = {}): string {
  let out = `${params.name ?? PROXY_STATUS_NAME}; error=${error}`;
  if (params.rcode !== undefined) out += `; rcode=${sfString(params.rcode)}`;
  if (params.details !== undefined) out += `; details=${sfString(params.details)}`;
  return out;
}

// RFC 8941 §3.3.3: sf-string is DQUOTE-delimited printable ASCII with \" and \\ escaped.
function sfString(s: string): string {
  // Our own messages cite RFC sections with '§'; spell it out rather than lose it to '?'.
  const printable = s.replace(/§\s*/g, 'section ').replace(/[^\x20-\x7e]/g, '?');
  return `"${printable.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** Parses the error type out of a Proxy-Status header value (first entry), for client-side messages. */
export function parseProxyStatusError(value: string | undefined): string | undefined {
  if (!value) return undefined;
  const m = /;\s*error=([A-Za-z0-9_*.:%/-]+)/.exec(value);
  return m?.[1];
}
