import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { promises as dns } from 'node:dns';
import type { AddressInfo } from 'node:net';
import { TunnelClient } from '../../../src/tunnel/client.js';
import { buildTransport } from '../../../src/tunnel/client-config.js';
import { buildTargetPolicy } from '../../../src/tunnel/server-config.js';
import { TunnelServer } from '../../../src/tunnel/server/tunnel-server.js';
import { openUdpPeer, waitUntil } from '../../helpers/net.js';
import { startTestDns, type TestDnsServer } from '../../helpers/dns-server.js';
import { connectUdpHeaders, h2Request, h2Session } from '../../helpers/tunnel.js';

/** UDP echo servers on 127.0.0.1 and ::1 sharing one port, so one DNS name can reach either; each tags its replies. */
interface DualEcho {
  port: number;
  close(): Promise<void>;
}

async function bindEcho(host: string, port: number, tag: string): Promise<dgram.Socket> {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  s.on('message', (msg, r) => s.send(Buffer.concat([Buffer.from(`${tag}:`), msg]), r.port, r.address));
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(port, host, () => resolve());
  });
  return s;
}

async function startDualEcho(): Promise<DualEcho> {
  for (let i = 0; i < 20; i++) {
    const v4 = await bindEcho('127.0.0.1', 0, 'v4');
    const port = (v4.address() as AddressInfo).port;
    try {
      const v6 = await bindEcho('::1', port, 'v6');
      const close = async (): Promise<void> => {
        await new Promise<void>((r) => v4.close(() => r()));
        await new Promise<void>((r) => v6.close(() => r()));
      };
      return { port, close };
    } catch {
      // That port is taken on ::1; the OS picks another pair next time.
      await new Promise<void>((r) => v4.close(() => r()));
    }
  }
  throw new Error('could not bind a dual-stack echo pair');
}

interface Proxy {
  server: TunnelServer;
  url: string;
  opened: Array<{ target: string; resolved: string }>;
}

async function startProxy(allow: string[], deny: string[], dnsServer?: string): Promise<Proxy> {
  const server = new TunnelServer({
    host: '127.0.0.1',
    port: 0,
    policy: buildTargetPolicy(allow, deny, '127.0.0.1'),
    ...(dnsServer ? { dnsServers: [dnsServer] } : {}),
  });
  const opened: Proxy['opened'] = [];
  server.on('session-open', (e: { target: string; resolved: string }) => opened.push({ target: e.target, resolved: e.resolved }));
  const { port } = await server.listen();
  return { server, url: `http://127.0.0.1:${port}`, opened };
}

/** Sends one datagram through a fresh client; resolves with the tagged echo reply. */
async function roundTrip(proxy: Proxy, host: string, port: number): Promise<string> {
  const client = new TunnelClient({ host: '127.0.0.1', port: 0, transport: buildTransport({ proxy: proxy.url, target: { host, port } }) });
  const local = await client.start();
  const peer = await openUdpPeer();
  try {
    await peer.send('ping', local.port, '127.0.0.1');
    const [reply] = await peer.waitFor(1, 3000);
    return reply!.toString();
  } finally {
    await peer.close();
    await client.close();
  }
}

/** Asks for a tunnel and returns the status and Proxy-Status of the answer. */
async function ask(proxy: Proxy, hostInPath: string, port: number): Promise<{ status: number | null; proxyStatus: string }> {
  const session = await h2Session(proxy.url);
  try {
    const r = await h2Request(session, connectUdpHeaders(proxy.url.slice(7), `/.well-known/masque/udp/${hostInPath}/${port}/`));
    r.stream.close();
    return { status: r.status, proxyStatus: String(r.headers['proxy-status'] ?? '') };
  } finally {
    session.close();
  }
}

