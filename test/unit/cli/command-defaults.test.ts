import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BENCH_DEFAULTS, DEFAULT_BENCH_INFLIGHT } from '../../../src/bench/harness.js';
import { DEMO_TRAFFIC_DEFAULTS } from '../../../src/bench/demo.js';
import { readValue, showDuration, showSize, readDuration, readSize, type CommandSchema } from '../../../src/cli/options/spec.js';
import { BENCH_SCHEMA } from '../../../src/cli/schemas/bench.js';
import { CONNECT_SCHEMA } from '../../../src/cli/schemas/connect.js';
import { DEMO_SCHEMA } from '../../../src/cli/schemas/demo.js';
import { INSPECT_SCHEMA } from '../../../src/cli/schemas/inspect.js';
import { SERVE_SCHEMA } from '../../../src/cli/schemas/serve.js';
import { DEFAULT_PREVIEW_BYTES } from '../../../src/inspect/capsule-view.js';
import { RELAY_DEFAULTS } from '../../../src/inspect/relay.js';
import { CLIENT_DEFAULTS } from '../../../src/tunnel/client.js';
import { PROXY_CONFIG_DEFAULTS } from '../../../src/tunnel/client-config.js';
import { DEFAULT_MAX_CAPSULE_LENGTH } from '../../../src/tunnel/codec/capsule-decoder.js';
import { SERVER_DEFAULTS } from '../../../src/tunnel/server/tunnel-server.js';

/** The values a command's options take by default, read through the same value readers as typed text. */
function flagsOf(schema: CommandSchema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const spec of schema.options) {
    const d = spec.default ?? (spec.kind === 'boolean' ? false : undefined);
    if (d !== undefined) out[spec.name] = readValue(spec, d);
  }
  return out;
}

/** [flag, the library default it must equal]. */
type Expectation = [flag: string, kind: 'duration' | 'size' | 'value', expected: unknown];

function assertDefaults(flags: Record<string, unknown>, expectations: Expectation[]): void {
  for (const [flag, , expected] of expectations) {
    assert.equal(flags[flag], expected, `--${flag} defaults to ${String(flags[flag])}, the library's default is ${String(expected)}`);
  }
}

describe('showDuration and showSize', () => {
  it('write values as a user would type them', () => {
    assert.deepEqual([0, 100, 500, 1000, 60_000, 120_000, 1500, 3_600_000].map(showDuration), ['0s', '100ms', '500ms', '1s', '1m', '2m', '1500ms', '1h']);
    assert.deepEqual([0, 1500, 16 * 1024, 256 * 1024, 65_552, 4 * 1024 * 1024].map(showSize), ['0', '1500', '16KiB', '256KiB', '65552', '4MiB']);
  });

  it('round-trip through readDuration and readSize', () => {
    for (const ms of [0, 1, 0.5, 100, 999, 1000, 1001, 10_000, 86_400_000]) assert.equal(readDuration(showDuration(ms)), ms);
    for (const bytes of [0, 1, 1023, 1024, 1025, 65_527, 65_552, 1024 * 1024, 3 * 1024 * 1024 + 1]) assert.equal(readSize(showSize(bytes)), bytes);
  });
});

