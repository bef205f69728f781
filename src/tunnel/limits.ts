import { MAX_UDP_PAYLOAD, MAX_UDP_PAYLOAD_IPV4 } from './codec/datagram.js';
import { ErrorCodes, UdpTunnelError } from './errors.js';
import { parseIp } from './policy.js';

/** Checks a maxDatagram option (client and server alike); returns it, or throws UT_ERR_INVALID_OPTION. */
export function checkMaxDatagram(value: number): number {
  // RFC 9298 §5: a UDP payload over 65527 bytes cannot be carried with context ID 0.
  if (!Number.isInteger(value) || value < 0 || value > MAX_UDP_PAYLOAD) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `maxDatagram must be 0..${MAX_UDP_PAYLOAD} (RFC 9298 §5)`, { option: 'maxDatagram', value });
  }
  return value;
}

/** Checks a maxUdpSendQueue option (client and server alike); returns it, or throws UT_ERR_INVALID_OPTION. */
export function checkMaxUdpSendQueue(value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `maxUdpSendQueue must be a whole number of at least 1, got ${String(value)}`, {
      option: 'maxUdpSendQueue',
      value,
    });
  }
  return value;
}

/**
 * The largest payload a relay can send to `address` under `maxDatagram`: IPv4 (an IPv4-mapped IPv6 address too,
 * which a dual-stack socket sends as IPv4) carries less than RFC 9298 §5 allows. Meant to be computed once per
 * session, so a datagram that cannot be sent is dropped and counted as oversize instead of failing in the kernel.
 */
export function maxDatagramTo(address: string, maxDatagram: number): number {
  return parseIp(address)?.family === 4 ? Math.min(maxDatagram, MAX_UDP_PAYLOAD_IPV4) : Math.min(maxDatagram, MAX_UDP_PAYLOAD);
}
