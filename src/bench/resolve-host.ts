import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';

/** Strips the brackets of an IPv6 literal written as `[::1]`. */
export function unbracketHost(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** Resolves `host` to one address literal and its family, or throws INVALID_ADDRESS. */
export async function resolveUdpHost(host: string): Promise<{ address: string; family: 4 | 6 }> {
  const h = unbracketHost(host);
  const fam = isIP(h);
  if (fam === 4 || fam === 6) return { address: h, family: fam };
  try {
    const r = await lookup(h);
    return { address: r.address, family: r.family === 6 ? 6 : 4 };
  } catch (err) {
    throw new UdpTunnelError(ErrorCodes.INVALID_ADDRESS, `cannot resolve host "${host}"`, { host }, { cause: err });
  }
}

