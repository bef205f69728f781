import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { Authenticator, type AuthResult } from '../../../src/tunnel/auth.js';

// The pure Authenticator tests are in test/unit/tunnel/auth.test.ts; these feed it what real Node servers hand over.
const TOKEN = 'tok-3f9a.b_c~d+e/f==';
const MISSING: AuthResult = { ok: false, reason: 'missing' };
const INVALID: AuthResult = { ok: false, reason: 'invalid' };

describe('tunnel/auth: Authenticator with real Node servers (duplicate headers)', () => {
  const auth = new Authenticator({ tokens: [TOKEN] });

  it('HTTP/1.1: raw headers and headersDistinct expose a duplicate that req.headers hides', async () => {
    const seen: Array<{ raw: AuthResult; distinct: AuthResult; folded: AuthResult }> = [];
    const server = http.createServer((req, res) => {
      seen.push({ raw: auth.check(req.rawHeaders), distinct: auth.check(req.headersDistinct), folded: auth.check(req.headers) });
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    try {
      await new Promise<void>((resolve, reject) => {
        const sock = net.connect(port, '127.0.0.1', () => {
          sock.end(
            'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
              `Authorization: Bearer ${TOKEN}\r\nAuthorization: Bearer other\r\nConnection: close\r\n\r\n`,
          );
        });
        sock.on('error', reject);
        sock.resume();
        sock.on('close', () => resolve());
      });
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    assert.deepEqual(seen, [{ raw: INVALID, distinct: INVALID, folded: { ok: true } }]);
  });

  it('HTTP/2: raw headers from the stream event', async () => {
    const seen: AuthResult[] = [];
    const server = http2.createServer();
    // The fourth 'stream' argument (raw headers) is missing from the @types/node 20 signature.
    const onStream = (stream: http2.ServerHttp2Stream, _h: unknown, _f: unknown, rawHeaders: string[]): void => {
      seen.push(auth.check(rawHeaders));
      stream.respond({ ':status': 204 });
      stream.end();
    };
    server.on('stream', onStream as (stream: http2.ServerHttp2Stream) => void);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const client = http2.connect(`http://127.0.0.1:${port}`);
    const send = (headers: http2.OutgoingHttpHeaders): Promise<void> =>
      new Promise((resolve, reject) => {
        const req = client.request({ ':path': '/', ...headers });
        req.on('error', reject);
        req.resume();
        req.on('close', () => resolve());
        req.end();
      });
    try {
      await send({ 'proxy-authorization': `Bearer ${TOKEN}` });
      await send({ authorization: `Bearer ${TOKEN}`, 'proxy-authorization': `Bearer ${TOKEN}` });
      await send({});
    } finally {
      await new Promise<void>((resolve) => client.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    assert.deepEqual(seen, [{ ok: true }, INVALID, MISSING]);
  });
});
