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
  } else if (request?.target !== undefined) {
    if (opts.template === undefined) throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'this transport has no URI template to put a target in', { option: 'template' }, { retryable: false });
    // RFC 9298 §2: the target goes into the URI template; IPv6 colons are percent-encoded once.
    path = expandUriTemplate(opts.template, { target_host: request.target.host, target_port: String(request.target.port) });
  }
  if (path === '') throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'connect-udp mode needs a target HOST:PORT', { option: 'target' }, { retryable: false });
  const headers = expandHeaderTemplates(request?.headers ?? opts.headers, session, request?.downstream);
  return { path, headers };
}
