import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ChurnLoad } from '../../../src/bench/churn-load.js';
import { startEchoServer } from '../../../src/bench/echo-server.js';
import { rssTrend, slopeMbPerMin } from '../../../src/bench/soak.js';
import { startStalledTarget } from '../../../src/bench/stalled-target.js';
import { isLoopback4Hex, readUdpSocketTable } from '../../../src/bench/udp-socket-table.js';
import { waitUntil } from '../../helpers/net.js';

const MB = 1024 * 1024;
const linux = existsSync('/proc/net/udp');

describe('soak RSS trend', () => {
  it('slopeMbPerMin is the least-squares slope in MB per minute', () => {
    // 1 MB more every 10 s (6 MB/min) plus a ±0.25 MB wobble, whose own least-squares slope is -0.6 MB/min.
    const pts = [0, 10_000, 20_000, 30_000].map((x, i) => ({ x, y: 50 * MB + (x / 10_000) * MB + (i % 2 === 0 ? 0.25 : -0.25) * MB }));
    assert.ok(Math.abs(slopeMbPerMin(pts)! - 5.4) < 1e-9, String(slopeMbPerMin(pts)));
    assert.equal(slopeMbPerMin([0, 1000, 2000].map((x) => ({ x, y: 80 * MB }))), 0);
    assert.equal(slopeMbPerMin([{ x: 0, y: 1 }, { x: 1, y: 2 }]), null);
    assert.equal(slopeMbPerMin([0, 0, 0].map((x) => ({ x, y: x }))), null);
  });

  it('rssTrend leaves out the samples before fromMs and the unreadable ones', () => {
    const samples = [
      { tMs: 0, bytes: 10 * MB },
      { tMs: 1000, bytes: 90 * MB },
      { tMs: 2000, bytes: null },
      { tMs: 3000, bytes: 40 * MB },
      { tMs: 4000, bytes: 41 * MB },
      { tMs: 5000, bytes: 42 * MB },
    ];
    const t = rssTrend(samples, 3000);
    assert.equal(t.samples, 3);
    assert.equal(t.fromMs, 3000);
    assert.equal(t.toMs, 5000);
    assert.equal(t.minBytes, 40 * MB);
    assert.equal(t.maxBytes, 42 * MB);
    assert.ok(Math.abs(t.slopeMbPerMin! - 60) < 1e-9);
    assert.equal(t.lateSlopeMbPerMin, null, 'two samples in the later half');
    assert.equal(rssTrend(samples, 4000, 5000).slopeMbPerMin, null);
    // A step then a plateau: the whole window rises, its later half does not.
    const step = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => ({ tMs: i * 1000, bytes: (i < 2 ? 90 : 100) * MB }));
    const st = rssTrend(step, 0);
    assert.ok(st.slopeMbPerMin! > 1);
    assert.equal(st.lateSlopeMbPerMin, 0);
  });
});

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
