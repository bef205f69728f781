import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import type { ClientSessionStats } from '../../src/core/client.js';
import { openUdpPeer, waitUntil } from '../helpers/net.js';
import { startStack } from '../helpers/stack.js';

describe('idle timeout counts both directions', () => {
  it('a session that only receives (target -> peer) stays open past the idle timeout on both sides', async () => {
    // A target that answers the first datagram with a stream of 12 replies, 50 ms apart (600 ms in all).
    const target = dgram.createSocket('udp4');
    await new Promise<void>((r) => target.bind(0, '127.0.0.1', r));
    const timers: NodeJS.Timeout[] = [];
    target.once('message', (_m, rinfo) => {
      for (let i = 0; i < 12; i++) timers.push(setTimeout(() => target.send(`tick${i}`, rinfo.port, rinfo.address), 50 * (i + 1)));
    });
    const stack = await startStack({
      targetPort: (target.address() as AddressInfo).port,
      client: { idleTimeoutMs: 250 },
      server: { idleTimeoutMs: 250 },
    });
    const closed: ClientSessionStats[] = [];
    stack.client.on('session-close', (s: ClientSessionStats) => closed.push(s));
    const peer = await openUdpPeer();
    await peer.send('start', stack.localPort, '127.0.0.1');
    const got = await peer.waitFor(12, 5000);
    // The peer sent once, 600 ms ago; replies alone kept the session alive well past 250 ms.
    assert.equal(got.length, 12);
    assert.equal(closed.length, 0);
    assert.equal(stack.client.counters.downstream_sess_total, 1);
    await waitUntil(() => closed.length === 1, 3000, 'idle close after the replies stop');
    assert.equal(closed[0]!.closeReason, 'idle-timeout');
    assert.equal(closed[0]!.txDatagrams, 12);
    timers.forEach(clearTimeout);
    await peer.close();
    await stack.close();
    await new Promise<void>((r) => target.close(() => r()));
  });
});
