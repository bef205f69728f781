import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { formatHostPort } from '../../../src/tunnel/address.js';
import { TunnelClient, type ClientSessionStats } from '../../../src/tunnel/client.js';
import { CAPSULE_TYPE_DATAGRAM, encodeCapsule } from '../../../src/tunnel/codec/capsule.js';
import { encodeDatagramCapsule } from '../../../src/tunnel/codec/datagram.js';
import { buildTransport } from '../../../src/tunnel/client-config.js';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import { TargetPolicy } from '../../../src/tunnel/policy.js';
import { TunnelServer, type ServerSessionStats } from '../../../src/tunnel/server/tunnel-server.js';
import { DEFAULT_MAX_UDP_SEND_QUEUE } from '../../../src/tunnel/udp-socket.js';
import { openRawTunnel, startScriptedUpstream } from '../../helpers/h2-peer.js';
import { openUdpPeer, waitUntil, type UdpPeer } from '../../helpers/net.js';
import type { SendQueueResult, SendQueueWorkerData } from '../../helpers/send-queue-worker.js';

const OFFERED = 50;

async function runInWorker(data: SendQueueWorkerData): Promise<SendQueueResult> {
  // --test-udp-no-try-send keeps every UDP send in libuv's queue until the loop completes it, as a full kernel
  // send buffer does; loopback never fills one.
  const worker = new Worker(new URL('../../helpers/send-queue-worker.js', import.meta.url), { execArgv: ['--test-udp-no-try-send'], workerData: data });
  const exited = once(worker, 'exit');
  const [msg] = (await once(worker, 'message')) as [{ ok: true; result: SendQueueResult } | { ok: false; error: string }];
  await exited;
  if (!msg.ok) throw new Error(msg.error);
  return msg.result;
}

/** Upstream that answers the client's first capsule with `reply`, then stays open. */
function upstreamReplying(reply: Buffer): ReturnType<typeof startScriptedUpstream> {
  return startScriptedUpstream({
    respond: (stream) => {
      stream.respond({ ':status': 200, 'capsule-protocol': '?1' });
      stream.once('data', () => stream.write(reply));
    },
  });
}

/** A client of `upstream` on `host`, its first session's stats once closed, and a local peer that said hello. */
async function clientSession(host: string, upstreamPort: number, maxDatagram?: number) {
  const client = new TunnelClient({
    host,
    port: 0,
    transport: buildTransport({ proxy: `http://127.0.0.1:${upstreamPort}`, target: { host: '127.0.0.1', port: 9 } }),
    ...(maxDatagram !== undefined ? { maxDatagram } : {}),
  });
  const closed = new Promise<ClientSessionStats>((resolve) => client.once('session-close', resolve));
  const local = await client.start();
  const peer = await openUdpPeer(host);
  await peer.send('hello', local.port, host);
  return { client, closed, peer };
}

describe('tunnel: UDP send queue limit (maxUdpSendQueue)', () => {
  it('defaults to 1024 datagrams on both relays', () => {
    assert.equal(DEFAULT_MAX_UDP_SEND_QUEUE, 1024);
  });

  for (const host of ['127.0.0.1', '::1']) {
    it(`server over ${host}: datagrams for the target beyond the queue limit are dropped and counted; sent + dropped = offered`, async () => {
      const r = await runInWorker({ side: 'server', host, limit: 1, count: OFFERED });
      const stats = r.stats as ServerSessionStats;
      assert.ok(stats.dropSendQueue > 0, 'no datagram was dropped');
      assert.equal(stats.rxDatagrams, OFFERED);
      assert.equal(r.received + stats.dropSendQueue, OFFERED);
      assert.equal(r.wideDrops, stats.dropSendQueue);
      assert.equal(stats.dropUdpSend, 0);
    });

    it(`client over ${host}: replies to the local peer beyond the queue limit are dropped and counted; sent + dropped = offered`, async () => {
      const r = await runInWorker({ side: 'client', host, limit: 1, count: OFFERED });
      const stats = r.stats as ClientSessionStats;
      assert.ok(stats.drops.sendQueue > 0, 'no datagram was dropped');
      assert.equal(stats.txDatagrams, r.received);
      assert.equal(stats.txDatagrams + stats.drops.sendQueue, OFFERED);
      assert.equal(r.wideDrops, stats.drops.sendQueue);
      assert.equal(stats.drops.replyFailed, 0);
    });
  }

  it('a bad maxUdpSendQueue is UT_ERR_INVALID_OPTION on both relays', () => {
    const transport = buildTransport({ proxy: 'http://127.0.0.1:9', target: { host: '127.0.0.1', port: 9 } });
    for (const maxUdpSendQueue of [0, -1, 1.5, Number.NaN]) {
      assert.throws(() => new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), maxUdpSendQueue }), (err: unknown) =>
        isUdpTunnelError(err, 'UT_ERR_INVALID_OPTION'),
      );
      assert.throws(() => new TunnelClient({ host: '127.0.0.1', port: 0, transport, maxUdpSendQueue }), (err: unknown) =>
        isUdpTunnelError(err, 'UT_ERR_INVALID_OPTION'),
      );
    }
  });
});

