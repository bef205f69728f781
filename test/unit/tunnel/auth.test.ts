import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { ErrorCodes, UdpTunnelError } from '../../../src/tunnel/errors.js';
import {
  AUTH_REALM,
  Authenticator,
  basicCredentials,
  challenge,
  loadTokenFile,
  MAX_CREDENTIAL_LENGTH,
  MAX_TOKEN_FILE_BYTES,
  parseProxyUrlCredentials,
  type AuthResult,
} from '../../../src/tunnel/auth.js';

const TOKEN = 'tok-3f9a.b_c~d+e/f==';
const OTHER_TOKEN = 'another-token';
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

const MISSING: AuthResult = { ok: false, reason: 'missing' };
const INVALID: AuthResult = { ok: false, reason: 'invalid' };

function isInvalidOption(err: unknown): err is UdpTunnelError {
  return err instanceof UdpTunnelError && err.code === ErrorCodes.INVALID_OPTION;
}

describe('tunnel/auth: Authenticator', () => {
  const auth = new Authenticator({ tokens: [OTHER_TOKEN, TOKEN], basic: ['alice:s3cret', 'bob:pa:ss wörd', 'dave:p>?~~'] });

  it('is disabled without credentials and then lets everything through', () => {
    const open = new Authenticator();
    assert.equal(open.enabled, false);
    assert.deepEqual(open.check({}), { ok: true });
    assert.deepEqual(open.check({ authorization: 'Bearer whatever' }), { ok: true });
    assert.equal(new Authenticator({ tokens: [], basic: [] }).enabled, false);
    assert.equal(auth.enabled, true);
  });

  const table: Array<[string, Parameters<Authenticator['check']>[0], AuthResult]> = [
    ['right token', { authorization: `Bearer ${TOKEN}` }, { ok: true }],
    ['second configured token', { authorization: `Bearer ${OTHER_TOKEN}` }, { ok: true }],
    ['wrong token', { authorization: 'Bearer nope' }, INVALID],
    ['token prefix', { authorization: `Bearer ${TOKEN.slice(0, -1)}` }, INVALID],
    ['token with a suffix', { authorization: `Bearer ${TOKEN}x` }, INVALID],
    ['no header', {}, MISSING],
    ['only unrelated headers', { host: 'proxy', 'x-authorization': `Bearer ${TOKEN}` }, MISSING],
    ['header present but undefined', { authorization: undefined }, MISSING],
    ['empty array', { authorization: [] }, MISSING],
    ['empty value', { authorization: '' }, INVALID],
    ['Proxy-Authorization bearer', { 'proxy-authorization': `Bearer ${TOKEN}` }, { ok: true }],
    ['mixed-case header name', { 'Proxy-Authorization': `Bearer ${TOKEN}` }, { ok: true }],
    ['lowercase scheme', { authorization: `bearer ${TOKEN}` }, { ok: true }],
    ['uppercase scheme', { authorization: `BEARER ${TOKEN}` }, { ok: true }],
    ['several spaces and surrounding whitespace', { authorization: `  Bearer   ${TOKEN} ` }, { ok: true }],
    ['tab separator', { authorization: `Bearer\t${TOKEN}` }, { ok: true }],
    ['scheme only', { authorization: 'Bearer' }, INVALID],
    ['scheme and space only', { authorization: 'Bearer ' }, INVALID],
    ['two credentials in one value', { authorization: `Bearer ${TOKEN} ${TOKEN}` }, INVALID],
    ['comma-joined duplicates', { authorization: `Bearer ${TOKEN}, Bearer ${TOKEN}` }, INVALID],
    ['unknown scheme', { authorization: `Token ${TOKEN}` }, INVALID],
    ['bad scheme characters', { authorization: `Bea(rer ${TOKEN}` }, INVALID],
    ['token sent as Basic', { authorization: `Basic ${b64(TOKEN)}` }, INVALID],
    ['Basic right', { authorization: `Basic ${b64('alice:s3cret')}` }, { ok: true, user: 'alice' }],
    ['Basic right, UTF-8, colon in password', { authorization: `Basic ${b64('bob:pa:ss wörd')}` }, { ok: true, user: 'bob' }],
    ['Basic lowercase scheme', { authorization: `basic ${b64('alice:s3cret')}` }, { ok: true, user: 'alice' }],
    ['Basic via Proxy-Authorization', { 'proxy-authorization': `Basic ${b64('alice:s3cret')}` }, { ok: true, user: 'alice' }],
    ['Basic without padding', { authorization: `Basic ${b64('alice:s3cret').replace(/=+$/, '')}` }, { ok: true, user: 'alice' }],
    ['Basic wrong password', { authorization: `Basic ${b64('alice:s3creT')}` }, INVALID],
    ['Basic unknown user', { authorization: `Basic ${b64('carol:s3cret')}` }, INVALID],
    ['Basic other user password', { authorization: `Basic ${b64('bob:s3cret')}` }, INVALID],
    ['Basic Latin-1 instead of UTF-8', { authorization: `Basic ${Buffer.from('bob:pa:ss wörd', 'latin1').toString('base64')}` }, INVALID],
    ['Basic not base64', { authorization: 'Basic !!!!' }, INVALID],
    ['Basic bad padding', { authorization: 'Basic YWxpY2U6czNjcmV0=' }, INVALID],
    ['Basic impossible length', { authorization: 'Basic YWxpY' }, INVALID],
    // Node's base64 decoder skips characters outside the alphabet; the check must not.
    ['Basic with stray characters', { authorization: `Basic ${b64('alice:s3cret').slice(0, 8)}..${b64('alice:s3cret').slice(8)}` }, INVALID],
    ['Basic with + and /', { authorization: `Basic ${b64('dave:p>?~~')}` }, { ok: true, user: 'dave' }],
    ['Basic in the URL-safe alphabet', { authorization: `Basic ${Buffer.from('dave:p>?~~').toString('base64url')}` }, INVALID],
    ['bearer token sent as Bearer base64', { authorization: `Bearer ${b64(TOKEN)}` }, INVALID],
    ['duplicate authorization values', { authorization: [`Bearer ${TOKEN}`, `Bearer ${TOKEN}`] }, INVALID],
    ['duplicate: one valid, one not', { authorization: [`Bearer ${TOKEN}`, 'Bearer nope'] }, INVALID],
    ['one value in an array', { authorization: [`Bearer ${TOKEN}`] }, { ok: true }],
    [
      'both Authorization and Proxy-Authorization',
      { authorization: `Bearer ${TOKEN}`, 'proxy-authorization': `Basic ${b64('alice:s3cret')}` },
      INVALID,
    ],
    ['raw header list', ['Host', 'proxy', 'Authorization', `Bearer ${TOKEN}`], { ok: true }],
    ['raw header list without credentials', ['host', 'proxy'], MISSING],
    [
      'raw header list with a duplicate',
      ['authorization', `Bearer ${TOKEN}`, 'AUTHORIZATION', `Bearer ${TOKEN}`],
      INVALID,
    ],
  ];
  for (const [name, headers, expected] of table) {
    it(name, () => {
      assert.deepEqual(auth.check(headers), expected);
    });
  }

  it('accepts credentials up to MAX_CREDENTIAL_LENGTH and refuses to configure longer ones', () => {
    const longest = 'a'.repeat(MAX_CREDENTIAL_LENGTH);
    const a = new Authenticator({ tokens: [longest] });
    assert.deepEqual(a.check({ authorization: `Bearer ${longest}` }), { ok: true });
    assert.deepEqual(a.check({ authorization: `Bearer ${longest}a` }), INVALID);
    assert.throws(() => new Authenticator({ tokens: [`${longest}a`] }), isInvalidOption);
    // 3 bytes -> 4 base64 characters: "u:" + 3070 bytes = 3072 bytes = 4096 characters.
    const user = 'u';
    const pass = 'p'.repeat((MAX_CREDENTIAL_LENGTH / 4) * 3 - 2);
    const b = new Authenticator({ basic: [`${user}:${pass}`] });
    assert.deepEqual(b.check({ authorization: basicCredentials(user, pass) }), { ok: true, user });
    assert.throws(() => new Authenticator({ basic: [`${user}:${pass}p`] }), isInvalidOption);
  });

  it('only Bearer tokens configured: Basic fails, Bearer works', () => {
    const tokensOnly = new Authenticator({ tokens: [TOKEN] });
    assert.deepEqual(tokensOnly.check({ authorization: `Basic ${b64('alice:s3cret')}` }), INVALID);
    assert.deepEqual(tokensOnly.check({ authorization: `Bearer ${TOKEN}` }), { ok: true });
    assert.deepEqual(tokensOnly.schemes, ['Bearer']);
  });

  it('rejects malformed configuration without echoing secrets', () => {
    const secrets: Array<[string, () => unknown]> = [
      ['has space', () => new Authenticator({ tokens: ['has space'] })],
      ['quote"d', () => new Authenticator({ tokens: ['quote"d'] })],
      ['', () => new Authenticator({ tokens: [''] })],
      ['=lead', () => new Authenticator({ tokens: ['=lead'] })],
      ['nocolonpass', () => new Authenticator({ basic: ['nocolonpass'] })],
      [':emptyuser', () => new Authenticator({ basic: [':emptyuser'] })],
      ['ctl\u0001pass', () => new Authenticator({ basic: ['user:ctl\u0001pass'] })],
    ];
    for (const [secret, make] of secrets) {
      assert.throws(make, (err: unknown) => isInvalidOption(err) && (secret === '' || !err.message.includes(secret)), secret);
    }
  });

  it('challenge advertises the configured schemes', () => {
    assert.deepEqual(new Authenticator({ tokens: [TOKEN] }).challenge(1), {
      status: 407,
      headers: { 'proxy-authenticate': `Bearer realm="${AUTH_REALM}"` },
    });
    assert.deepEqual(new Authenticator({ basic: ['a:b'] }).challenge(2), {
      status: 401,
      headers: { 'www-authenticate': `Basic realm="${AUTH_REALM}", charset="UTF-8"` },
    });
  });
});