describe('tunnel/policy: target policy end to end', () => {
  let echo: DualEcho;
  let stub: TestDnsServer;
  const proxies: Proxy[] = [];
  const proxy = async (allow: string[], deny: string[], useStub = false): Promise<Proxy> => {
    const p = await startProxy(allow, deny, useStub ? stub.server : undefined);
    proxies.push(p);
    return p;
  };

  before(async () => {
    echo = await startDualEcho();
    stub = await startTestDns({ 'mixed.test': { a: ['127.0.0.1'], aaaa: ['::1'] }, 'v4only.test': { a: ['127.0.0.1'] } });
  });

  after(async () => {
    for (const p of proxies) await p.server.close();
    await echo.close();
    await stub.close();
  });

  it('default policy: loopback over IPv4 and IPv6 is allowed', async () => {
    const p = await proxy([], []);
    assert.equal(await roundTrip(p, '127.0.0.1', echo.port), 'v4:ping');
    assert.equal(await roundTrip(p, '::1', echo.port), 'v6:ping');
  });

  it('default policy: link-local, multicast and non-loopback targets get 403 destination_ip_prohibited', async () => {
    const p = await proxy([], []);
    for (const host of ['169.254.169.254', 'fe80%3A%3A1', '224.0.0.1', '192.0.2.7', '10.1.2.3']) {
      const r = await ask(p, host, 53);
      assert.equal(r.status, 403, host);
      assert.match(r.proxyStatus, /^udp-tunnel; error=destination_ip_prohibited/, host);
    }
    assert.equal(p.server.counters.refused[403], 5);
  });

  it('a broad --allow does not open link-local or loopback addresses', async () => {
    const p = await proxy(['0.0.0.0/0', '[::]/0'], []);
    assert.equal((await ask(p, '169.254.169.254', 80)).status, 403);
    assert.equal((await ask(p, '127.0.0.1', echo.port)).status, 403);
    assert.match((await ask(p, 'fe80%3A%3A1', 80)).proxyStatus, /destination_ip_prohibited/);
  });

  it('--allow with a port admits only that port; a port range admits its range', async () => {
    const single = await proxy([`127.0.0.1/32:${echo.port}`], []);
    assert.equal(await roundTrip(single, '127.0.0.1', echo.port), 'v4:ping');
    assert.equal((await ask(single, '127.0.0.1', echo.port === 65535 ? 1 : echo.port + 1)).status, 403);
    assert.equal((await ask(single, '::1', echo.port)).status, 403, 'an IPv4 rule does not admit ::1');
    const range = await proxy([`[::1]/128:${Math.max(1, echo.port - 1)}-${echo.port}`], []);
    assert.equal(await roundTrip(range, '::1', echo.port), 'v6:ping');
    assert.equal((await ask(range, '::1', echo.port === 65535 ? 1 : echo.port + 1)).status, 403);
  });

  it('--deny is checked before --allow, comma-separated lists included', async () => {
    const p = await proxy([`127.0.0.0/8,[::1]`], [`127.0.0.1:${echo.port}`]);
    assert.equal((await ask(p, '127.0.0.1', echo.port)).status, 403);
    assert.equal(await roundTrip(p, '::1', echo.port), 'v6:ping');
  });

  it('a DNS name with a denied and an allowed address uses the allowed one', async () => {
    const denyV4 = await proxy([], ['127.0.0.1'], true);
    assert.equal(await roundTrip(denyV4, 'mixed.test', echo.port), 'v6:ping');
    assert.deepEqual(denyV4.opened, [{ target: `mixed.test:${echo.port}`, resolved: '::1' }]);
    const denyV6 = await proxy([], ['[::1]'], true);
    assert.equal(await roundTrip(denyV6, 'mixed.test', echo.port), 'v4:ping');
    assert.deepEqual(denyV6.opened, [{ target: `mixed.test:${echo.port}`, resolved: '127.0.0.1' }]);
  });

  it('a DNS name whose every address is denied gets 403 before any socket opens', async () => {
    const p = await proxy([], ['127.0.0.0/8', '[::1]'], true);
    const r = await ask(p, 'mixed.test', echo.port);
    assert.equal(r.status, 403);
    assert.match(r.proxyStatus, /error=destination_ip_prohibited/);
    assert.equal((await ask(p, 'v4only.test', echo.port)).status, 403);
    assert.equal(p.server.counters.sessionsTotal, 0);
  });

  it('localhost through the system resolver: a deny on one of its addresses leaves the other', async () => {
    const addrs = (await dns.lookup('localhost', { all: true, verbatim: true })).map((a) => a.address);
    assert.ok(addrs.length >= 1);
    const first = addrs[0]!;
    const allowed = await proxy([], []);
    assert.equal(await roundTrip(allowed, 'localhost', echo.port), first.includes(':') ? 'v6:ping' : 'v4:ping');
    const denyFirst = await proxy([], [first.includes(':') ? `[${first}]` : first]);
    if (addrs.length > 1) {
      const other = addrs.find((a) => a !== first)!;
      assert.equal(await roundTrip(denyFirst, 'localhost', echo.port), other.includes(':') ? 'v6:ping' : 'v4:ping');
    } else {
      // This host maps localhost to one address only; denying it leaves nothing.
      assert.equal((await ask(denyFirst, 'localhost', echo.port)).status, 403);
    }
  });

  it('leaves no session behind', async () => {
    // Its own proxy: what it checks does not depend on which tests ran before it.
    const p = await proxy([], ['127.0.0.1'], true);
    assert.equal(await roundTrip(p, 'mixed.test', echo.port), 'v6:ping');
    assert.equal(await roundTrip(p, '::1', echo.port), 'v6:ping');
    assert.equal((await ask(p, '127.0.0.1', echo.port)).status, 403);
    assert.deepEqual([p.server.counters.sessionsTotal, p.server.counters.refused[403]], [2, 1]);
    await waitUntil(() => p.server.activeSessions === 0 && p.server.openConnections === 0, 5000, 'proxy idle');
  });
});