describe('tunnel: maxDatagram is checked by the library', () => {
  it('TunnelServer and TunnelClient refuse values outside 0..65527 with the same UT_ERR_INVALID_OPTION message', () => {
    const transport = buildTransport({ proxy: 'http://127.0.0.1:9', target: { host: '127.0.0.1', port: 9 } });
    for (const maxDatagram of [65528, -1, 1.5, Number.NaN]) {
      const refused = (err: unknown): boolean =>
        isUdpTunnelError(err, 'UT_ERR_INVALID_OPTION') && err.message === 'maxDatagram must be 0..65527 (RFC 9298 §5)' && err.details.option === 'maxDatagram';
      assert.throws(() => new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), maxDatagram }), refused);
      assert.throws(() => new TunnelClient({ host: '127.0.0.1', port: 0, transport, maxDatagram }), refused);
    }
    for (const maxDatagram of [0, 65527]) {
      assert.doesNotThrow(() => new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), maxDatagram }));
      assert.doesNotThrow(() => new TunnelClient({ host: '127.0.0.1', port: 0, transport, maxDatagram }));
    }
  });
});

describe('tunnel/client: client-wide datagrams_dropped', () => {
  for (const host of ['127.0.0.1', '::1']) {
    it(`counts tunnel datagrams dropped for a non-zero context ID or size, once each (local peer on ${host})`, async () => {
      const contextOne = encodeCapsule(CAPSULE_TYPE_DATAGRAM, Buffer.from([0x01, 0xaa, 0xbb]));
      const oversize = encodeDatagramCapsule(Buffer.alloc(101, 7));
      const fits = encodeDatagramCapsule(Buffer.from('fits'));
      const upstream = await upstreamReplying(Buffer.concat([contextOne, oversize, fits]));
      const { client, closed, peer } = await clientSession(host, upstream.port, 100);
      try {
        // Capsules are handled in order: once the last one arrived, the two before it were dropped.
        const got = await peer.waitFor(1);
        assert.deepEqual(got.map((b) => b.toString()), ['fits']);
        assert.equal(client.counters.datagrams_dropped, 2);
        await client.close();
        const stats = await closed;
        assert.equal(stats.drops.contextId, 1);
        assert.equal(stats.drops.oversize, 1);
        assert.equal(stats.txDatagrams, 1);
        assert.equal(client.counters.datagrams_dropped, 2);
      } finally {
        await client.close();
        await upstream.close();
        await peer.close();
      }
    });
  }
});

// IPv4 carries at most 65507 payload bytes (65535 - 20 - 8) while RFC 9298 allows 65527. Such a datagram used to pass
// --max-datagram and be refused by the socket (EMSGSIZE): it is now dropped before the send and counted under the
// size limit, like one over --max-datagram. Over IPv6 65527 bytes fit.
const TOO_BIG_FOR_IPV4 = 65520;

