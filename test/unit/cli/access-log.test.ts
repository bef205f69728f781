import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  ACCESS_LOG_FIELDS,
  ACCESS_LOG_MAX_PENDING_BYTES,
  AccessLog,
  compileAccessLogFormat,
  connectSessionRecord,
  proxyOrigin,
  proxyUrlSecrets,
  serveRefusalRecord,
  serveSessionRecord,
  type AccessLogRecord,
} from '../../../src/cli/access-log.js';
import { UsageError } from '../../../src/cli/errors.js';
import type { ClientSessionStats } from '../../../src/tunnel/client.js';
import type { ServerSessionStats } from '../../../src/tunnel/server/tunnel-server.js';

const dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-access-log-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function serverStats(over: Partial<ServerSessionStats> = {}): ServerSessionStats {
  return {
    id: 's7',
    client: '127.0.0.1:50000',
    target: 'localhost:5353',
    resolved: '127.0.0.1',
    transport: 'h1',
    rxDatagrams: 3,
    rxBytes: 300,
    txDatagrams: 2,
    txBytes: 200,
    dropBackpressure: 1,
    dropContextId: 0,
    skippedCapsules: 0,
    dropOversize: 2,
    dropUdpSend: 0,
    dropSendQueue: 0,
    targetUnreachable: 0,
    openedAt: Date.UTC(2026, 0, 2, 3, 4, 5),
    durationMs: 1500,
    closeReason: 'stream-closed',
    ...over,
  };
}

function clientStats(over: Partial<ClientSessionStats> = {}): ClientSessionStats {
  return {
    id: 'c3',
    peer: '127.0.0.1:40000',
    rxDatagrams: 5,
    rxBytes: 50,
    txDatagrams: 4,
    txBytes: 40,
    drops: { oversize: 0, notReady: 1, bufferOverflow: 0, backpressure: 0, unsent: 2, replyFailed: 0, sendQueue: 0, contextId: 0 },
    skippedCapsules: 0,
    connectAttempts: 2,
    status: 403,
    openedAt: Date.UTC(2026, 0, 2, 3, 4, 5),
    readyAfterMs: null,
    durationMs: 20,
    closeReason: 'connect-failed: proxy refused',
    ...over,
  };
}

describe('access log records', () => {
  it('a serve session: HTTP/1.1 answered 101, counts both ways, drops by kind and in all', () => {
    const r = serveSessionRecord(serverStats(), Date.UTC(2026, 0, 2, 3, 4, 7));
    assert.equal(r.start_time, '2026-01-02T03:04:05.000Z');
    assert.equal(r.end_time, '2026-01-02T03:04:07.000Z');
    assert.equal(r.command, 'serve');
    assert.equal(r.http_version, '1.1');
    assert.equal(r.mode, 'connect-udp');
    assert.equal(r.status, 101);
    assert.equal(r.resolved, '127.0.0.1');
    assert.deepEqual([r.rx_datagrams, r.rx_bytes, r.tx_datagrams, r.tx_bytes], [3, 300, 2, 200]);
    assert.deepEqual(r.drops, { oversize: 2, backpressure: 1, context_id: 0, udp_send: 0, send_queue: 0 });
    assert.equal(r.dropped, 3);
    assert.equal(serveSessionRecord(serverStats({ transport: 'post' })).mode, 'post');
    assert.equal(serveSessionRecord(serverStats({ transport: 'h2' })).status, 200);
  });

  it('a serve refusal: status, Proxy-Status error type and the details as close reason', () => {
    const r = serveRefusalRecord({ status: 403, error: 'destination_ip_prohibited', details: 'not allowed', httpVersion: 2, client: '127.0.0.1:1', target: '127.0.0.2:9' });
    assert.equal(r.session, null);
    assert.equal(r.status, 403);
    assert.equal(r.proxy_status, 'destination_ip_prohibited');
    assert.equal(r.target, '127.0.0.2:9');
    assert.equal(r.close_reason, 'refused: not allowed');
    const reset = serveRefusalRecord({ status: null, reset: 'REFUSED_STREAM', error: 'connection_limit_reached', details: 'x', httpVersion: 2, client: 'c' });
    assert.equal(reset.status, null);
    assert.match(reset.close_reason, /^reset REFUSED_STREAM/);
  });

  it('a connect session: the proxy origin, drops in snake_case, attempts and the refusal', () => {
    const ctx = { proxy: 'http://127.0.0.1:4433', target: '127.0.0.1:53', mode: 'connect-udp', transport: 'h1' } as const;
    const r = connectSessionRecord(clientStats(), ctx, 'http_request_denied');
    assert.equal(r.http_version, '1.1');
    assert.equal(r.status, 403);
    assert.equal(r.proxy_status, 'http_request_denied');
    assert.equal(r.connect_attempts, 2);
    assert.equal(r.drops['not_ready'], 1);
    assert.equal(r.drops['unsent'], 2);
    assert.equal(r.dropped, 3);
    assert.equal(r.resolved, null);
  });

  it('proxy URLs lose their userinfo; its password is a secret in both spellings', () => {
    assert.equal(proxyOrigin('https://user:p%40ss@proxy.example:8443/x'), 'https://proxy.example:8443');
    assert.deepEqual(proxyUrlSecrets('https://user:p%40ss@proxy.example:8443'), ['p%40ss', 'p@ss']);
    assert.deepEqual(proxyUrlSecrets('http://127.0.0.1:1'), []);
  });
});