describe('tunnel/auth: challenge', () => {
  it('HTTP/1.1 answers 407 with Proxy-Authenticate', () => {
    assert.deepEqual(challenge(1), {
      status: 407,
      headers: { 'proxy-authenticate': 'Bearer realm="udp-tunnel", Basic realm="udp-tunnel", charset="UTF-8"' },
    });
  });
  it('HTTP/2 answers 401 with WWW-Authenticate', () => {
    assert.deepEqual(challenge(2), {
      status: 401,
      headers: { 'www-authenticate': 'Bearer realm="udp-tunnel", Basic realm="udp-tunnel", charset="UTF-8"' },
    });
  });
  it('header values are legal for node:http', () => {
    for (const v of [1, 2] as const) {
      for (const [name, value] of Object.entries(challenge(v).headers)) {
        assert.doesNotThrow(() => http.validateHeaderName(name));
        assert.doesNotThrow(() => http.validateHeaderValue(name, value));
      }
    }
  });
});

describe('tunnel/auth: basicCredentials and parseProxyUrlCredentials', () => {
  it('encodes the RFC 7617 §2 example', () => {
    assert.equal(basicCredentials('Aladdin', 'open sesame'), 'Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==');
  });

  it('round-trips through Authenticator for any user and password', () => {
    const userChar = fc.string({ minLength: 1, maxLength: 12 }).filter((u) => !/[:\u0000-\u001f\u007f]/.test(u));
    const passChar = fc.string({ maxLength: 20 }).filter((p) => !/[\u0000-\u001f\u007f]/.test(p));
    fc.assert(
      fc.property(userChar, passChar, (user, pass) => {
        const a = new Authenticator({ basic: [`${user}:${pass}`] });
        assert.deepEqual(a.check({ 'proxy-authorization': basicCredentials(user, pass) }), { ok: true, user });
        assert.deepEqual(a.check({ 'proxy-authorization': basicCredentials(user, `${pass}x`) }), INVALID);
      }),
      { numRuns: 50 },
    );
  });

  it('rejects a user with a colon or control characters', () => {
    assert.throws(() => basicCredentials('a:b', 'x'), isInvalidOption);
    assert.throws(() => basicCredentials('', 'x'), isInvalidOption);
    assert.throws(() => basicCredentials('a', 'x\ny'), isInvalidOption);
  });

  it('reads percent-decoded userinfo from a proxy URL', () => {
    assert.equal(
      parseProxyUrlCredentials(new URL('https://us%40er:p%3Ass%20w@proxy.example:8443/')),
      basicCredentials('us@er', 'p:ss w'),
    );
    assert.equal(parseProxyUrlCredentials(new URL('https://alice@proxy.example/')), basicCredentials('alice', ''));
    assert.equal(parseProxyUrlCredentials(new URL('https://proxy.example/')), undefined);
  });

  it('rejects undecodable or unusable userinfo without echoing the password', () => {
    assert.throws(
      () => parseProxyUrlCredentials(new URL('https://alice:hunter%zz2@proxy.example/')),
      (err: unknown) => isInvalidOption(err) && !err.message.includes('hunter'),
    );
    assert.throws(() => parseProxyUrlCredentials(new URL('https://a%3Ab:pw@proxy.example/')), isInvalidOption);
  });
});

