import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import http2 from 'node:http2';
import net from 'node:net';
import { Authenticator } from '../../../../src/tunnel/auth.js';
import { TunnelClient } from '../../../../src/tunnel/client.js';
import { buildTransport } from '../../../../src/tunnel/client-config.js';
import { encodeDatagramCapsule } from '../../../../src/tunnel/codec/datagram.js';
import { headerValues, parseResponseHead, type Http1Head } from '../../../../src/tunnel/http/http1-head.js';
import { TargetPolicy } from '../../../../src/tunnel/policy.js';
import { TunnelServer, type TunnelServerOptions } from '../../../../src/tunnel/server/tunnel-server.js';
import { openRawH2Peer, statusOf, type RawH2Peer, type ReceivedFrame } from '../../../helpers/h2-raw-peer.js';
import { END_HEADERS, h2Frame, headerBlock } from '../../../helpers/h2-writer.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho } from '../../../helpers/net.js';
import { connectUdpHeaders, h2Request, h2Session, waitClose } from '../../../helpers/tunnel.js';

const HOSTS = ['127.0.0.1', '::1'] as const;
const TOKEN = 'correct-horse-battery-staple-42';
// RFC 9113 §7 error codes.
const REFUSED_STREAM = 0x7;
const CANCEL = 0x8;
const ENHANCE_YOUR_CALM = 0xb;

const authority = (host: string, port: number): string => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);
const isStream = (type: string, id: number) => (f: ReceivedFrame) => f.type === type && 'streamId' in f && f.streamId === id;
/** A DATA frame on `id` whose payload carries `text` (the echoed UDP payload inside its DATAGRAM capsule). */
const dataWith = (id: number, text: string) => (f: ReceivedFrame) => f.type === 'DATA' && f.streamId === id && f.data.includes(text);

/** HTTP/1.1 CONNECT-UDP request from a chosen local address; resolves with the response head and the open socket. */
function h1Attempt(port: number, host: string, localAddress: string, path: string, credentials?: string): Promise<{ head: Http1Head; socket: net.Socket }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host, localAddress });
    socket.on('error', reject);
    const lines = [`GET ${path} HTTP/1.1`, `Host: ${authority(host, port)}`, 'Connection: Upgrade', 'Upgrade: connect-udp', 'Capsule-Protocol: ?1'];
    if (credentials !== undefined) lines.push(`Proxy-Authorization: ${credentials}`);
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const r = parseResponseHead(buf, 64 * 1024);
      if (r.state === 'done') resolve({ head: r.head, socket });
      else if (r.state === 'error') reject(new Error(r.details));
    });
    socket.once('close', () => reject(new Error('closed before a response head')));
  });
}