describe('--access-log-format', () => {
  const record: AccessLogRecord = serveSessionRecord(serverStats({ closeReason: 'line\nbreak' }), Date.UTC(2026, 0, 2, 3, 4, 7));

  it('replaces each field, %% by %, absent values by -, control characters by ?', () => {
    const f = compileAccessLogFormat('%CLIENT% -> %TARGET% (%RESOLVED%) %STATUS% %PROXY% 100%% %DROPS% %CLOSE_REASON%');
    assert.equal(f(record), '127.0.0.1:50000 -> localhost:5353 (127.0.0.1) 101 - 100% oversize=2,backpressure=1 line?break');
    assert.equal(compileAccessLogFormat('%DROPS%')(serveSessionRecord(serverStats({ dropOversize: 0, dropBackpressure: 0 }))), '-');
  });

  it('knows every field of the record (each renders, none is left as %NAME%)', () => {
    const all = Object.keys(ACCESS_LOG_FIELDS).map((f) => `%${f}%`).join('|');
    const line = compileAccessLogFormat(all)(record);
    assert.equal(line.split('|').length, Object.keys(ACCESS_LOG_FIELDS).length);
    assert.doesNotMatch(line, /%[A-Z_]+%/);
    // The lowercase field name is the JSON key: the two formats say the same things.
    for (const f of Object.keys(ACCESS_LOG_FIELDS)) assert.ok(f.toLowerCase() in record, f);
  });

  it('refuses an unknown field (suggesting the nearest), a lone %, and a format without a field', () => {
    assert.throws(() => compileAccessLogFormat('%CLIENT% %STAUTS%'), (e: Error) => e instanceof UsageError && /unknown field %STAUTS%; did you mean %STATUS%/.test(e.message));
    assert.throws(() => compileAccessLogFormat('%CLIENT% 50% done'), (e: Error) => e instanceof UsageError && /lone %/.test(e.message));
    assert.throws(() => compileAccessLogFormat('%CLIENT% 50%'), (e: Error) => e instanceof UsageError && /lone %/.test(e.message));
    assert.throws(() => compileAccessLogFormat('plain text'), /names no %FIELD%/);
  });
});

describe('AccessLog', () => {
  it('appends JSON lines to a file it creates with mode 0640', async () => {
    const path = join(dir, 'json.log');
    const log = new AccessLog({ path });
    log.write(serveSessionRecord(serverStats()));
    log.write(serveSessionRecord(serverStats({ id: 's8' })));
    await log.close();
    assert.equal(statSync(path).mode & 0o777, 0o640 & ~process.umask());
    const lines = readFileSync(path, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as AccessLogRecord);
    assert.deepEqual(lines.map((l) => l.session), ['s7', 's8']);
    assert.deepEqual(log.counts, { written: 2, dropped: 0 });
  });

  it('never writes a secret it was given, whatever field carries it', async () => {
    const path = join(dir, 'secret.log');
    const token = 'tok-0123456789abcdef';
    const log = new AccessLog({ path, secrets: [token], format: '%TARGET% %CLOSE_REASON%' });
    log.write(serveSessionRecord(serverStats({ closeReason: `proxy said Bearer ${token}`, target: `${token}.example:53` })));
    await log.close();
    const text = readFileSync(path, 'utf8');
    assert.ok(!text.includes(token), text);
    assert.equal(text, '<redacted>.example:53 proxy said Bearer <redacted>\n');
  });

  it('reopen() after a rename starts a new file by the same name; the old one keeps its lines', async () => {
    const path = join(dir, 'rotate.log');
    const log = new AccessLog({ path, format: '%SESSION%' });
    log.write(serveSessionRecord(serverStats({ id: 's1' })));
    renameSync(path, `${path}.1`);
    log.reopen();
    log.write(serveSessionRecord(serverStats({ id: 's2' })));
    await log.close();
    // The old stream ends after its pending line is written.
    const deadline = Date.now() + 5000;
    while (readFileSync(`${path}.1`, 'utf8') === '' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(readFileSync(`${path}.1`, 'utf8'), 's1\n');
    assert.equal(readFileSync(path, 'utf8'), 's2\n');
  });

  it(`drops and counts lines beyond ${ACCESS_LOG_MAX_PENDING_BYTES} bytes waiting to be written`, async () => {
    const path = join(dir, 'pending.log');
    const log = new AccessLog({ path });
    const big = 'x'.repeat(16 * 1024);
    const total = Math.ceil((2 * ACCESS_LOG_MAX_PENDING_BYTES) / big.length);
    // One synchronous burst: nothing reaches the file before the loop ends, so the buffer must hit its bound.
    for (let i = 0; i < total; i++) log.write(serveSessionRecord(serverStats({ closeReason: big })));
    assert.ok(log.counts.dropped > 0, `dropped ${log.counts.dropped}`);
    await log.close();
    assert.equal(log.counts.written + log.counts.dropped, total);
    assert.equal(readFileSync(path, 'utf8').trim().split('\n').length, log.counts.written);
  });

  it('a file that cannot be opened is a usage error naming --access-log', () => {
    assert.throws(() => new AccessLog({ path: join(dir, 'no', 'such', 'dir.log') }), (e: Error) => e instanceof UsageError && /--access-log .*no[/]such/.test(e.message));
  });

  it('a full disk (/dev/full): lines are dropped and counted, once reported, and writing never throws', { skip: !existsSync('/dev/full') }, async () => {
    const problems: string[] = [];
    const log = new AccessLog({ path: '/dev/full', onProblem: (m) => problems.push(m) });
    for (let i = 0; i < 5; i++) log.write(serveSessionRecord(serverStats()));
    const deadline = Date.now() + 5000;
    while (log.counts.dropped < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (let i = 0; i < 3; i++) log.write(serveSessionRecord(serverStats()));
    await log.close();
    assert.equal(log.counts.written, 0);
    assert.equal(log.counts.dropped, 8);
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /ENOSPC/);
  });
});
