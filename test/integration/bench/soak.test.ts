import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ChurnLoad } from '../../../src/bench/churn-load.js';
import { startEchoServer } from '../../../src/bench/echo-server.js';
import { startStalledTarget } from '../../../src/bench/stalled-target.js';
import { isLoopback4Hex, readUdpSocketTable } from '../../../src/bench/udp-socket-table.js';
import { waitUntil } from '../../helpers/net.js';

const linux = existsSync('/proc/net/udp');

describe('stalled target', { skip: linux ? false : 'needs Linux /proc/net/udp' }, () => {
  it('reads nothing until resumed; every datagram sent is either read afterwards or in its drops counter', async () => {
    const target = await startStalledTarget({ host: '127.0.0.1', recvBufferBytes: 16384, quietMs: 200 });
    const sender = createSocket('udp4');
    try {
      sender.bind(0, '127.0.0.1');
      await once(sender, 'listening');
      const sent = 400;
      const payload = Buffer.alloc(256, 1);
      for (let i = 0; i < sent; i++) {
        await new Promise<void>((resolve, reject) => sender.send(payload, target.port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
      }
      // On the loopback a datagram is queued at the receiver or dropped there within the send itself.
      const row = readUdpSocketTable().find((r) => r.localPort === target.port && isLoopback4Hex(r.localHex));
      assert.ok(row, 'the stalled socket is listed');
      assert.ok(row.drops > 0, 'a small buffer that is never read overflows');
      assert.ok(row.rxQueueBytes > 0, 'what fitted waits in the queue');
      const read = await target.resume();
      assert.ok(read > 0);
      assert.equal(read + row.drops, sent);
    } finally {
      sender.close();
      await target.close();
    }
  });

  it('close() ends a target that is still stalled', async () => {
    const target = await startStalledTarget({ host: '127.0.0.1' });
    await target.close();
    assert.equal(await target.resume(), 0);
  });
});

describe('ChurnLoad', () => {
  it('replaces peers every second and gets every probe back from a plain echo', async () => {
    const echo = await startEchoServer({ host: '127.0.0.1' });
    const closedPorts: number[] = [];
    const load = new ChurnLoad({
      host: '127.0.0.1',
      port: echo.address().port,
      rate: 500,
      size: 64,
      peers: 3,
      churnPerSecond: 2,
      lingerMs: 300,
      beforeClose: (ports) => closedPorts.push(...ports),
    });
    try {
      await load.start();
      assert.equal(load.counts.peersOpened, 3);
      // Two churns: two new peers each, the oldest two lingering and then closed.
      await waitUntil(() => load.counts.peersOpened >= 7 && load.counts.peersClosed >= 2, 20_000, 'peers replaced');
      load.mark();
      await waitUntil(() => load.firstReplyAfterMarkMs !== null, 10_000, 'a reply to a probe sent after mark()');
      load.stopSending();
      await waitUntil(() => load.counts.received === load.counts.sent, 10_000, 'every probe echoed');
      assert.ok(load.counts.sent > 0);
      assert.equal(load.counts.duplicates, 0);
      assert.equal(load.counts.invalid, 0);
      assert.equal(load.counts.peersActive, 3);
      assert.equal(load.latency.count, load.counts.received);
    } finally {
      await load.close();
      await echo.close();
    }
    assert.equal(load.counts.peersClosed, load.counts.peersOpened);
    assert.equal(closedPorts.length, load.counts.peersOpened);
  });
});
