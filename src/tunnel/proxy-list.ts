import { buildSharedTransport, redactProxyUrl, type ProxyConfig } from './client-config.js';
import { ErrorCodes, UdpTunnelError } from './errors.js';
import { FailoverTransport, type FailoverOptions } from './transport/failover.js';

/** Everything of a ProxyConfig that all proxies of a list share: mode, target, template, TLS, token, headers. */
export type SharedProxyConfig = Omit<ProxyConfig, 'proxy'>;

/**
 * Splits proxy URLs given as a list whose items may each hold several, separated by commas. A comma inside a URI
 * template's braces (`{?target_host,target_port}`, RFC 6570 §3.2.1) belongs to the template and does not split.
 */
export function splitProxyList(values: readonly string[]): string[] {
  const out: string[] = [];
  for (const value of values) {
    let depth = 0;
    let item = '';
    for (const ch of value) {
      if (ch === '{') depth++;
      else if (ch === '}') depth = Math.max(0, depth - 1);
      if (ch === ',' && depth === 0) {
        out.push(item.trim());
        item = '';
      } else item += ch;
    }
    out.push(item.trim());
  }
  if (out.some((p) => p === '')) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'proxy list has an empty entry', { option: 'proxy', value: values.join(',') });
  }
  return out;
}

/**
 * Builds one transport over a list of proxies that share everything else: a child transport per proxy (as
 * buildTransport builds it), combined into a FailoverTransport. A single proxy gets one too, for its counters; it
 * opens tunnels exactly as its child would.
 */
export function buildProxiesTransport(proxies: readonly string[], shared: SharedProxyConfig, options: FailoverOptions = {}): FailoverTransport {
  if (proxies.length === 0) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'at least one proxy URL is needed', { option: 'proxy' });
  const seen = new Set<string>();
  const members = proxies.map((proxy) => {
    const name = redactProxyUrl(proxy);
    if (seen.has(proxy)) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `proxy ${name} is listed twice`, { option: 'proxy', value: name });
    seen.add(proxy);
    // No target is fixed here: each open names its own (forwards share this transport).
    return { proxy: name, transport: buildSharedTransport({ ...shared, proxy }) };
  });
  return new FailoverTransport(members, options);
}