describe('tunnel/auth: loadTokenFile', () => {
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-auth-'));
  });
  after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const write = (name: string, content: string | Buffer): string => {
    const path = join(dir, name);
    writeFileSync(path, content);
    return path;
  };

  it('reads one token per line, trimming and skipping blanks and comments', () => {
    const path = write('tokens.txt', '\uFEFF# operators\r\n  alpha-1  \r\n\r\n\t# old: revoked\nbeta.2==\n   \ngamma~3');
    assert.deepEqual(loadTokenFile(path), ['alpha-1', 'beta.2==', 'gamma~3']);
  });

  it('loaded tokens authenticate', () => {
    const tokens = loadTokenFile(write('t2.txt', 'one\ntwo\n'));
    const a = new Authenticator({ tokens });
    assert.deepEqual(a.check({ authorization: 'Bearer two' }), { ok: true });
    assert.deepEqual(a.check({ authorization: 'Bearer three' }), INVALID);
  });

  it('an empty or comment-only file is an error', () => {
    assert.throws(() => loadTokenFile(write('empty.txt', '')), isInvalidOption);
    assert.throws(() => loadTokenFile(write('comments.txt', '# nothing\n\n  # here\n')), isInvalidOption);
  });

  it('a malformed token is reported by line number, not by value', () => {
    const path = write('bad.txt', 'good\n# c\nsecret value\n');
    assert.throws(
      () => loadTokenFile(path),
      (err: unknown) => isInvalidOption(err) && err.message.includes(`${path} line 3`) && !err.message.includes('secret'),
    );
  });

  it('a missing file is INVALID_OPTION with the errno code', () => {
    const path = join(dir, 'absent.txt');
    assert.throws(
      () => loadTokenFile(path),
      (err: unknown) => isInvalidOption(err) && err.message === `cannot read token file ${path}: ENOENT`,
    );
  });

  it('a file over MAX_TOKEN_FILE_BYTES is refused', () => {
    const line = 'x'.repeat(63) + '\n';
    const fits = write('fits.txt', line.repeat(MAX_TOKEN_FILE_BYTES / line.length));
    assert.equal(loadTokenFile(fits).length, MAX_TOKEN_FILE_BYTES / line.length);
    const big = write('big.txt', `${line.repeat(MAX_TOKEN_FILE_BYTES / line.length)}y`);
    assert.throws(() => loadTokenFile(big), isInvalidOption);
  });
});
