import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import dgram from 'node:dgram';
import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { TunnelClient } from '../../../../src/tunnel/client.js';
import { encodeDatagramCapsule } from '../../../../src/tunnel/codec/datagram.js';
import { buildTransport } from '../../../../src/tunnel/client-config.js';
import { TargetPolicy } from '../../../../src/tunnel/policy.js';
import { H2_PREFACE, TunnelServer, type TunnelServerOptions } from '../../../../src/tunnel/server/tunnel-server.js';
import { generateCertificate } from '../../../../src/tunnel/tls-cert.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho } from '../../../helpers/net.js';
import { connectUdpHeaders, h2Request, h2Session, waitClose } from '../../../helpers/tunnel.js';

describe('tunnel/server: limits are configurable, enforced and counted', () => {
  let echo: UdpEcho;
  const servers: TunnelServer[] = [];
  const start = async (opts: Partial<TunnelServerOptions>): Promise<{ server: TunnelServer; port: number; url: string }> => {
    const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy(), ...opts });
    servers.push(server);
    const { port } = await server.listen();
    return { server, port, url: `http://127.0.0.1:${port}` };
  };
  const path = (port: number): string => `/.well-known/masque/udp/127.0.0.1/${port}/`;

  before(async () => {
    echo = await startUdpEcho();
  });

  after(async () => {
    for (const s of servers) await s.close();
    await echo.close();
  });

  it('maxSessions: the request over the server limit gets 503 connection_limit_reached', async () => {
    const { server, url, port } = await start({ maxSessions: 2 });
    const session = await h2Session(url);
    const authority = `127.0.0.1:${port}`;
    const a = await h2Request(session, connectUdpHeaders(authority, path(echo.port)));
    const b = await h2Request(session, connectUdpHeaders(authority, path(echo.port)));
    const c = await h2Request(session, connectUdpHeaders(authority, path(echo.port)));
    assert.deepEqual([a.status, b.status, c.status], [200, 200, 503]);
    assert.match(String(c.headers['proxy-status']), /error=connection_limit_reached/);
    assert.equal(server.counters.limits.serverSessions, 1);
    a.stream.close();
    await waitUntil(() => server.activeSessions === 1, 2000, 'a slot freed');
    const d = await h2Request(session, connectUdpHeaders(authority, path(echo.port)));
    assert.equal(d.status, 200, 'a freed slot is usable again');
    session.destroy();
  });

  it('maxSessionsPerConnection: excess streams get REFUSED_STREAM and the client moves to a new connection', async () => {
    const { server, url } = await start({ maxSessionsPerConnection: 2 });
    const client = new TunnelClient({ host: '127.0.0.1', port: 0, transport: buildTransport({ proxy: url, target: { host: '127.0.0.1', port: echo.port } }) });
    const local = await client.start();
    const peers = [await openUdpPeer(), await openUdpPeer(), await openUdpPeer()];
    try {
      for (const [i, p] of peers.entries()) {
        await p.send(`p${i}`, local.port, '127.0.0.1');
        assert.equal((await p.waitFor(1))[0]!.toString(), `p${i}`);
      }
      assert.equal(server.counters.limits.connectionSessions, 1);
      assert.equal(server.counters.connectionsH2, 2);
      assert.equal(client.counters.sess_tunnel_success, 3);
    } finally {
      for (const p of peers) await p.close();
      await client.close();
    }
  });

  it('maxDatagram: larger datagrams are dropped and counted in both directions, smaller ones pass', async () => {
    // A target that answers every datagram with 300 bytes.
    const big = dgram.createSocket('udp4');
    big.on('message', (_m, r) => big.send(Buffer.alloc(300, 7), r.port, r.address));
    await new Promise<void>((r) => big.bind(0, '127.0.0.1', () => r()));
    const bigPort = (big.address() as AddressInfo).port;
    const { server, url } = await start({ maxDatagram: 100 });
    const client = new TunnelClient({ host: '127.0.0.1', port: 0, transport: buildTransport({ proxy: url, target: { host: '127.0.0.1', port: echo.port } }) });
    const local = await client.start();
    const peer = await openUdpPeer();
    try {
      await peer.send(Buffer.alloc(101, 1), local.port, '127.0.0.1');
      await peer.send(Buffer.alloc(100, 2), local.port, '127.0.0.1');
      const [reply] = await peer.waitFor(1);
      assert.deepEqual(reply, Buffer.alloc(100, 2));
      assert.equal(server.counters.limits.datagramSize, 1);
      const toBig = new TunnelClient({ host: '127.0.0.1', port: 0, transport: buildTransport({ proxy: url, target: { host: '127.0.0.1', port: bigPort } }) });
      const bigLocal = await toBig.start();
      await peer.send('x', bigLocal.port, '127.0.0.1');
      await waitUntil(() => server.counters.limits.datagramSize === 2, 2000, 'target reply dropped');
      await toBig.close();
    } finally {
      await peer.close();
      await client.close();
      await new Promise<void>((r) => big.close(() => r()));
    }
  });

  it('headerTimeoutMs: silent HTTP/1.1, HTTP/2 and TLS connections are cut off and counted', async () => {
    const { server, port } = await start({ headerTimeoutMs: 200 });
    const h1 = net.connect(port, '127.0.0.1');
    h1.on('error', () => {});
    h1.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n');
    const h2 = net.connect(port, '127.0.0.1');
    h2.on('error', () => {});
    h2.write(H2_PREFACE);
    // Read so the server's FIN (and its SETTINGS) are seen.
    h1.resume();
    h2.resume();
    assert.equal(await waitClose(h1, 3000), true);
    assert.equal(await waitClose(h2, 3000), true);
    assert.equal(server.counters.limits.headerTime, 2);
    const cert = await generateCertificate();
    const secure = await start({ headerTimeoutMs: 200, tls: { cert: cert.cert, key: cert.key } });
    const raw = net.connect(secure.port, '127.0.0.1');
    raw.on('error', () => {});
    raw.resume();
    assert.equal(await waitClose(raw, 3000), true, 'no TLS handshake');
    const quiet = tls.connect({ port: secure.port, host: '127.0.0.1', ca: cert.cert, ALPNProtocols: ['http/1.1'] });
    quiet.on('error', () => {});
    quiet.resume();
    assert.equal(await waitClose(quiet, 3000), true, 'handshake but no request');
    assert.equal(secure.server.counters.limits.headerTime, 2);
  });

  it('maxStreamBuffer: datagrams toward a client that stops reading are dropped and counted', async () => {
    const { server, url, port } = await start({ maxStreamBuffer: 4096 });
    const session = await h2Session(url);
    const r = await h2Request(session, connectUdpHeaders(`127.0.0.1:${port}`, path(echo.port)));
    assert.equal(r.status, 200);
    r.stream.pause();
    // One datagram through the tunnel teaches the echo target the proxy's UDP address.
    const learned = new Promise<{ port: number; address: string }>((resolve) => echo.socket.once('message', (_m, info) => resolve(info)));
    r.stream.write(encodeDatagramCapsule(Buffer.concat([Buffer.from([0]), Buffer.from('hello')])));
    const proxyUdp = await learned;
    const payload = Buffer.alloc(1000, 9);
    for (let i = 0; i < 400 && server.counters.limits.streamBuffer === 0; i++) {
      await new Promise<void>((resolve) => echo.socket.send(payload, proxyUdp.port, proxyUdp.address, () => resolve()));
      if (i % 20 === 19) await new Promise((res) => setTimeout(res, 5));
    }
    await waitUntil(() => server.counters.limits.streamBuffer > 0, 3000, 'stream buffer drops');
    assert.ok(server.counters.limits.streamBuffer > 0);
    session.destroy();
  });
});
