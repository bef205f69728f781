import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { TunnelClient } from '../../src/tunnel/client.js';
import { buildTransport, type ClientMode, type HttpVersionChoice } from '../../src/tunnel/client-config.js';
import { TargetPolicy } from '../../src/tunnel/policy.js';
import { TunnelServer } from '../../src/tunnel/server/tunnel-server.js';
import { generateCertificate } from '../../src/tunnel/tls-cert.js';
import { openUdpPeer, startUdpEcho, waitUntil, type UdpEcho, type UdpPeer } from './net.js';
import { openHandles } from './tunnel.js';

const PEERS = 6;
const PER_PEER = 3;

const COMBOS: Array<{ name: string; mode: ClientMode; http: HttpVersionChoice; transport: string }> = [
  { name: 'connect-udp over HTTP/2', mode: 'connect-udp', http: '2', transport: 'h2' },
  { name: 'connect-udp over HTTP/1.1', mode: 'connect-udp', http: '1.1', transport: 'h1' },
  { name: 'POST over HTTP/2', mode: 'post', http: '2', transport: 'post' },
];

/**
 * Runs every client transport (h2, h1.1, post) against one server listener (cleartext or TLS), over 127.0.0.1 and
 * ::1, each with several local peers whose replies must come back to them alone.
 */
export function transportMatrix(secure: boolean): void {
  for (const family of [4, 6] as const) {
    const host = family === 4 ? '127.0.0.1' : '::1';
    const bracketed = family === 4 ? host : `[${host}]`;
    describe(`${secure ? 'TLS' : 'cleartext'} listener on ${host}`, () => {
      let echo: UdpEcho;
      let server: TunnelServer;
      let proxyUrl: string;
      let ca: string | undefined;
      const before0 = openHandles();

      before(async () => {
        echo = await startUdpEcho(host);
        let tlsOpt: { cert: string; key: string } | undefined;
        if (secure) {
          const authority = await generateCertificate({ isCa: true, commonName: 'matrix test CA', altNames: [] });
          const leaf = await generateCertificate({ issuer: { cert: authority.cert, key: authority.key } });
          tlsOpt = { cert: leaf.cert, key: leaf.key };
          ca = authority.cert;
        }
        server = new TunnelServer({
          host,
          port: 0,
          policy: new TargetPolicy(),
          postRoutes: new Map([['/echo', { host, port: echo.port }]]),
          ...(tlsOpt ? { tls: tlsOpt } : {}),
        });
        const addr = await server.listen();
        proxyUrl = `${secure ? 'https' : 'http'}://${bracketed}:${addr.port}`;
      });

      after(async () => {
        await server.close();
        await echo.close();
        await waitUntil(() => openHandles().tcp <= before0.tcp && openHandles().udp <= before0.udp, 3000, 'handles released');
      });

      for (const combo of COMBOS) {
        it(`${combo.name}: ${PEERS} peers x ${PER_PEER} datagrams each come back to their own peer`, async () => {
          const transport = buildTransport({
            proxy: proxyUrl,
            target: { host, port: echo.port },
            mode: combo.mode,
            http: combo.http,
            postPath: '/echo',
            ...(ca ? { tls: { ca } } : {}),
          });
          assert.equal(transport.name, combo.transport);
          const client = new TunnelClient({ host, port: 0, transport });
          const ready: string[] = [];
          client.on('session-ready', (e: { transport: string }) => ready.push(e.transport));
          const local = await client.start();
          const sessionsBefore = server.counters.sessionsTotal;
          const peers: UdpPeer[] = [];
          try {
            for (let p = 0; p < PEERS; p++) peers.push(await openUdpPeer(host));
            for (let i = 0; i < PER_PEER; i++) {
              for (let p = 0; p < PEERS; p++) await peers[p]!.send(`${combo.transport}|peer${p}|msg${i}`, local.port, host);
            }
            for (let p = 0; p < PEERS; p++) {
              const got = (await peers[p]!.waitFor(PER_PEER)).map((b: Buffer) => b.toString()).sort();
              assert.deepEqual(got, Array.from({ length: PER_PEER }, (_, i) => `${combo.transport}|peer${p}|msg${i}`));
            }
            assert.equal(client.counters.sess_tunnel_success, PEERS);
            assert.equal(client.counters.downstream_sess_tx_datagrams, PEERS * PER_PEER);
            assert.deepEqual(ready, new Array<string>(PEERS).fill(combo.transport));
            assert.equal(server.counters.sessionsTotal - sessionsBefore, PEERS);
          } finally {
            for (const peer of peers) await peer.close();
            await client.close();
          }
          await waitUntil(() => server.activeSessions === 0 && server.openConnections === 0, 3000, 'server sessions and connections closed');
        });
      }
    });
  }
}
