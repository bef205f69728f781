import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { TunnelClient } from '../../../../src/tunnel/client.js';
import { buildTransport } from '../../../../src/tunnel/client-config.js';
import { TargetPolicy } from '../../../../src/tunnel/policy.js';
import { TunnelServer, headerListSize, type TunnelServerOptions } from '../../../../src/tunnel/server/tunnel-server.js';
import { generateCertificate } from '../../../../src/tunnel/tls-cert.js';
import type { H2ConnectUdpTransport } from '../../../../src/tunnel/transport/h2.js';
import { encodeDatagramCapsule } from '../../../../src/tunnel/codec/datagram.js';
import { startScriptedUpstream } from '../../../helpers/h2-peer.js';
import { openRawH2Peer, statusOf, type ReceivedFrame } from '../../../helpers/h2-raw-peer.js';
import { PREFACE, settingsFrame } from '../../../helpers/h2-writer.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho } from '../../../helpers/net.js';
import { connectUdpHeaders, h2Request, h2Session, waitClose } from '../../../helpers/tunnel.js';

const HOSTS = ['127.0.0.1', '::1'] as const;
const ENHANCE_YOUR_CALM = 0x0b;
const NO_ERROR = 0;

/** URL authority form of a loopback host. */
const authority = (host: string, port: number): string => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

/** A CONNECT-UDP request to a path outside the template (answered 404), padded to exactly `size` header-list bytes. */
function paddedRequest(host: string, port: number, size: number): Array<[string, string]> {
  const base: Array<[string, string]> = [
    [':method', 'CONNECT'],
    [':protocol', 'connect-udp'],
    [':scheme', 'http'],
    [':authority', authority(host, port)],
    [':path', '/nope'],
    ['x-pad', ''],
  ];
  const pad = size - headerListSize(base.flat());
  assert.ok(pad >= 0);
  base[5] = ['x-pad', 'p'.repeat(pad)];
  assert.equal(headerListSize(base.flat()), size);
  return base;
}

const isStream = (type: string, id: number) => (f: ReceivedFrame) => f.type === type && 'streamId' in f && f.streamId === id;

