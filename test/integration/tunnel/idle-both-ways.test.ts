import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import type { ClientSessionStats } from '../../../src/tunnel/client.js';
import { openUdpPeer, waitUntil } from '../../helpers/net.js';
import { startStack } from '../../helpers/stack.js';

describe('tunnel: idle timeout counts both directions', () => {
  it('a session that only receives (target -> peer) stays open past the idle timeout on both sides', async () => {
    // A target that answers the first datagram with a stream of 12 replies, 100 ms apart (1.2 s in all): longer than
    // the 1 s idle timeout, with gaps a tenth of it, so only an event-loop stall of some 0.9 s (not a merely busy
    // machine) could make a gap look like idleness.
    const target = dgram.createSocket('udp4');
    await new Promise<void>((r) => target.bind(0, '127.0.0.1', r));
    const timers: NodeJS.Timeout[] = [];
    target.once('message', (_m, rinfo) => {
      for (let i = 0; i < 12; i++) timers.push(setTimeout(() => target.send(`tick${i}`, rinfo.port, rinfo.address), 100 * (i + 1)));
    });
    const stack = await startStack({
      targetPort: (target.address() as AddressInfo).port,
      client: { idleTimeoutMs: 1000 },
      server: { idleTimeoutMs: 1000 },
    });
    const closed: ClientSessionStats[] = [];
    stack.client.on('session-close', (s: ClientSessionStats) => closed.push(s));
    const peer = await openUdpPeer();
    await peer.send('start', stack.localPort, '127.0.0.1');
    const got = await peer.waitFor(12, 10_000);
    // The peer sent once, 1.2 s ago; replies alone kept the session alive past the 1 s idle timeout.
    assert.equal(got.length, 12);
    assert.equal(closed.length, 0);
    assert.equal(stack.client.counters.downstream_sess_total, 1);
    await waitUntil(() => closed.length === 1, 10_000, 'idle close after the replies stop');
    assert.equal(closed[0]!.closeReason, 'idle-timeout');
    assert.equal(closed[0]!.txDatagrams, 12);
    timers.forEach(clearTimeout);
    await peer.close();
    await stack.close();
    await new Promise<void>((r) => target.close(() => r()));
  });
});
