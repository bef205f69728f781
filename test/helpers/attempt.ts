import { TunnelClient } from '../../src/tunnel/client.js';
import { buildTransport, type ProxyConfig } from '../../src/tunnel/client-config.js';
import type { UdpTunnelError } from '../../src/tunnel/errors.js';
import { openUdpPeer, waitUntil, type UdpPeer } from './net.js';

/** A tunnel kept open: a client on a local UDP port and the peer that sends through it. */
export interface LiveTunnel {
  peer: UdpPeer;
  localPort: number;
  /** Sends `text` through the tunnel and resolves with the echo (rejects on a connect error or after 5 s). */
  echo(text: string): Promise<string>;
  close(): Promise<void>;
}

/** Opens a client toward the UDP echo at `echoPort` through `cfg`'s proxy, for tests that keep the tunnel open. */
export async function openTunnel(cfg: Omit<ProxyConfig, 'target'>, echoPort: number): Promise<LiveTunnel> {
  const transport = buildTransport({ target: { host: '127.0.0.1', port: echoPort }, connectTimeoutMs: 5000, ...cfg });
  const client = new TunnelClient({ host: '127.0.0.1', port: 0, transport });
  const errors: UdpTunnelError[] = [];
  client.on('connect-error', (e: { error: UdpTunnelError }) => errors.push(e.error));
  const local = await client.start();
  const peer = await openUdpPeer();
  return {
    peer,
    localPort: local.port,
    async echo(text) {
      const seen = peer.messages.length;
      const failed = errors.length;
      await peer.send(text, local.port, '127.0.0.1');
      await waitUntil(() => peer.messages.length > seen || errors.length > failed, 5000, `echo of '${text}'`);
      if (peer.messages.length === seen) throw errors[failed]!;
      return peer.messages[seen]!.toString();
    },
    async close() {
      await peer.close();
      await client.close();
    },
  };
}

/** One datagram through a fresh client: the echoed text, or the connect error. */
export async function attemptEcho(cfg: Omit<ProxyConfig, 'target'>, echoPort: number): Promise<{ reply?: string; error?: UdpTunnelError }> {
  const t = await openTunnel(cfg, echoPort);
  try {
    return { reply: await t.echo('hi') };
  } catch (err) {
    return { error: err as UdpTunnelError };
  } finally {
    await t.close();
  }
}
