import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { TunnelClient } from '../../../src/tunnel/client.js';
import { buildTransport } from '../../../src/tunnel/client-config.js';
import { ErrorCodes, UdpTunnelError, type RefusalDetails } from '../../../src/tunnel/errors.js';
import { MAX_PROXY_STATUS_LENGTH } from '../../../src/tunnel/proxy-status.js';
import { buildTargetPolicy } from '../../../src/tunnel/server-config.js';
import { TunnelServer, type RefusedEvent } from '../../../src/tunnel/server/tunnel-server.js';
import { openUdpPeer } from '../../helpers/net.js';
import { startTestDns, type TestDnsServer } from '../../helpers/dns-server.js';
import { connectUdpHeaders, h2Request, h2Session } from '../../helpers/tunnel.js';

interface Failure {
  error: UdpTunnelError;
  peer: string;
}

/** Sends one datagram through a fresh client to `host:port`; resolves with the session's final connect error. */
async function failedSession(proxyUrl: string, host: string, port: number, http: '2' | '1.1' = '2'): Promise<Failure> {
  const client = new TunnelClient({ host: '127.0.0.1', port: 0, transport: buildTransport({ proxy: proxyUrl, target: { host, port }, http }) });
  const local = await client.start();
  const peer = await openUdpPeer();
  try {
    const failed = new Promise<Failure>((resolve) => {
      client.on('connect-error', (e: { error: UdpTunnelError; peer: string; willRetry: boolean }) => {
        if (!e.willRetry) resolve({ error: e.error, peer: e.peer });
      });
    });
    await peer.send('ping', local.port, '127.0.0.1');
    return await failed;
  } finally {
    await peer.close();
    await client.close();
  }
}

interface Proxy {
  server: TunnelServer;
  url: string;
  refused: RefusedEvent[];
}

async function startProxy(allow: string[], deny: string[], dnsServer?: string): Promise<Proxy> {
  const server = new TunnelServer({
    host: '127.0.0.1',
    port: 0,
    policy: buildTargetPolicy(allow, deny, '127.0.0.1'),
    ...(dnsServer ? { dnsServers: [dnsServer] } : {}),
  });
  const refused: RefusedEvent[] = [];
  server.on('refused', (e: RefusedEvent) => refused.push(e));
  const { port } = await server.listen();
  return { server, url: `http://127.0.0.1:${port}`, refused };
}

function refusal(err: UdpTunnelError): RefusalDetails {
  assert.equal(err.code, ErrorCodes.TUNNEL_REFUSED, err.message);
  return err.details as RefusalDetails;
}

