import { MAX_UDP_PAYLOAD } from './codec/datagram.js';
import { ErrorCodes, UdpTunnelError } from './errors.js';

/** Checks a maxDatagram option (client and server alike); returns it, or throws UT_ERR_INVALID_OPTION. */
export function checkMaxDatagram(value: number): number {
  // RFC 9298 §5: a UDP payload over 65527 bytes cannot be carried with context ID 0.
  if (!Number.isInteger(value) || value < 0 || value > MAX_UDP_PAYLOAD) {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `--max-datagram must be 0..${MAX_UDP_PAYLOAD} (RFC 9298 §5)`, { option: 'maxDatagram', value });
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
