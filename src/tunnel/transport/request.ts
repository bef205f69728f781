import { CONNECT_UDP_BIND_HEADER, formatConnectUdpBind } from '../codec/bind.js';
import { ErrorCodes, UdpTunnelError } from '../errors.js';
import { expandHeaderTemplates } from '../header-template.js';
import { expandUriTemplate } from '../uri-template.js';
import type { TransportOptions, TunnelRequest } from './types.js';

/** The path and extra headers of one tunnel request: the open's own parts, else the transport's. */
export function resolveRequest(
  opts: TransportOptions,
  post: boolean,
  session: string,
  request: TunnelRequest | undefined,
): { path: string; headers: [string, string][] } {
  let path = opts.path;
  if (post) {
    if (request?.postPath !== undefined) path = request.postPath;
  } else if (request?.target !== undefined || request?.bind === true) {
    if (opts.template === undefined) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'this transport has no URI template to put a target in', { option: 'template' }, { retryable: false });
    // RFC 9298 §2: the target goes into the URI template; IPv6 colons are percent-encoded once. Bind draft §3: no
    // target is `*` for both variables, which the expansion percent-encodes (%2A) as RFC 6570 §3.2.2 requires.
    const t = request.target;
    path = expandUriTemplate(opts.template, t ? { target_host: t.host, target_port: String(t.port) } : { target_host: '*', target_port: '*' });
  }
  if (path === '') throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'connect-udp mode needs a target HOST:PORT', { option: 'target' }, { retryable: false });
  const headers = expandHeaderTemplates(request?.headers ?? opts.headers, session, request?.downstream);
  if (request?.bind === true && !post) headers.push([CONNECT_UDP_BIND_HEADER, formatConnectUdpBind()]);
  return { path, headers };
}