describe('tunnel/server: connection limits (idle HTTP/2 connections, connection count, HTTP/2 header list size)', () => {
  let echo4: UdpEcho;
  let echo6: UdpEcho;
  const servers: TunnelServer[] = [];
  const start = async (host: string, opts: Partial<TunnelServerOptions>): Promise<{ server: TunnelServer; port: number; url: string }> => {
    const server = new TunnelServer({ host, port: 0, policy: new TargetPolicy(), ...opts });
    servers.push(server);
    const { port } = await server.listen();
    return { server, port, url: `http://${authority(host, port)}` };
  };
  const echoFor = (host: string): UdpEcho => (host === '::1' ? echo6 : echo4);
  const tunnelPath = (host: string): string => `/.well-known/masque/udp/${host === '::1' ? '%3A%3A1' : host}/${echoFor(host).port}/`;

  before(async () => {
    echo4 = await startUdpEcho('127.0.0.1');
    echo6 = await startUdpEcho('::1');
  });

  after(async () => {
    for (const s of servers) await s.close();
    await echo4.close();
    await echo6.close();
  });

  it('headerListSize follows RFC 9113 §6.5.2: name + value + 32 per field', () => {
    assert.equal(headerListSize([]), 0);
    assert.equal(headerListSize([':status', '200']), 7 + 3 + 32);
    assert.equal(headerListSize(['a', '', 'bc', 'def']), 1 + 0 + 32 + 2 + 3 + 32);
  });

  for (const host of HOSTS) {
    it(`maxHeaderSize over HTTP/2 (${host}): a peer that never acknowledged SETTINGS gets 431 for one byte over, counted`, async () => {
      const { server, port } = await start(host, { maxHeaderSize: 4096 });
      const peer = await openRawH2Peer(port, host, { ack: false });
      try {
        peer.request(1, paddedRequest(host, port, 4096));
        peer.request(3, paddedRequest(host, port, 4097));
        const atLimit = await peer.waitFrame(isStream('HEADERS', 1));
        const over = await peer.waitFrame(isStream('HEADERS', 3));
        assert.equal(statusOf(atLimit), 404, 'a header list of exactly the limit is processed');
        assert.equal(statusOf(over), 431);
        assert.match(String(over.fields?.find(([n]) => n === 'proxy-status')?.[1]), /error=http_request_error; details="header list of 4097 bytes exceeds the limit of 4096"/);
        assert.equal(server.counters.limits.headerSize, 1);
        assert.equal(server.counters.requests, 2);
        assert.deepEqual(server.counters.refused, { 404: 1, 431: 1 });
        // The connection stays usable after a refused header block.
        peer.request(5, paddedRequest(host, port, 400));
        assert.equal(statusOf(await peer.waitFrame(isStream('HEADERS', 5))), 404);
      } finally {
        peer.destroy();
      }
    });

    it(`maxHeaderSize over HTTP/2 (${host}): after the SETTINGS ack Node itself resets an oversized block with ENHANCE_YOUR_CALM`, async () => {
      const { server, port } = await start(host, { maxHeaderSize: 4096 });
      const peer = await openRawH2Peer(port, host, { ack: true });
      try {
        // The advertised limit is what the peer was told.
        const settings = peer.frames.find((f) => f.type === 'SETTINGS' && !f.ack);
        assert.ok(settings?.type === 'SETTINGS');
        assert.deepEqual(settings.settings.find(([id]) => id === 0x6), [0x6, 4096]);
        peer.request(1, paddedRequest(host, port, 4096));
        peer.request(3, paddedRequest(host, port, 4097));
        peer.request(5, paddedRequest(host, port, 400));
        assert.equal(statusOf(await peer.waitFrame(isStream('HEADERS', 1))), 404);
        const rst = await peer.waitFrame(isStream('RST_STREAM', 3));
        assert.ok(rst.type === 'RST_STREAM');
        assert.equal(rst.errorCode, ENHANCE_YOUR_CALM);
        assert.equal(statusOf(await peer.waitFrame(isStream('HEADERS', 5))), 404);
        assert.equal(peer.frames.some(isStream('HEADERS', 3)), false, 'no response to the oversized request');
        // Node's HTTP/2 layer refuses it before any request reaches the server's code, so nothing counts it.
        assert.equal(server.counters.requests, 2);
        assert.equal(server.counters.limits.headerSize, 0);
        assert.deepEqual(server.counters.refused, { 404: 2 });
      } finally {
        peer.destroy();
      }
    });

    it(`connectionIdleTimeoutMs (${host}): an HTTP/2 connection without open streams gets GOAWAY NO_ERROR and is closed, counted`, async () => {
      const { server, port } = await start(host, { connectionIdleTimeoutMs: 200 });
      const peer = await openRawH2Peer(port, host);
      try {
        peer.request(1, paddedRequest(host, port, 400));
        assert.equal(statusOf(await peer.waitFrame(isStream('HEADERS', 1))), 404);
        const goaway = await peer.waitFrame((f) => f.type === 'GOAWAY', 5000);
        assert.ok(goaway.type === 'GOAWAY');
        // RFC 9113 §6.8: the last stream the server processed, and no error.
        assert.deepEqual([goaway.errorCode, goaway.lastStreamId], [NO_ERROR, 1]);
        assert.equal(await peer.waitClosed(5000), true);
        assert.equal(server.counters.limits.connectionIdle, 1);
        assert.equal(server.counters.limits.headerTime, 0);
        assert.equal(server.counters.connections, 1);
        await waitUntil(() => server.openConnections === 0, 3000, 'connection released');
      } finally {
        peer.destroy();
      }
    });

    it(`connectionIdleTimeoutMs (${host}): an open tunnel keeps its connection; the clock starts when the last stream closes`, async () => {
      const { server, url, port } = await start(host, { connectionIdleTimeoutMs: 150 });
      const session = await h2Session(url);
      const goaway = new Promise<[number, number]>((resolve) => session.once('goaway', (code: number, last: number) => resolve([code, last])));
      try {
        const r = await h2Request(session, connectUdpHeaders(authority(host, port), tunnelPath(host)));
        assert.equal(r.status, 200);
        // A witness: a connection opened after the tunnel whose one request is answered (404), leaving it without
        // streams. Its idle close proves a whole idle period has passed and been handled since (this process's
        // timers fire in deadline order), rather than sleeping.
        const witness = await h2Session(url);
        assert.equal((await h2Request(witness, connectUdpHeaders(authority(host, port), '/nope'))).status, 404);
        assert.equal(await waitClose(witness, 5000), true);
        assert.equal(server.counters.limits.connectionIdle, 1, 'only the witness went idle');
        assert.equal(session.closed, false);
        r.stream.close();
        assert.deepEqual(await goaway, [NO_ERROR, 1]);
        assert.equal(await waitClose(session, 5000), true);
        assert.equal(server.counters.limits.connectionIdle, 2);
        assert.equal(server.counters.sessionsTotal, 1);
      } finally {
        session.destroy();
      }
    });
  }

  for (const host of HOSTS) {
    const tunnelRequest = (port: number): Array<[string, string]> => [
      [':method', 'CONNECT'],
      [':protocol', 'connect-udp'],
      [':scheme', 'http'],
      [':authority', authority(host, port)],
      [':path', tunnelPath(host)],
      ['capsule-protocol', '?1'],
    ];

    it(`SETTINGS acknowledgement (${host}): a peer that never acknowledges gets GOAWAY SETTINGS_TIMEOUT, even with a tunnel open, counted`, async () => {
      const { server, port } = await start(host, { headerTimeoutMs: 500, connectionIdleTimeoutMs: 0 });
      const peer = await openRawH2Peer(port, host, { ack: false });
      try {
        peer.request(1, tunnelRequest(port), false);
        assert.equal(statusOf(await peer.waitFrame(isStream('HEADERS', 1))), 200);
        const goaway = await peer.waitFrame((f) => f.type === 'GOAWAY', 5000);
        assert.ok(goaway.type === 'GOAWAY');
        // RFC 9113 §7: SETTINGS_TIMEOUT is 0x4.
        assert.equal(goaway.errorCode, 0x4);
        assert.equal(await peer.waitClosed(5000), true);
        assert.equal(server.counters.limits.settingsTimeout, 1);
        assert.equal(server.counters.limits.headerTime, 0, 'the first request arrived in time');
        await waitUntil(() => server.openConnections === 0, 3000, 'connection released');
      } finally {
        peer.destroy();
      }
    });

    it(`SETTINGS acknowledgement (${host}): a peer that acknowledges keeps its tunnel past the same time`, async () => {
      const { server, port } = await start(host, { headerTimeoutMs: 500, connectionIdleTimeoutMs: 0 });
      const peer = await openRawH2Peer(port, host, { ack: true });
      try {
        peer.request(1, tunnelRequest(port), false);
        assert.equal(statusOf(await peer.waitFrame(isStream('HEADERS', 1))), 200);
        // A witness opened afterwards that acknowledges but sends no request is closed by its header timer, of the
        // same length: that proves the peer's SETTINGS deadline has passed and been handled (timers fire in deadline
        // order), rather than sleeping.
        const witness = await openRawH2Peer(port, host);
        assert.equal(await witness.waitClosed(5000), true);
        witness.destroy();
        assert.equal(server.counters.limits.headerTime, 1, 'the witness timed out');
        assert.equal(peer.closed, false);
        assert.equal(peer.frames.some((f) => f.type === 'GOAWAY'), false);
        assert.equal(server.counters.limits.settingsTimeout, 0);
        assert.equal(server.counters.sessionsActive, 1);
      } finally {
        peer.destroy();
      }
    });
  }

  it('connectionIdleTimeoutMs without a header timer: a connection that never sends a request goes idle from its start', async () => {
    const { server, port } = await start('127.0.0.1', { connectionIdleTimeoutMs: 150, headerTimeoutMs: 0 });
    const peer = await openRawH2Peer(port, '127.0.0.1');
    try {
      const goaway = await peer.waitFrame((f) => f.type === 'GOAWAY', 5000);
      assert.ok(goaway.type === 'GOAWAY');
      assert.deepEqual([goaway.errorCode, goaway.lastStreamId], [NO_ERROR, 0]);
      assert.equal(await peer.waitClosed(5000), true);
      assert.deepEqual([server.counters.limits.connectionIdle, server.counters.limits.headerTime, server.counters.requests], [1, 0, 0]);
    } finally {
      peer.destroy();
    }
  });

  it('connectionIdleTimeoutMs: a peer that never closes its side after the GOAWAY is cut off after a short grace', async () => {
    const { server, port } = await start('127.0.0.1', { connectionIdleTimeoutMs: 100, headerTimeoutMs: 0 });
    // allowHalfOpen: the peer does not answer the server's FIN with its own.
    const socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    socket.on('error', () => {});
    let ended = false;
    socket.on('end', () => (ended = true));
    socket.resume();
    socket.write(Buffer.concat([PREFACE, settingsFrame([]), settingsFrame([], true)]));
    try {
      await waitUntil(() => ended, 5000, 'the server FIN');
      await waitUntil(() => server.openConnections === 0, 5000, 'the server to drop the half-open connection');
      assert.equal(socket.writableEnded, false, 'the peer never closed its side');
      assert.equal(server.counters.limits.connectionIdle, 1);
    } finally {
      socket.destroy();
    }
  });

  it('connectionIdleTimeoutMs 0 turns the idle close off', async () => {
    const { server, port } = await start('127.0.0.1', { connectionIdleTimeoutMs: 0 });
    const peer = await openRawH2Peer(port, '127.0.0.1');
    try {
      peer.request(1, paddedRequest('127.0.0.1', port, 400));
      assert.equal(statusOf(await peer.waitFrame(isStream('HEADERS', 1))), 404);
      // With the timer off nothing is armed that could be awaited instead: a fixed wait, then the negative.
      await new Promise((res) => setTimeout(res, 400));
      assert.equal(peer.closed, false);
      assert.equal(peer.frames.some((f) => f.type === 'GOAWAY'), false);
      assert.equal(server.counters.limits.connectionIdle, 0);
    } finally {
      peer.destroy();
    }
  });

  for (const host of HOSTS) {
    it(`HTTP/1.1 (${host}): a connection is never left idle after a refusal; the server closes it although the client keeps its side open`, async () => {
      const { server, port } = await start(host, { connectionIdleTimeoutMs: 0 });
      const socket = net.connect({ port, host });
      socket.on('error', () => {});
      let text = '';
      socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
      socket.write(`GET /nope HTTP/1.1\r\nHost: ${authority(host, port)}\r\nConnection: Upgrade\r\nUpgrade: connect-udp\r\nCapsule-Protocol: ?1\r\n\r\n`);
      assert.equal(await waitClose(socket, 5000), true);
      assert.match(text, /^HTTP\/1\.1 404 /);
      assert.match(text, /\r\nconnection: close\r\n/i);
      assert.deepEqual(server.counters.refused, { 404: 1 });
      assert.equal(server.counters.connectionsH1, 1);
      assert.equal(server.counters.limits.connectionIdle, 0);
    });

    it(`maxConnections (${host}): connections over the limit are closed on accept and counted; a freed slot is usable`, async () => {
      const { server, port } = await start(host, { maxConnections: 2 });
      const open = (): net.Socket => {
        const s = net.connect({ port, host });
        s.on('error', () => {});
        return s;
      };
      const a = open();
      const b = open();
      await waitUntil(() => server.openConnections === 2, 3000, 'two connections accepted');
      const c = open();
      assert.equal(await waitClose(c, 3000), true, 'the third connection is closed');
      assert.equal(server.counters.limits.connections, 1);
      assert.equal(server.counters.connections, 2);
      a.destroy();
      await waitUntil(() => server.openConnections === 1, 3000, 'a slot freed');
      const session = await h2Session(`http://${authority(host, port)}`);
      try {
        const r = await h2Request(session, connectUdpHeaders(authority(host, port), '/nope'));
        assert.equal(r.status, 404, 'the freed slot serves requests');
        assert.equal(server.counters.limits.connections, 1);
        assert.equal(server.counters.connections, 3);
      } finally {
        session.destroy();
        b.destroy();
      }
    });
  }

  it('maxConnections over TLS: the excess connection is closed before any TLS handshake and is no TLS error', async () => {
    const cert = await generateCertificate();
    const { server, port } = await start('127.0.0.1', { maxConnections: 1, tls: { cert: cert.cert, key: cert.key } });
    const first = tls.connect({ port, host: '127.0.0.1', ca: cert.cert, servername: 'localhost', ALPNProtocols: ['h2'] });
    first.on('error', () => {});
    await new Promise<void>((resolve) => first.once('secureConnect', () => resolve()));
    const second = tls.connect({ port, host: '127.0.0.1', ca: cert.cert, servername: 'localhost', ALPNProtocols: ['h2'] });
    let secured = false;
    second.on('error', () => {});
    second.once('secureConnect', () => (secured = true));
    assert.equal(await waitClose(second, 3000), true);
    assert.equal(secured, false);
    assert.deepEqual([server.counters.limits.connections, server.counters.connections, server.counters.tlsErrors], [1, 1, 0]);
    first.destroy();
  });

  it('a pooled client connection closed by the server for idleness: the next session opens a new connection, other sessions lose nothing', async () => {
    const { server, url } = await start('127.0.0.1', { connectionIdleTimeoutMs: 300 });
    const target = { host: '127.0.0.1', port: echo4.port };
    // `steady` holds a tunnel open the whole time, so its connection is never idle.
    const steady = new TunnelClient({ host: '127.0.0.1', port: 0, transport: buildTransport({ proxy: url, target }) });
    // `idle` lets its only session end (client idle timeout) and keeps the pooled connection open with no streams.
    const idleTransport = buildTransport({ proxy: url, target }) as H2ConnectUdpTransport;
    const idle = new TunnelClient({ host: '127.0.0.1', port: 0, transport: idleTransport, idleTimeoutMs: 500 });
    const steadyLocal = await steady.start();
    const idleLocal = await idle.start();
    const steadyPeer = await openUdpPeer();
    const first = await openUdpPeer();
    const second = await openUdpPeer();
    try {
      await steadyPeer.send('s0', steadyLocal.port, '127.0.0.1');
      await steadyPeer.waitFor(1);
      await first.send('one', idleLocal.port, '127.0.0.1');
      assert.equal(String((await first.waitFor(1))[0]), 'one');
      assert.equal(server.counters.connectionsH2, 2);
      // The idle client's session ends, its connection stays pooled, and the server closes it.
      await waitUntil(() => server.counters.limits.connectionIdle === 1, 5000, 'server idle close');
      await waitUntil(() => server.counters.sessionsActive === 1, 5000, 'idle session gone');
      await steadyPeer.send('s1', steadyLocal.port, '127.0.0.1');
      await second.send('two', idleLocal.port, '127.0.0.1');
      assert.equal(String((await second.waitFor(1))[0]), 'two');
      await steadyPeer.send('s2', steadyLocal.port, '127.0.0.1');
      const got = await steadyPeer.waitFor(3);
      assert.deepEqual(got.map(String), ['s0', 's1', 's2']);
      assert.equal(idleTransport.pool.connectionsOpened, 2);
      assert.equal(server.counters.connectionsH2, 3);
      assert.equal(server.counters.limits.connectionIdle, 1);
      assert.equal(idle.counters.sess_tunnel_success, 2);
      assert.equal(idle.counters.sess_tunnel_failure, 0);
      assert.equal(steady.counters.sess_tunnel_success, 1);
    } finally {
      for (const p of [steadyPeer, first, second]) await p.close();
      await steady.close();
      await idle.close();
    }
  });

  it('a GOAWAY that crosses a new request: the request is retried on a new connection and the open tunnel keeps relaying', async () => {
    let n = 0;
    const upstream = await startScriptedUpstream({
      respond: (stream) => {
        n++;
        // RFC 9113 §6.8: stream 3 is above the last stream id in the GOAWAY, so the client knows it was not processed.
        if (n === 2) stream.session?.goaway(NO_ERROR, 1);
        else stream.respond({ ':status': 200, 'capsule-protocol': '?1' });
      },
    });
    const transport = buildTransport({ proxy: `http://127.0.0.1:${upstream.port}`, target: { host: '127.0.0.1', port: 9 } }) as H2ConnectUdpTransport;
    const signal = new AbortController().signal;
    try {
      const a = await transport.open('a', signal);
      const b = await transport.open('b', signal);
      assert.equal(transport.pool.connectionsOpened, 2);
      assert.equal(upstream.requests.length, 3);
      // Both directions of the tunnel opened before the GOAWAY still carry data.
      const capsule = encodeDatagramCapsule(Buffer.from([0, 1, 2, 3]));
      const toClient = new Promise<Buffer>((resolve) => a.stream.once('data', (c: Buffer) => resolve(c)));
      upstream.requests[0]!.stream.write(capsule);
      assert.deepEqual(await toClient, capsule);
      a.stream.write(capsule);
      await waitUntil(() => Buffer.concat(upstream.requests[0]!.body).equals(capsule), 3000, 'capsule at the upstream');
      a.abort('close');
      b.abort('close');
    } finally {
      await transport.close();
      await upstream.close();
    }
  });
});
