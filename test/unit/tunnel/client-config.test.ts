import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildTransport, clientAuthorization, describeProxy, redactProxyUrl } from '../../../src/tunnel/client-config.js';
import { ErrorCodes, UdpTunnelError } from '../../../src/tunnel/errors.js';
import { parsePins } from '../../../src/tunnel/transport/proxy-socket.js';

const invalid = (err: unknown): boolean => err instanceof UdpTunnelError && err.code === ErrorCodes.INVALID_OPTION;
const target = { host: '127.0.0.1', port: 53 };

describe('buildTransport', () => {
  it('picks the transport from --mode and --http', async () => {
    const cases: Array<[Parameters<typeof buildTransport>[0], string]> = [
      [{ proxy: 'http://127.0.0.1:1', target }, 'h2'],
      [{ proxy: 'http://127.0.0.1:1', target, http: '1.1' }, 'h1'],
      [{ proxy: 'https://127.0.0.1:1', mode: 'post' }, 'post'],
    ];
    for (const [cfg, name] of cases) {
      const t = buildTransport(cfg);
      assert.equal(t.name, name);
      await t.close();
    }
  });

  it('refuses POST over HTTP/1.1, a missing target and a bad POST path', () => {
    assert.throws(() => buildTransport({ proxy: 'http://127.0.0.1:1', mode: 'post', http: '1.1' }), invalid);
    assert.throws(() => buildTransport({ proxy: 'http://127.0.0.1:1' }), invalid);
    assert.throws(() => buildTransport({ proxy: 'http://127.0.0.1:1', mode: 'post', postPath: 'nope' }), invalid);
    assert.throws(() => buildTransport({ proxy: 'http://127.0.0.1:1', mode: 'post', postPath: '/a b' }), invalid);
  });
});

describe('tunnel/client-config: client credentials', () => {
  it('sends a token as Bearer and URL userinfo as Basic, percent-decoded', () => {
    assert.equal(clientAuthorization(new URL('http://127.0.0.1:1'), 'abc.def'), 'Bearer abc.def');
    assert.equal(clientAuthorization(new URL('http://al%20ice:p%40ss@127.0.0.1:1'), undefined), `Basic ${Buffer.from('al ice:p@ss').toString('base64')}`);
    assert.equal(clientAuthorization(new URL('http://127.0.0.1:1'), undefined), undefined);
  });

  it('refuses both at once and tokens that could break a header', () => {
    assert.throws(() => clientAuthorization(new URL('http://u:p@127.0.0.1:1'), 'tok'), invalid);
    assert.throws(() => clientAuthorization(new URL('http://127.0.0.1:1'), 'a\r\nX-Evil: 1'), invalid);
    assert.throws(() => clientAuthorization(new URL('http://127.0.0.1:1'), 'two words'), invalid);
  });

  it('redacts passwords in what is logged', () => {
    assert.equal(redactProxyUrl('https://alice:s3cret@proxy.example:443/x'), 'https://alice:***@proxy.example:443/x');
    assert.equal(redactProxyUrl('https://alice@proxy.example'), 'https://alice@proxy.example');
    assert.equal(redactProxyUrl('http://127.0.0.1:4433'), 'http://127.0.0.1:4433');
    assert.equal(describeProxy({ proxy: 'http://u:pw@127.0.0.1:1', target }), 'http://u:***@127.0.0.1:1 -> 127.0.0.1:53');
    assert.equal(describeProxy({ proxy: 'http://127.0.0.1:1', mode: 'post', postPath: '/dns' }), 'http://127.0.0.1:1 POST /dns');
  });
});

describe('tunnel/transport/proxy-socket: parsePins', () => {
  it('accepts sha256/ and 32 bytes of base64, nothing else', () => {
    const pin = `sha256/${Buffer.alloc(32, 1).toString('base64')}`;
    assert.deepEqual(parsePins([pin]), [pin]);
    for (const bad of ['sha1/AAAA', `sha256/${Buffer.alloc(31).toString('base64')}`, 'AB:CD', `sha256/${Buffer.alloc(32).toString('hex')}`]) {
      assert.throws(() => parsePins([bad]), invalid, bad);
    }
  });
});
