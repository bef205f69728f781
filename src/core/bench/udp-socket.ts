import type { Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { ErrorCodes, UdpTunnelError } from '../errors.js';

/** Default socket buffer request: large enough to ride out bursts of a fast generator. */
export const DEFAULT_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

/** Strips the brackets of an IPv6 literal written as `[::1]`. */
export function unbracketHost(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** Asks for bigger kernel socket buffers; the kernel may cap or refuse, which only costs headroom. */
export function trySetSocketBuffers(socket: Socket, bytes: number): void {
  try {
    socket.setRecvBufferSize(bytes);
  } catch {
    // Refused (e.g. above a hard limit): the default buffer still works.
  }
  try {
    socket.setSendBufferSize(bytes);
  } catch {
    // As above.
  }
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

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback. */
export function isLoopbackAddress(address: string): boolean {
  const a = address.toLowerCase();
  return a.startsWith('127.') || a === '::1' || a.startsWith('::ffff:127.');
}