describe('command defaults are the library defaults', () => {
  it('connect: CLIENT_DEFAULTS and PROXY_CONFIG_DEFAULTS', () => {
    assertDefaults(flagsOf(CONNECT_SCHEMA), [
      ['http', 'value', PROXY_CONFIG_DEFAULTS.http],
      ['mode', 'value', PROXY_CONFIG_DEFAULTS.mode],
      ['post-path', 'value', PROXY_CONFIG_DEFAULTS.postPath],
      ['connect-timeout', 'duration', PROXY_CONFIG_DEFAULTS.connectTimeoutMs],
      ['idle-timeout', 'duration', CLIENT_DEFAULTS.idleTimeoutMs],
      ['buffer', 'value', CLIENT_DEFAULTS.buffer.enabled],
      ['max-buffered-datagrams', 'value', CLIENT_DEFAULTS.buffer.maxDatagrams],
      ['max-buffered-bytes', 'value', CLIENT_DEFAULTS.buffer.maxBytes],
      ['max-connect-attempts', 'value', CLIENT_DEFAULTS.maxConnectAttempts],
      ['backoff-base', 'duration', CLIENT_DEFAULTS.backoff.baseMs],
      ['max-datagram', 'value', CLIENT_DEFAULTS.maxDatagram],
      ['max-sessions', 'value', CLIENT_DEFAULTS.maxSessions],
      ['max-udp-send-queue', 'value', CLIENT_DEFAULTS.maxUdpSendQueue],
    ]);
    // Without --backoff-max the command uses 10 x --backoff-base, which is the library's own default pair.
    assert.equal(CLIENT_DEFAULTS.backoff.maxMs, 10 * CLIENT_DEFAULTS.backoff.baseMs);
  });

  it('serve: SERVER_DEFAULTS', () => {
    assertDefaults(flagsOf(SERVE_SCHEMA), [
      ['idle-timeout', 'duration', SERVER_DEFAULTS.idleTimeoutMs],
      ['max-sessions', 'value', SERVER_DEFAULTS.maxSessions],
      ['max-streams', 'value', SERVER_DEFAULTS.maxStreamsPerConnection],
      ['max-sessions-per-client', 'value', SERVER_DEFAULTS.maxSessionsPerClient],
      ['max-auth-failures-per-connection', 'value', SERVER_DEFAULTS.maxAuthFailuresPerConnection],
      ['auth-failure-burst', 'value', SERVER_DEFAULTS.authFailureBurst],
      ['auth-failure-rate', 'value', SERVER_DEFAULTS.authFailureRefillPerSecond],
      ['max-auth-failure-entries', 'value', SERVER_DEFAULTS.maxAuthFailureEntries],
      ['max-capsule', 'size', SERVER_DEFAULTS.maxCapsuleLength],
      ['max-datagram', 'value', SERVER_DEFAULTS.maxDatagram],
      ['max-stream-buffer', 'size', SERVER_DEFAULTS.maxStreamBuffer],
      ['max-udp-send-queue', 'value', SERVER_DEFAULTS.maxUdpSendQueue],
      ['header-timeout', 'duration', SERVER_DEFAULTS.headerTimeoutMs],
      ['connection-idle-timeout', 'duration', SERVER_DEFAULTS.connectionIdleTimeoutMs],
      ['max-connections', 'value', SERVER_DEFAULTS.maxConnections],
      ['max-header-size', 'size', SERVER_DEFAULTS.maxHeaderSize],
      ['dns-timeout', 'duration', SERVER_DEFAULTS.dnsTimeoutMs],
    ]);
    assert.equal(flagsOf(SERVE_SCHEMA)['max-sessions-per-connection'], undefined, 'unset, so the server derives it from --max-streams');
  });

  it('inspect: RELAY_DEFAULTS and the decoder defaults', () => {
    assertDefaults(flagsOf(INSPECT_SCHEMA), [
      ['connect-timeout', 'duration', RELAY_DEFAULTS.connectTimeoutMs],
      ['max-connections', 'value', RELAY_DEFAULTS.maxConnections],
      ['head-timeout', 'duration', RELAY_DEFAULTS.headTimeoutMs],
      ['bytes', 'value', DEFAULT_PREVIEW_BYTES],
      ['max-capsule', 'size', DEFAULT_MAX_CAPSULE_LENGTH],
    ]);
  });

  it('bench: BENCH_DEFAULTS', () => {
    assertDefaults(flagsOf(BENCH_SCHEMA), [
      ['size', 'value', BENCH_DEFAULTS.size],
      ['sessions', 'value', BENCH_DEFAULTS.sessions],
      ['duration', 'duration', BENCH_DEFAULTS.durationMs],
      ['warmup', 'duration', BENCH_DEFAULTS.warmupMs],
      ['drain', 'duration', BENCH_DEFAULTS.drainMs],
      ['timeout', 'duration', BENCH_DEFAULTS.timeoutMs],
      ['runs', 'value', BENCH_DEFAULTS.runs],
      ['tls', 'value', BENCH_DEFAULTS.tls],
      ['mode', 'value', BENCH_DEFAULTS.mode],
      ['isolation', 'value', BENCH_DEFAULTS.isolation],
      ['host', 'value', BENCH_DEFAULTS.host],
      ['direct', 'value', BENCH_DEFAULTS.direct],
      ['idle-sessions', 'value', BENCH_DEFAULTS.idleSessions],
    ]);
    assert.deepEqual(BENCH_DEFAULTS.load, { kind: 'inflight', inflight: DEFAULT_BENCH_INFLIGHT });
  });

  it('demo: DEMO_TRAFFIC_DEFAULTS', () => {
    assertDefaults(flagsOf(DEMO_SCHEMA), [
      ['peers', 'value', DEMO_TRAFFIC_DEFAULTS.peers],
      ['count', 'value', DEMO_TRAFFIC_DEFAULTS.count],
      ['size', 'value', DEMO_TRAFFIC_DEFAULTS.size],
    ]);
  });
});
