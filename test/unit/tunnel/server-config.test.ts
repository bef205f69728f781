import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCodes, UdpTunnelError } from '../../../src/tunnel/errors.js';
import { MIN_TOKEN_LENGTH } from '../../../src/tunnel/auth.js';
import {
  buildAuthenticator,
  buildTargetPolicy,
  isLoopbackListen,
  listenExposure,
  parsePostRoutes,
  refusesUnauthenticatedListen,
  type HostLookup,
} from '../../../src/tunnel/server-config.js';

const invalid = (err: unknown): boolean => err instanceof UdpTunnelError && err.code === ErrorCodes.INVALID_OPTION;

describe('buildTargetPolicy', () => {
  it('refuses the listener own addresses unless an allow names them exactly', () => {
    const broad = buildTargetPolicy(['192.0.2.0/24'], [], '0.0.0.0', ['192.0.2.10', '127.0.0.1']);
    assert.deepEqual(broad.check('192.0.2.11', 53), { allowed: true });
    const own = broad.check('192.0.2.10', 53);
    assert.equal(own.allowed, false);
    assert.equal(!own.allowed && own.category, 'own-address');
    const exact = buildTargetPolicy(['192.0.2.10/32'], [], '0.0.0.0', ['192.0.2.10']);
    assert.deepEqual(exact.check('192.0.2.10', 53), { allowed: true });
  });

  it('a specific listen address is an own address; loopback listeners keep the loopback default', () => {
    const p = buildTargetPolicy(['198.51.100.0/24'], [], '198.51.100.7');
    assert.equal(p.check('198.51.100.7', 53).allowed, false);
    const local = buildTargetPolicy([], [], '127.0.0.1');
    assert.deepEqual(local.check('127.0.0.1', 53), { allowed: true });
    assert.deepEqual(local.check('::1', 53), { allowed: true });
  });

  it('checks every deny before any allow, whatever the flag order', () => {
    const p = buildTargetPolicy(['127.0.0.0/8'], ['127.0.0.5:53'], '127.0.0.1');
    assert.equal(p.check('127.0.0.5', 53).allowed, false);
    assert.deepEqual(p.check('127.0.0.5', 54), { allowed: true });
  });
});

describe('parsePostRoutes', () => {
  it('maps paths to targets', () => {
    const m = parsePostRoutes(['/dns=127.0.0.1:53', '/v6=[::1]:5353']);
    assert.deepEqual([...m.entries()], [
      ['/dns', { host: '127.0.0.1', port: 53 }],
      ['/v6', { host: '::1', port: 5353 }],
    ]);
  });
  for (const bad of ['dns=127.0.0.1:53', '/a b=127.0.0.1:1', '/x', '/x=host', '/x=127.0.0.1:0', '=127.0.0.1:1']) {
    it(`refuses ${JSON.stringify(bad)}`, () => assert.throws(() => parsePostRoutes([bad]), (e: unknown) => e instanceof UdpTunnelError));
  }
  it('refuses a path given twice', () => assert.throws(() => parsePostRoutes(['/a=127.0.0.1:1', '/a=127.0.0.1:2']), invalid));
});

describe('buildAuthenticator', () => {
  it('combines --token, --token-file and --basic; the environment token only when no flag gives one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ut-auth-'));
    try {
      const file = join(dir, 'tokens');
      writeFileSync(file, '# comment\nfile-token\n');
      const a = buildAuthenticator({ tokens: ['flag-token'], tokenFile: file, envToken: 'env-token', basic: ['u:p'] });
      assert.deepEqual(a.check({ authorization: 'Bearer flag-token' }), { ok: true });
      assert.deepEqual(a.check({ authorization: 'Bearer file-token' }), { ok: true });
      assert.deepEqual(a.check({ authorization: 'Bearer env-token' }), { ok: false, reason: 'invalid' });
      assert.deepEqual(a.check({ authorization: `Basic ${Buffer.from('u:p').toString('base64')}` }), { ok: true, user: 'u' });
      const env = buildAuthenticator({ envToken: 'env-token' });
      assert.deepEqual(env.check({ 'proxy-authorization': 'Bearer env-token' }), { ok: true });
      assert.equal(buildAuthenticator({}).enabled, false);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  it('never echoes a bad token in its error', () => {
    assert.throws(
      () => buildAuthenticator({ tokens: ['bad token with spaces'] }),
      (e: unknown) => invalid(e) && !(e as Error).message.includes('bad token with spaces'),
    );
  });
});

describe('listenExposure', () => {
  it('reports a non-loopback listener without authentication, and without TLS when credentials are on', () => {
    assert.equal(listenExposure('127.0.0.1', false, false), null);
    assert.equal(listenExposure('::1', false, false), null);
    assert.equal(listenExposure('0.0.0.0', false, true), 'unauthenticated');
    assert.equal(listenExposure('::', true, false), 'cleartext-credentials');
    assert.equal(listenExposure('192.0.2.1', true, true), null);
  });
});

describe('isLoopbackListen', () => {
  const fake =
    (table: Record<string, string[]>): HostLookup =>
    async (host) => {
      const found = table[host];
      if (found === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return found;
    };
  const names = fake({ localhost: ['127.0.0.1', '::1'], lan: ['192.0.2.7'], mixed: ['127.0.0.1', '192.0.2.7'], empty: [] });

  it('IP literals: only 127.0.0.0/8 and ::1 are loopback; wildcards and other addresses are not', async () => {
    for (const host of ['127.0.0.1', '127.8.9.10', '::1']) assert.equal(await isLoopbackListen(host, names), true, host);
    for (const host of ['0.0.0.0', '::', '192.0.2.1', '2001:db8::1', '::ffff:192.0.2.1']) assert.equal(await isLoopbackListen(host, names), false, host);
  });

  it('names are loopback only when every address they resolve to is; names that do not resolve are not', async () => {
    assert.equal(await isLoopbackListen('localhost', names), true);
    assert.equal(await isLoopbackListen('lan', names), false);
    assert.equal(await isLoopbackListen('mixed', names), false);
    assert.equal(await isLoopbackListen('empty', names), false);
    assert.equal(await isLoopbackListen('nowhere', names), false);
  });
});

describe('refusesUnauthenticatedListen', () => {
  it('refuses a non-loopback listener without credentials unless an open proxy is wanted', () => {
    assert.equal(refusesUnauthenticatedListen(false, false, false), true);
    assert.equal(refusesUnauthenticatedListen(false, true, false), false, 'credentials given');
    assert.equal(refusesUnauthenticatedListen(false, false, true), false, 'open on purpose');
    assert.equal(refusesUnauthenticatedListen(true, false, false), false, 'loopback');
  });
});

describe('buildAuthenticator: short tokens', () => {
  it(`counts tokens shorter than ${MIN_TOKEN_LENGTH} characters`, () => {
    assert.equal(buildAuthenticator({ tokens: ['abc', 'x'.repeat(MIN_TOKEN_LENGTH - 1), 'y'.repeat(MIN_TOKEN_LENGTH)] }).shortTokens, 2);
    assert.equal(buildAuthenticator({ tokens: ['z'.repeat(MIN_TOKEN_LENGTH)] }).shortTokens, 0);
  });
});