describe('tunnel/server: admission by stream limit, failed authentications and sessions per client address', () => {
  let echo4: UdpEcho;
  let echo6: UdpEcho;
  const servers: TunnelServer[] = [];
  const start = async (host: string, opts: Partial<TunnelServerOptions>): Promise<{ server: TunnelServer; port: number; events: unknown[] }> => {
    const server = new TunnelServer({ host, port: 0, policy: new TargetPolicy(), ...opts });
    servers.push(server);
    const events: unknown[] = [];
    server.on('refused', (e) => events.push(e));
    const { port } = await server.listen();
    return { server, port, events };
  };
  const echoFor = (host: string): UdpEcho => (host === '::1' ? echo6 : echo4);
  const tunnelPath = (host: string): string => `/.well-known/masque/udp/${host === '::1' ? '%3A%3A1' : host}/${echoFor(host).port}/`;
  const tunnelRequest = (host: string, port: number, extra: Array<[string, string]> = []): Array<[string, string]> => [
    [':method', 'CONNECT'],
    [':protocol', 'connect-udp'],
    [':scheme', 'http'],
    [':authority', authority(host, port)],
    [':path', tunnelPath(host)],
    ['capsule-protocol', '?1'],
    ...extra,
  ];
  const sendDatagram = (peer: RawH2Peer, id: number, text: string): void => {
    peer.socket.write(h2Frame(0, 0, id, encodeDatagramCapsule(Buffer.from(text))));
  };

  before(async () => {
    echo4 = await startUdpEcho('127.0.0.1');
    echo6 = await startUdpEcho('::1');
  });

  after(async () => {
    for (const s of servers) await s.close();
    await echo4.close();
    await echo6.close();
  });

  for (const host of HOSTS) {
    for (const ack of [true, false]) {
      it(`maxStreamsPerConnection (${host}, SETTINGS ${ack ? 'acknowledged' : 'never acknowledged'}): 100 tunnels echo, stream 101 gets REFUSED_STREAM, the 100 echo on`, async () => {
        const { server, port, events } = await start(host, { maxStreamsPerConnection: 100, headerTimeoutMs: 0, connectionIdleTimeoutMs: 0 });
        // The raw peer acknowledges the server's SETTINGS before it sends anything else, so with `ack` every request
        // below reaches the server after the acknowledgement.
        const peer = await openRawH2Peer(port, host, { ack });
        try {
          const settings = peer.frames.find((f) => f.type === 'SETTINGS' && !f.ack);
          assert.ok(settings?.type === 'SETTINGS');
          assert.equal(settings.settings.some(([id]) => id === 0x3), false, 'the limit is enforced per stream, not handed to the HTTP/2 layer');
          const ids = Array.from({ length: 100 }, (_, i) => 1 + 2 * i);
          for (const id of ids) peer.request(id, tunnelRequest(host, port), false);
          for (const id of ids) assert.equal(statusOf(await peer.waitFrame(isStream('HEADERS', id), 10_000)), 200, `stream ${id}`);
          for (const id of ids) sendDatagram(peer, id, `first-${id}.`);
          for (const id of ids) await peer.waitFrame(dataWith(id, `first-${id}.`), 10_000);

          peer.request(201, tunnelRequest(host, port), false);
          const rst = await peer.waitFrame(isStream('RST_STREAM', 201), 10_000);
          assert.ok(rst.type === 'RST_STREAM');
          // RFC 9113 §5.1.2: a stream error, not a connection error.
          assert.equal(rst.errorCode, REFUSED_STREAM);
          assert.equal(server.counters.limits.connectionStreams, 1);

          for (const id of ids) sendDatagram(peer, id, `second-${id}.`);
          for (const id of ids) await peer.waitFrame(dataWith(id, `second-${id}.`), 10_000);
          assert.equal(peer.frames.some((f) => f.type === 'GOAWAY'), false);
          assert.equal(peer.closed, false);
          assert.equal(server.activeSessions, 100);
          assert.equal(server.counters.sessionsTotal, 100);

          // A client at the limit that resets one stream may open the next one right behind the reset.
          peer.socket.write(Buffer.concat([h2Frame(3, 0, 1, Buffer.from([0, 0, 0, CANCEL])), h2Frame(1, END_HEADERS, 203, headerBlock(tunnelRequest(host, port)))]));
          assert.equal(statusOf(await peer.waitFrame(isStream('HEADERS', 203), 10_000)), 200);
          sendDatagram(peer, 203, 'third-203.');
          await peer.waitFrame(dataWith(203, 'third-203.'), 10_000);
          assert.equal(server.counters.limits.connectionStreams, 1);
          assert.equal(events.length, 1);
          const { client, ...refusal } = events[0] as { client: string };
          assert.deepEqual(refusal, { status: null, reset: 'REFUSED_STREAM', error: 'connection_limit_reached', details: 'connection stream limit 100 reached', httpVersion: 2 });
          assert.ok(client.startsWith(host === '::1' ? '[::1]:' : '127.0.0.1:'), client);
        } finally {
          peer.destroy();
        }
        await waitUntil(() => server.activeSessions === 0, 5000, 'tunnels closed with the connection');
      });
    }
  }

  it('TunnelClient spreads a burst of 250 sessions over connections of 100 streams without a refused stream (the limit is not advertised)', async () => {
    const { server, port } = await start('127.0.0.1', { maxStreamsPerConnection: 100 });
    const client = new TunnelClient({ host: '127.0.0.1', port: 0, transport: buildTransport({ proxy: `http://127.0.0.1:${port}`, target: { host: '127.0.0.1', port: echo4.port } }) });
    const local = await client.start();
    const peers = await Promise.all(Array.from({ length: 250 }, () => openUdpPeer()));
    try {
      await Promise.all(peers.map((p, i) => p.send(`burst-${i}`, local.port, '127.0.0.1')));
      await Promise.all(peers.map((p) => p.waitFor(1, 20_000)));
      peers.forEach((p, i) => assert.equal(String(p.messages[0]), `burst-${i}`));
      assert.equal(server.activeSessions, 250);
      assert.equal(server.counters.connectionsH2, 3);
      assert.equal(server.counters.limits.connectionStreams, 0);
      assert.equal(server.counters.limits.connectionSessions, 0);
    } finally {
      await Promise.all(peers.map((p) => p.close()));
      await client.close();
    }
  });

  for (const host of HOSTS) {
    it(`maxAuthFailuresPerConnection (${host}): the 5th failure on an HTTP/2 connection is answered, then GOAWAY ENHANCE_YOUR_CALM; its open tunnel goes on`, async () => {
      const { server, port, events } = await start(host, {
        authenticator: new Authenticator({ tokens: [TOKEN] }),
        maxAuthFailuresPerConnection: 5,
        authFailureBurst: 100,
        connectionIdleTimeoutMs: 0,
      });
      const peer = await openRawH2Peer(port, host);
      try {
        peer.request(1, tunnelRequest(host, port, [['authorization', `Bearer ${TOKEN}`]]), false);
        assert.equal(statusOf(await peer.waitFrame(isStream('HEADERS', 1))), 200);
        const wrong = [3, 5, 7, 9, 11];
        for (const [i, id] of wrong.entries()) {
          peer.request(id, tunnelRequest(host, port, [['authorization', `Bearer guess-number-${i}-xyz`]]));
          assert.equal(statusOf(await peer.waitFrame(isStream('HEADERS', id))), 401, `stream ${id}`);
          if (i < 4) assert.equal(peer.frames.some((f) => f.type === 'GOAWAY'), false, `no GOAWAY after ${i + 1} failures`);
        }
        const goaway = await peer.waitFrame((f) => f.type === 'GOAWAY');
        assert.ok(goaway.type === 'GOAWAY');
        assert.equal(goaway.errorCode, ENHANCE_YOUR_CALM);
        assert.equal(goaway.lastStreamId, 11);
        assert.equal(server.counters.authFailures, 5);
        assert.equal(server.counters.limits.authConnection, 1);
        // RFC 9113 §6.8: streams up to the last one processed go on.
        sendDatagram(peer, 1, 'still-here.');
        await peer.waitFrame(dataWith(1, 'still-here.'));
        peer.socket.write(h2Frame(3, 0, 1, Buffer.from([0, 0, 0, CANCEL])));
        assert.equal(await peer.waitClosed(5000), true, 'the connection closes once its tunnel is gone');
        const logged = JSON.stringify(events);
        assert.equal(logged.includes('guess-number'), false, 'presented credentials never reach an event');
        assert.equal(logged.includes(TOKEN), false);
        assert.match(logged, /"goaway":"ENHANCE_YOUR_CALM"/);
      } finally {
        peer.destroy();
      }
    });

    it(`failed-authentication budget per client address (${host}): once spent, requests get 429 + Retry-After unchecked, even with the right token`, async () => {
      const { server, port } = await start(host, {
        authenticator: new Authenticator({ tokens: [TOKEN] }),
        authFailureBurst: 3,
        authFailureRefillPerSecond: 0.001,
      });
      // Requests without credentials (the first step of a challenge) do not spend the budget.
      for (let i = 0; i < 5; i++) {
        const { head, socket } = await h1Attempt(port, host, host, tunnelPath(host));
        socket.destroy();
        assert.equal(head.status, 407);
      }
      for (let i = 0; i < 3; i++) {
        const { head, socket } = await h1Attempt(port, host, host, tunnelPath(host), `Bearer guess-${i}-abcdefgh`);
        socket.destroy();
        // RFC 9110 §15.5.8: HTTP/1.1 proxies challenge with 407.
        assert.equal(head.status, 407);
      }
      const { head, socket } = await h1Attempt(port, host, host, tunnelPath(host), `Bearer ${TOKEN}`);
      socket.destroy();
      assert.equal(head.status, 429);
      assert.match(headerValues(head.headers, 'proxy-status')[0] ?? '', /error=http_request_denied; details="too many failed authentications from /);
      const retry = Number(headerValues(head.headers, 'retry-after')[0]);
      assert.ok(Number.isInteger(retry) && retry > 0, `Retry-After ${retry}`);
      assert.equal(server.counters.authFailures, 8, 'the refused request was not checked');
      assert.equal(server.counters.limits.authRate, 1);
      assert.equal(server.counters.refused[429], 1);
    });
  }

  it('failed-authentication budget: another client address (127.0.0.2) is not affected', async () => {
    const { server, port } = await start('127.0.0.1', { authenticator: new Authenticator({ tokens: [TOKEN] }), authFailureBurst: 1, authFailureRefillPerSecond: 0.001 });
    const first = await h1Attempt(port, '127.0.0.1', '127.0.0.1', tunnelPath('127.0.0.1'), 'Bearer wrong-wrong-wrong');
    first.socket.destroy();
    const spent = await h1Attempt(port, '127.0.0.1', '127.0.0.1', tunnelPath('127.0.0.1'), `Bearer ${TOKEN}`);
    spent.socket.destroy();
    assert.deepEqual([first.head.status, spent.head.status], [407, 429]);
    const other = await h1Attempt(port, '127.0.0.1', '127.0.0.2', tunnelPath('127.0.0.1'), `Bearer ${TOKEN}`);
    try {
      assert.equal(other.head.status, 101);
      await waitUntil(() => server.activeSessions === 1, 3000, 'the tunnel from 127.0.0.2');
    } finally {
      other.socket.destroy();
    }
  });

  it('failed-authentication table is bounded: the address touched longest ago is forgotten first, counted', async () => {
    const { server, port } = await start('127.0.0.1', {
      authenticator: new Authenticator({ tokens: [TOKEN] }),
      authFailureBurst: 1,
      authFailureRefillPerSecond: 0.001,
      maxAuthFailureEntries: 2,
    });
    const attempt = async (from: string): Promise<number> => {
      const { head, socket } = await h1Attempt(port, '127.0.0.1', from, tunnelPath('127.0.0.1'), 'Bearer not-the-token');
      socket.destroy();
      return head.status;
    };
    assert.deepEqual([await attempt('127.0.0.1'), await attempt('127.0.0.1')], [407, 429]);
    assert.deepEqual([await attempt('127.0.0.2'), await attempt('127.0.0.3')], [407, 407]);
    assert.equal(server.counters.limits.authEvictions, 1);
    // 127.0.0.1 was evicted, so its budget starts afresh (and its new entry evicts 127.0.0.2); 127.0.0.3 is remembered.
    assert.deepEqual([await attempt('127.0.0.1'), await attempt('127.0.0.3')], [407, 429]);
    assert.equal(server.counters.limits.authEvictions, 2);
    assert.equal(server.counters.limits.authRate, 2);
  });

  for (const host of HOSTS) {
    it(`maxSessionsPerClient (${host}): one address is capped across its connections and HTTP versions with 503 connection_limit_reached`, async () => {
      const { server, port } = await start(host, { maxSessionsPerClient: 2 });
      const url = `http://${authority(host, port)}`;
      const a = await h2Session(url);
      const b = await h2Session(url);
      try {
        const headers = connectUdpHeaders(authority(host, port), tunnelPath(host));
        const first = await h2Request(a, headers);
        const second = await h2Request(b, headers);
        const third = await h2Request(b, headers);
        assert.deepEqual([first.status, second.status, third.status], [200, 200, 503]);
        const ps = String(third.headers['proxy-status']);
        assert.match(ps, /error=connection_limit_reached/);
        assert.match(ps, new RegExp(`details="client session limit 2 reached for ${host.replace(/\./g, '\\.')}"`));
        const h1 = await h1Attempt(port, host, host, tunnelPath(host));
        h1.socket.destroy();
        assert.equal(h1.head.status, 503);
        assert.equal(server.counters.limits.clientSessions, 2);
        first.stream.close(http2.constants.NGHTTP2_CANCEL);
        await waitUntil(() => server.activeSessions === 1, 3000, 'a slot freed');
        assert.equal((await h2Request(a, headers)).status, 200, 'a freed slot is usable again');
      } finally {
        a.destroy();
        b.destroy();
      }
    });
  }

  it('maxSessionsPerClient: while 127.0.0.1 is at its cap, 127.0.0.2 still gets a tunnel that relays', async () => {
    const { server, port } = await start('127.0.0.1', { maxSessionsPerClient: 1 });
    const url = `http://127.0.0.1:${port}`;
    const headers = connectUdpHeaders(`127.0.0.1:${port}`, tunnelPath('127.0.0.1'));
    const mine = await h2Session(url);
    const other = await h2Session(url, { createConnection: () => net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' }) });
    try {
      assert.equal((await h2Request(mine, headers)).status, 200);
      assert.equal((await h2Request(mine, headers)).status, 503);
      const r = await h2Request(other, headers);
      assert.equal(r.status, 200);
      const reply = new Promise<Buffer>((resolve) => r.stream.once('data', (d: Buffer) => resolve(d)));
      r.stream.write(encodeDatagramCapsule(Buffer.from('from-127.0.0.2')));
      assert.ok((await reply).includes('from-127.0.0.2'));
      assert.equal(server.activeSessions, 2);
      assert.equal(server.counters.limits.clientSessions, 1);
    } finally {
      mine.destroy();
      other.destroy();
    }
    assert.equal(await waitClose(other, 3000), true);
  });
});