describe('tunnel: datagrams too big for IPv4 count under the size limit, not as send errors', () => {
  for (const target of ['127.0.0.1', '::ffff:127.0.0.1']) {
    it(`server: a datagram too big for the IPv4 target ${target} counts in dropOversize and limits.datagramSize; the session keeps relaying`, async () => {
      const sink = await openUdpPeer('127.0.0.1');
      const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy() });
      const closed = new Promise<ServerSessionStats>((resolve) => server.once('session-close', resolve));
      const addr = await server.listen();
      const tunnel = await openRawTunnel(`http://${formatHostPort('127.0.0.1', addr.port)}`, `/.well-known/masque/udp/${target.replaceAll(':', '%3A')}/${sink.port}/`);
      try {
        assert.equal((await tunnel.response).headers[':status'], 200);
        tunnel.stream.write(Buffer.concat([encodeDatagramCapsule(Buffer.alloc(TOO_BIG_FOR_IPV4, 1)), encodeDatagramCapsule(Buffer.from('after'))]));
        const got = await sink.waitFor(1);
        assert.deepEqual(got.map((b) => b.toString()), ['after']);
        assert.equal(server.counters.limits.datagramSize, 1);
        await tunnel.close();
        const stats = await closed;
        assert.equal(stats.dropOversize, 1);
        assert.equal(stats.dropUdpSend, 0);
        assert.equal(stats.dropSendQueue, 0);
        assert.equal(stats.rxDatagrams, 1);
      } finally {
        await tunnel.close();
        await server.close();
        await sink.close();
      }
    });
  }

  it('server: the largest IPv4 payload (65507 bytes) is sent to an IPv4-mapped target', async () => {
    const sink = await openUdpPeer('127.0.0.1');
    const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy() });
    const addr = await server.listen();
    const tunnel = await openRawTunnel(`http://${formatHostPort('127.0.0.1', addr.port)}`, `/.well-known/masque/udp/%3A%3Affff%3A127.0.0.1/${sink.port}/`);
    try {
      assert.equal((await tunnel.response).headers[':status'], 200);
      tunnel.stream.write(encodeDatagramCapsule(Buffer.alloc(65507, 3)));
      const got = await sink.waitFor(1);
      assert.equal(got[0]!.length, 65507);
      assert.equal(server.counters.limits.datagramSize, 0);
    } finally {
      await tunnel.close();
      await server.close();
      await sink.close();
    }
  });

  it('client: a reply too big for the IPv4 local peer counts in drops.oversize and datagrams_dropped', async () => {
    const upstream = await upstreamReplying(Buffer.concat([encodeDatagramCapsule(Buffer.alloc(TOO_BIG_FOR_IPV4, 2)), encodeDatagramCapsule(Buffer.from('after'))]));
    const { client, closed, peer } = await clientSession('127.0.0.1', upstream.port);
    try {
      const got = await peer.waitFor(1);
      assert.deepEqual(got.map((b) => b.toString()), ['after']);
      assert.equal(client.counters.datagrams_dropped, 1);
      await client.close();
      const stats = await closed;
      assert.equal(stats.drops.oversize, 1);
      assert.equal(stats.drops.replyFailed, 0);
      assert.equal(stats.drops.sendQueue, 0);
      assert.equal(stats.txDatagrams, 1);
      assert.equal(client.counters.datagrams_dropped, 1);
    } finally {
      await client.close();
      await upstream.close();
      await peer.close();
    }
  });

  it('client: a 65527-byte reply reaches an IPv6 local peer (the IPv4 bound applies to IPv4 peers only)', async () => {
    const upstream = await upstreamReplying(encodeDatagramCapsule(Buffer.alloc(65527, 4)));
    const { client, peer } = await clientSession('::1', upstream.port);
    try {
      const got = await peer.waitFor(1);
      assert.equal(got[0]!.length, 65527);
      assert.equal(client.counters.datagrams_dropped, 0);
    } finally {
      await client.close();
      await upstream.close();
      await peer.close();
    }
  });
});

describe('tunnel: UDP send errors are counted', () => {
  // The one send error loopback produces on demand: a connected socket reports a pending ICMP port unreachable on
  // its next call, and when that call is a send, the send fails (ECONNREFUSED) and its datagram is lost. Several
  // datagrams in one chunk are sent in one turn, so after the first one's ICMP error the next send reports it.
  it('server: a send the target socket refuses counts in dropUdpSend and targetUnreachable, and the session keeps relaying', async () => {
    const gone = await openUdpPeer('127.0.0.1');
    const port = gone.port;
    await gone.close();
    const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy() });
    const closed = new Promise<ServerSessionStats>((resolve) => server.once('session-close', resolve));
    const addr = await server.listen();
    const tunnel = await openRawTunnel(`http://${formatHostPort('127.0.0.1', addr.port)}`, `/.well-known/masque/udp/127.0.0.1/${port}/`);
    let sink: UdpPeer | null = null;
    try {
      assert.equal((await tunnel.response).headers[':status'], 200);
      const ROUNDS = 20;
      const burst = Buffer.concat(Array.from({ length: 4 }, () => encodeDatagramCapsule(Buffer.from('anyone?'))));
      for (let i = 0; i < ROUNDS; i++) {
        const seen = server.counters.targetUnreachable;
        tunnel.stream.write(burst);
        await waitUntil(() => server.counters.targetUnreachable > seen, 10_000, 'an ICMP error to be counted');
      }
      sink = await openUdpPeer('127.0.0.1', port);
      tunnel.stream.write(encodeDatagramCapsule(Buffer.from('after')));
      const got = await sink.waitFor(1);
      assert.deepEqual(got.map((b) => b.toString()), ['after']);
      await tunnel.close();
      const stats = await closed;
      assert.equal(stats.rxDatagrams, ROUNDS * 4 + 1);
      assert.ok(stats.dropUdpSend > 0, 'no send reported the ICMP error');
      // Every send error here was a reported ICMP error, and each is counted as one.
      assert.ok(stats.targetUnreachable >= stats.dropUdpSend);
      assert.equal(stats.targetUnreachable, server.counters.targetUnreachable);
      // Closed by the client's stream, not by the ICMP errors.
      assert.match(stats.closeReason, /^stream-/);
    } finally {
      await tunnel.close();
      await server.close();
      await sink?.close();
    }
  });
});