describe('tunnel/policy diagnostics: Proxy-Status details reach the client, the rule reaches the log', () => {
  let stub: TestDnsServer;
  const proxies: Proxy[] = [];
  const proxy = async (allow: string[], deny: string[], dns?: string): Promise<Proxy> => {
    const p = await startProxy(allow, deny, dns);
    proxies.push(p);
    return p;
  };

  before(async () => {
    stub = await startTestDns({ 'denied.test': { a: ['127.0.0.5'] } });
  });

  after(async () => {
    for (const p of proxies) await p.server.close();
    await stub.close();
  });

  for (const http of ['2', '1.1'] as const) {
    it(`a deny rule (HTTP/${http}): the client error carries error type and details; the event names target and rule`, async () => {
      const p = await proxy([], ['127.0.0.2/32']);
      const f = await failedSession(p.url, '127.0.0.2', 9, http);
      const d = refusal(f.error);
      assert.equal(d.status, 403);
      assert.deepEqual(d.proxyStatus, {
        proxy: 'udp-tunnel',
        error: 'destination_ip_prohibited',
        details: 'target 127.0.0.2:9 is not allowed: denied by rule 127.0.0.2/32',
        members: 1,
      });
      assert.match(f.error.message, /: HTTP 403 \(destination_ip_prohibited\): "target 127\.0\.0\.2:9 is not allowed: denied by rule 127\.0\.0\.2\/32"$/);
      assert.match(f.peer, /^127\.0\.0\.1:\d+$/);
      assert.equal(p.refused.length, 1);
      const e = p.refused[0]!;
      assert.deepEqual(
        [e.status, e.error, e.target, e.resolved, e.rule, e.httpVersion],
        [403, 'destination_ip_prohibited', '127.0.0.2:9', undefined, 'deny 127.0.0.2/32', http === '2' ? 2 : 1],
      );
      assert.equal(e.details, d.proxyStatus?.details);
    });
  }

  it('no allow rule matched: the event lists the allow rules, the client is not told them', async () => {
    const p = await proxy(['127.0.0.1/32:53', '127.0.0.4/32'], []);
    const f = await failedSession(p.url, '127.0.0.3', 9);
    const d = refusal(f.error);
    assert.equal(d.proxyStatus?.error, 'destination_ip_prohibited');
    assert.equal(d.proxyStatus?.details, 'target 127.0.0.3:9 is not allowed: it matches no allow rule');
    assert.equal(f.error.message.includes('127.0.0.4'), false);
    const e = p.refused[0]!;
    assert.deepEqual([e.target, e.rule], ['127.0.0.3:9', 'no allow rule matched (allow: 127.0.0.1/32:53, 127.0.0.4/32)']);
  });

  it('a name that resolves: details and event name the requested target and the address refused', async () => {
    const p = await proxy([], ['127.0.0.5/32'], stub.server);
    const f = await failedSession(p.url, 'denied.test', 9);
    assert.equal(refusal(f.error).proxyStatus?.details, 'target denied.test:9 (127.0.0.5) is not allowed: denied by rule 127.0.0.5/32');
    const e = p.refused[0]!;
    assert.deepEqual([e.target, e.resolved, e.rule], ['denied.test:9', '127.0.0.5', 'deny 127.0.0.5/32']);
  });

  it('the default policy refuses a non-loopback target as "loopback only" (refused before any socket is opened)', async () => {
    const p = await proxy([], []);
    const session = await h2Session(p.url);
    try {
      const r = await h2Request(session, connectUdpHeaders(p.url.slice(7), '/.well-known/masque/udp/192.0.2.1/53/'));
      r.stream.close();
      assert.equal(r.status, 403);
      assert.equal(
        r.headers['proxy-status'],
        'udp-tunnel; error=destination_ip_prohibited; details="target 192.0.2.1:53 is not allowed: only loopback targets are allowed by default"',
      );
    } finally {
      session.close();
    }
    assert.deepEqual([p.refused[0]?.target, p.refused[0]?.rule], ['192.0.2.1:53', 'default: loopback only']);
  });

  it('a DNS failure names the target in the event too', async () => {
    const p = await proxy([], [], stub.server);
    const f = await failedSession(p.url, 'nowhere.test', 9);
    assert.equal(refusal(f.error).proxyStatus?.error, 'dns_error');
    assert.deepEqual([p.refused[0]?.error, p.refused[0]?.target, p.refused[0]?.rule], ['dns_error', 'nowhere.test:9', undefined]);
  });
});

describe('tunnel/policy diagnostics: a proxy with a malformed or oversized Proxy-Status', () => {
  const oversized = `other; error=destination_ip_prohibited; details="${'x'.repeat(MAX_PROXY_STATUS_LENGTH + 100)}"`;
  const cases: Array<[string, string, RegExp]> = [
    ['malformed', 'other; error=destination_ip_prohibited; details="no end', /\(unreadable Proxy-Status: unterminated string\)$/],
    ['oversized', oversized, new RegExp(`\\(unreadable Proxy-Status: ${oversized.length} bytes, over the ${MAX_PROXY_STATUS_LENGTH}-byte limit\\)$`)],
  ];
  let h2: http2.Http2Server;
  let h1: net.Server;
  let answer = '';

  before(async () => {
    // A plain HTTP/2 server that offers extended CONNECT (RFC 8441 §3) and refuses every request with `answer`.
    h2 = http2.createServer({ settings: { enableConnectProtocol: true } });
    h2.on('stream', (stream) => stream.respond({ ':status': 403, 'proxy-status': answer }, { endStream: true }));
    h2.listen(0, '127.0.0.1');
    await once(h2, 'listening');
    h1 = net.createServer((socket) => {
      socket.once('data', () => socket.end(`HTTP/1.1 403 Forbidden\r\nProxy-Status: ${answer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`));
      socket.on('error', () => {});
    });
    h1.listen(0, '127.0.0.1');
    await once(h1, 'listening');
  });

  after(async () => {
    await new Promise<void>((r) => h2.close(() => r()));
    await new Promise<void>((r) => h1.close(() => r()));
  });

  for (const [name, value, message] of cases) {
    for (const http of ['2', '1.1'] as const) {
      it(`${name} (HTTP/${http}): the session fails with TUNNEL_REFUSED saying the Proxy-Status is unreadable`, async () => {
        answer = value;
        const port = ((http === '2' ? h2 : h1).address() as AddressInfo).port;
        const f = await failedSession(`http://127.0.0.1:${port}`, '127.0.0.1', 9, http);
        const d = refusal(f.error);
        assert.equal(d.status, 403);
        assert.equal(d.proxyStatus?.members, 0);
        assert.equal(typeof d.proxyStatus?.malformed, 'string');
        assert.match(f.error.message, message);
        assert.ok(f.error.message.length < 300, 'the message does not carry the field');
      });
    }
  }
});
