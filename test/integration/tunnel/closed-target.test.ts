import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { describe, it } from 'node:test';
import type { ClientSessionStats } from '../../../src/tunnel/client.js';
import type { ServerSessionStats } from '../../../src/tunnel/server/tunnel-server.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho } from '../../helpers/net.js';
import { startStack, type StackOptions } from '../../helpers/stack.js';
import { openHandles } from '../../helpers/tunnel.js';

/**
 * A UDP port on `host` that was bound and closed again: datagrams to it draw ICMP port unreachable. Taken below the
 * kernel's ephemeral range (32768-60999 on Linux): tests running in parallel bind port 0, which the kernel picks from
 * that range, so a freed ephemeral port could be handed to one of them before this test sends to it.
 */
async function closedPort(host: string): Promise<number> {
  for (;;) {
    const candidate = 20_000 + Math.floor(Math.random() * 12_000);
    const socket = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const bound = await new Promise<boolean>((resolve) => {
      socket.once('error', () => resolve(false));
      socket.bind(candidate, host, () => resolve(true));
    });
    await new Promise<void>((r) => socket.close(() => r()));
    if (bound) return candidate;
  }
}

/** A stack whose target port is closed, with the close events of both sides collected. */
async function closedTargetStack(host: string, opts: Pick<StackOptions, 'client' | 'server'> = {}) {
  const port = await closedPort(host);
  const stack = await startStack({ host, targetPort: port, ...opts });
  const serverCloses: ServerSessionStats[] = [];
  const clientCloses: ClientSessionStats[] = [];
  stack.server.on('session-close', (s: ServerSessionStats) => serverCloses.push(s));
  stack.client.on('session-close', (s: ClientSessionStats) => clientCloses.push(s));
  return { port, stack, serverCloses, clientCloses };
}

// An ICMP port unreachable leaves serve's connected socket usable, so serve keeps the stream open (RFC 9298 §3.1
// closes it only for a socket that is no longer usable): a local peer talking to a closed port holds one tunnel,
// which the idle timers end.
describe('tunnel: a closed target port costs one tunnel, not one per datagram', () => {
  for (const host of ['127.0.0.1', '::1']) {
    it(`over ${host}: 10 datagrams to a closed port make 1 tunnel; once the port opens, datagrams flow on it`, async () => {
      const handles = openHandles();
      const { port, stack, serverCloses, clientCloses } = await closedTargetStack(host);
      const peer = await openUdpPeer(host);
      let target: UdpEcho | null = null;
      try {
        await peer.send('d0', stack.localPort, host);
        // The first datagram's ICMP error has reached serve: before, this closed the session.
        await waitUntil(() => stack.server.counters.targetUnreachable > 0, 10_000, 'the ICMP error to be counted');
        for (let i = 1; i < 10; i++) {
          await peer.send(`d${i}`, stack.localPort, host);
          await waitUntil(() => stack.client.counters.downstream_sess_rx_datagrams === i + 1, 10_000, `datagram ${i} at connect`);
        }
        // Opens the port (the only rebind of a known port in the tests: this test is about that port opening).
        target = await startUdpEcho(host, port);
        // Again until one is answered: the send of the first may still report the last datagram's ICMP error.
        let hellos = 0;
        await waitUntil(
          () => {
            if (peer.messages.length > 0) return true;
            hellos++;
            void peer.send('hello', stack.localPort, host);
            return false;
          },
          10_000,
          'a datagram through the opened port',
        );
        assert.equal(peer.messages[0]!.toString(), 'hello');
        assert.equal(stack.server.counters.sessionsTotal, 1);
        assert.equal(stack.server.counters.sessionsActive, 1);
        assert.equal(stack.client.counters.downstream_sess_total, 1);
        assert.equal(stack.client.counters.sess_tunnel_success, 1);
        assert.ok(stack.server.counters.targetUnreachable > 0);
        assert.equal(serverCloses.length, 0);
        assert.equal(clientCloses.length, 0);
        await stack.client.close();
        await waitUntil(() => serverCloses.length === 1, 5000, 'serve to close the session');
        const s = serverCloses[0]!;
        // Every datagram reached serve on the one session.
        assert.equal(s.rxDatagrams, 10 + hellos);
        assert.equal(s.targetUnreachable, stack.server.counters.targetUnreachable);
        assert.ok(s.targetUnreachable >= s.dropUdpSend);
        assert.match(s.closeReason, /^stream-/);
      } finally {
        await peer.close();
        await stack.close();
        await target?.close();
      }
      await waitUntil(() => openHandles().tcp <= handles.tcp && openHandles().udp <= handles.udp, 3000, 'handles released');
    });

    it(`over ${host}: connect's idle timer ends a session to a closed port`, async () => {
      const { stack, serverCloses, clientCloses } = await closedTargetStack(host, { client: { idleTimeoutMs: 500 } });
      const peer = await openUdpPeer(host);
      try {
        await peer.send('anyone?', stack.localPort, host);
        await waitUntil(() => clientCloses.length === 1, 10_000, 'connect to end the session');
        assert.equal(clientCloses[0]!.closeReason, 'idle-timeout');
        assert.equal(stack.client.counters.idle_timeout, 1);
        await waitUntil(() => serverCloses.length === 1, 10_000, 'serve to close the session');
        assert.match(serverCloses[0]!.closeReason, /^stream-/);
        assert.ok(serverCloses[0]!.targetUnreachable > 0, 'the ICMP error was not counted');
        assert.equal(stack.server.counters.idleTimeouts, 0);
        assert.equal(stack.server.counters.sessionsTotal, 1);
      } finally {
        await peer.close();
        await stack.close();
      }
    });

    it(`over ${host}: serve's idle timer ends a session to a closed port`, async () => {
      const { stack, serverCloses, clientCloses } = await closedTargetStack(host, { server: { idleTimeoutMs: 500 } });
      const peer = await openUdpPeer(host);
      try {
        await peer.send('anyone?', stack.localPort, host);
        await waitUntil(() => serverCloses.length === 1, 10_000, 'serve to end the session');
        assert.equal(serverCloses[0]!.closeReason, 'idle-timeout');
        assert.ok(serverCloses[0]!.targetUnreachable > 0, 'the ICMP error was not counted');
        assert.equal(stack.server.counters.idleTimeouts, 1);
        await waitUntil(() => clientCloses.length === 1, 10_000, 'connect to see the tunnel end');
        assert.match(clientCloses[0]!.closeReason, /^tunnel-/);
        assert.equal(stack.client.counters.idle_timeout, 0);
        assert.equal(stack.client.counters.downstream_sess_total, 1);
      } finally {
        await peer.close();
        await stack.close();
      }
    });
  }
});
