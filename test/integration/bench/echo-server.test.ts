import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import { DEFAULT_MAX_QUEUED_REPLIES, startEchoInWorker, startEchoServer } from '../../../src/bench/echo-server.js';
import type { EchoWorkerData } from '../../helpers/echo-worker.js';

/** Sends `payloads` one at a time from a fresh client and collects each reply. */
async function exchange(host: string, port: number, payloads: Buffer[]): Promise<{ replies: Buffer[]; client: Socket }> {
  const client = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  client.bind(0, host);
  await once(client, 'listening');
  const replies: Buffer[] = [];
  for (const p of payloads) {
    const got = once(client, 'message') as Promise<[Buffer]>;
    client.send(p, port, host);
    const [msg] = await got;
    replies.push(msg);
  }
  return { replies, client };
}

for (const host of ['127.0.0.1', '::1']) {
  describe(`startEchoServer on ${host}`, () => {
    it('echoes each datagram unchanged to its sender and counts it', async () => {
      const echo = await startEchoServer({ host });
      try {
        const a = echo.address();
        assert.equal(a.address, host);
        assert.equal(a.family, host === '::1' ? 'IPv6' : 'IPv4');
        assert.ok(a.port > 0);
        const payloads = [Buffer.from('hello'), Buffer.alloc(0), Buffer.alloc(1400, 0xab)];
        const { replies, client } = await exchange(host, a.port, payloads);
        client.close();
        assert.deepEqual(replies, payloads);
        assert.equal(echo.datagrams, 3);
        assert.equal(echo.bytes, 5 + 0 + 1400);
        assert.equal(echo.errors, 0);
      } finally {
        await echo.close();
      }
    });

    it('answers each of two peers on its own address', async () => {
      const echo = await startEchoServer({ host });
      try {
        const port = echo.address().port;
        const [a, b] = await Promise.all([exchange(host, port, [Buffer.from('from-a')]), exchange(host, port, [Buffer.from('from-b')])]);
        a.client.close();
        b.client.close();
        assert.equal(a.replies[0]!.toString(), 'from-a');
        assert.equal(b.replies[0]!.toString(), 'from-b');
        assert.equal(echo.datagrams, 2);
      } finally {
        await echo.close();
      }
    });
  });
}

describe('startEchoServer errors and lifecycle', () => {
  it('defaults to 127.0.0.1 and a free port', async () => {
    const echo = await startEchoServer();
    assert.equal(echo.address().address, '127.0.0.1');
    assert.ok(echo.address().port > 0);
    await echo.close();
  });

  it('close() can be called twice', async () => {
    const echo = await startEchoServer({ host: '127.0.0.1' });
    await echo.close();
    await echo.close();
  });

  it('reports a port already in use as UT_ERR_IO', async () => {
    const first = await startEchoServer({ host: '127.0.0.1' });
    try {
      await assert.rejects(startEchoServer({ host: '127.0.0.1', port: first.address().port }), (err: unknown) =>
        isUdpTunnelError(err, 'UT_ERR_IO'),
      );
    } finally {
      await first.close();
    }
  });

  it('drops and counts replies beyond maxQueuedReplies', async () => {
    assert.equal(DEFAULT_MAX_QUEUED_REPLIES, 1024);
    const gate = new SharedArrayBuffer(4);
    const data: EchoWorkerData = { maxQueuedReplies: 1, gate };
    // --test-udp-no-try-send makes every reply wait in the socket's queue, as when the kernel buffer is full.
    const worker = new Worker(new URL('../../helpers/echo-worker.js', import.meta.url), { execArgv: ['--test-udp-no-try-send'], workerData: data });
    const exited = once(worker, 'exit');
    const [ready] = (await once(worker, 'message')) as [{ port: number }];
    const client = createSocket('udp4');
    client.bind(0, '127.0.0.1');
    await once(client, 'listening');
    let replies = 0;
    client.on('message', () => replies++);
    // The worker's loop is blocked: the whole burst sits in its socket and is read in one go when released.
    const burst = 100;
    for (let i = 0; i < burst; i++) client.send(Buffer.from(`datagram ${i}`), ready.port, '127.0.0.1');
    await new Promise((resolve) => setImmediate(resolve));
    Atomics.store(new Int32Array(gate), 0, 1);
    Atomics.notify(new Int32Array(gate), 0);
    const stats = async (): Promise<{ datagrams: number; dropped: number; errors: number }> => {
      const got = once(worker, 'message') as Promise<[{ datagrams: number; dropped: number; errors: number }]>;
      worker.postMessage('stats');
      return (await got)[0];
    };
    // Wait (bounded) until the echo has read the whole burst: each datagram is echoed or dropped as it is read, so
    // from then on `dropped` is final and every reply that can ever arrive is one of datagrams - dropped. (Waiting
    // for the replies to pause instead could stop while the worker was descheduled, with more still to read.)
    let s = await stats();
    for (const end = Date.now() + 10_000; s.datagrams < burst && Date.now() < end; s = await stats()) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    worker.postMessage('close');
    await exited;
    client.close();
    assert.ok(s.datagrams > 1, `echo read ${s.datagrams}`);
    assert.ok(s.dropped > 0, 'no reply was dropped');
    assert.ok(s.datagrams <= burst);
    assert.equal(s.errors, 0);
    assert.ok(replies <= s.datagrams - s.dropped, `${replies} replies for ${s.datagrams} datagrams, ${s.dropped} dropped`);
  });

  it('rejects a bad maxQueuedReplies with UT_ERR_INVALID_OPTION', async () => {
    for (const maxQueuedReplies of [0, -1, 1.5]) {
      await assert.rejects(startEchoServer({ host: '127.0.0.1', maxQueuedReplies }), (err: unknown) =>
        isUdpTunnelError(err, 'UT_ERR_INVALID_OPTION'),
      );
    }
  });

  it('rejects an invalid port with UT_ERR_INVALID_OPTION', async () => {
    for (const port of [-1, 65536, 1.5]) {
      await assert.rejects(startEchoServer({ host: '127.0.0.1', port }), (err: unknown) => isUdpTunnelError(err, 'UT_ERR_INVALID_OPTION'));
    }
  });

  it('accepts a bracketed IPv6 literal', async () => {
    const echo = await startEchoServer({ host: '[::1]' });
    assert.equal(echo.address().address, '::1');
    await echo.close();
  });
});

describe('startEchoInWorker', () => {
  it('stats() and close() report the datagrams the worker echoed', async () => {
    const echo = await startEchoInWorker({ host: '127.0.0.1' });
    try {
      const payloads = [Buffer.from('one'), Buffer.from('two'), Buffer.from('three')];
      const { replies, client } = await exchange('127.0.0.1', echo.address.port, payloads);
      client.close();
      assert.equal(replies.length, 3);
      const s = await echo.stats();
      assert.equal(s.datagrams, 3);
      assert.equal(s.bytes, 3 + 3 + 5);
    } finally {
      const closed = await echo.close();
      assert.equal(closed.datagrams, 3);
    }
  });
});
