import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, describe, it } from 'node:test';
import { encodeDatagramCapsule } from '../../../../src/tunnel/codec/datagram.js';
import { TargetPolicy, parseRuleList } from '../../../../src/tunnel/policy.js';
import { TunnelServer } from '../../../../src/tunnel/server/tunnel-server.js';
import { startTestDns, type TestDnsServer } from '../../../helpers/dns-server.js';
import { connectUdpHeaders, h2Connect, rawRequest } from '../../../helpers/h2.js';
import { startUdpEcho, type UdpEcho } from '../../../helpers/net.js';

describe('tunnel/server: DNS resolution before answering, policy on resolved addresses', () => {
  let dns: TestDnsServer;
  let server: TunnelServer;
  let echo: UdpEcho;
  let session: http2.ClientHttp2Session;
  let authority: string;
  const path = (host: string, port: number) => `/.well-known/masque/udp/${host}/${port}/`;

  before(async () => {
    dns = await startTestDns({
      'echo.test': { a: ['127.0.0.1'] },
      'mixed.test': { a: ['192.0.2.7', '127.0.0.1'] },
      'metadata.test': { a: ['169.254.169.254'] },
      'v6only.test': { aaaa: ['::1'] },
      'slow.test': 'silent',
      'broken.test': 'servfail',
    });
    echo = await startUdpEcho();
    server = new TunnelServer({
      host: '127.0.0.1',
      port: 0,
      policy: new TargetPolicy({ rules: parseRuleList('127.0.0.0/8,::1', 'allow') }),
      dnsServers: [`127.0.0.1:${dns.port}`],
      dnsTimeoutMs: 400,
    });
    const addr = await server.listen();
    authority = `127.0.0.1:${addr.port}`;
    session = await h2Connect(`http://${authority}`);
  });
  after(async () => {
    session.close();
    await server.close();
    await echo.close();
    await dns.close();
  });

  it('a name that resolves to an allowed address is relayed', async () => {
    const r = await rawRequest(session, connectUdpHeaders(authority, path('echo.test', echo.port)));
    assert.equal(r.status, 200);
    r.stream.write(encodeDatagramCapsule(Buffer.from('via dns')));
    const got = await new Promise<Buffer>((resolve) => r.stream.once('data', resolve));
    assert.equal(got.subarray(3).toString(), 'via dns');
    r.stream.close();
  });

  it('a name resolving to a mix uses the first allowed address', async () => {
    const opened: { resolved: string }[] = [];
    server.once('session-open', (e: { resolved: string }) => opened.push(e));
    const r = await rawRequest(session, connectUdpHeaders(authority, path('mixed.test', echo.port)));
    assert.equal(r.status, 200);
    assert.equal(opened[0]!.resolved, '127.0.0.1');
    r.stream.close();
  });

  it('a name resolving only to link-local -> 403 destination_ip_prohibited', async () => {
    const r = await rawRequest(session, connectUdpHeaders(authority, path('metadata.test', 53)));
    assert.equal(r.status, 403);
    assert.match(String(r.headers['proxy-status']), /^udp-tunnel; error=destination_ip_prohibited/);
  });

  it('NXDOMAIN -> 502 dns_error with rcode (RFC 9209 §2.3.2)', async () => {
    const r = await rawRequest(session, connectUdpHeaders(authority, path('nowhere.test', 53)));
    assert.equal(r.status, 502);
    assert.match(String(r.headers['proxy-status']), /^udp-tunnel; error=dns_error; rcode="NXDOMAIN"/);
  });

  it('SERVFAIL -> 502 dns_error', async () => {
    const r = await rawRequest(session, connectUdpHeaders(authority, path('broken.test', 53)));
    assert.equal(r.status, 502);
    assert.match(String(r.headers['proxy-status']), /error=dns_error/);
  });

  it('a DNS server that never answers -> 504 dns_timeout', async () => {
    const r = await rawRequest(session, connectUdpHeaders(authority, path('slow.test', 53)));
    assert.equal(r.status, 504);
    assert.match(String(r.headers['proxy-status']), /^udp-tunnel; error=dns_timeout/);
  });

  it('AAAA-only names work (IPv6 target over an IPv4 proxy)', async () => {
    const echo6 = await startUdpEcho('::1');
    const r = await rawRequest(session, connectUdpHeaders(authority, path('v6only.test', echo6.port)));
    assert.equal(r.status, 200);
    r.stream.write(encodeDatagramCapsule(Buffer.from('six')));
    const got = await new Promise<Buffer>((resolve) => r.stream.once('data', resolve));
    assert.equal(got.subarray(3).toString(), 'six');
    r.stream.close();
    await echo6.close();
  });
});
