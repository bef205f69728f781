import type dgram from 'node:dgram';

/** Default socket buffer request: large enough to ride out bursts of a fast sender. */
export const DEFAULT_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

/**
 * Default cap on datagrams a relay socket may have queued in libuv. libuv queues without limit once the kernel
 * send buffer is full, and every queued datagram pins its buffer (on the server a view into the peer's chunk).
 */
export const DEFAULT_MAX_UDP_SEND_QUEUE = 1024;

/**
 * Asks for bigger kernel socket buffers; the kernel may cap or refuse either, which only costs headroom. Two
 * separate attempts, so a refused receive size does not skip the send size.
 */
export function trySetSocketBuffers(socket: dgram.Socket, bytes: number): void {
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

/**
 * Lookup for sockets that only ever see address literals (peers' source addresses, resolved bind addresses): the
 * answer is the input, given synchronously. The default (dns.lookup) would test the literal and defer every
 * datagram sent to the next tick.
 */
export function literalLookup(family: 4 | 6): NonNullable<dgram.SocketOptions['lookup']> {
  return (address, _options, callback) => callback(null, address, family);
}
