import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import yargs from 'yargs';
import type { Argv, CommandModule } from 'yargs';
import { BENCH_DEFAULTS, DEFAULT_BENCH_INFLIGHT } from '../../../src/bench/harness.js';
import { DEMO_TRAFFIC_DEFAULTS } from '../../../src/bench/demo.js';
import { benchCommand } from '../../../src/cli/commands/bench.js';
import { connectCommand } from '../../../src/cli/commands/connect.js';
import { demoCommand } from '../../../src/cli/commands/demo.js';
import { inspectCommand } from '../../../src/cli/commands/inspect.js';
import { serveCommand } from '../../../src/cli/commands/serve.js';
import { formatDuration, formatSize } from '../../../src/cli/format-units.js';
import { DEFAULT_PREVIEW_BYTES } from '../../../src/inspect/capsule-view.js';
import { RELAY_DEFAULTS } from '../../../src/inspect/relay.js';
import { CLIENT_DEFAULTS } from '../../../src/tunnel/client.js';
import { PROXY_CONFIG_DEFAULTS } from '../../../src/tunnel/client-config.js';
import { DEFAULT_MAX_CAPSULE_LENGTH } from '../../../src/tunnel/codec/capsule-decoder.js';
import { SERVER_DEFAULTS } from '../../../src/tunnel/server/tunnel-server.js';
import { parseDuration, parseSize } from '../../../src/tunnel/units.js';

/** The values a command's flags take when only `args` are given: its builder, parsed without running the handler. */
function flagsOf<T>(command: CommandModule<object, T>, args: string[] = []): Record<string, unknown> {
  const builder = command.builder as unknown as (y: Argv) => Argv;
  return builder(yargs(args).exitProcess(false)).parseSync() as Record<string, unknown>;
}

/** [flag, how its text is read, the library default it must equal]. */
type Expectation = [flag: string, kind: 'duration' | 'size' | 'value', expected: unknown];

function assertDefaults(flags: Record<string, unknown>, expectations: Expectation[]): void {
  for (const [flag, kind, expected] of expectations) {
    const raw = flags[flag];
    const value = kind === 'duration' ? parseDuration(raw as string, flag) : kind === 'size' ? parseSize(raw as string, flag) : raw;
    assert.equal(value, expected, `--${flag} defaults to ${String(raw)}, the library's default is ${String(expected)}`);
  }
}

describe('formatDuration and formatSize', () => {
  it('write values as a user would type them', () => {
    assert.deepEqual([0, 100, 500, 1000, 60_000, 120_000, 1500].map(formatDuration), ['0s', '100ms', '500ms', '1s', '60s', '120s', '1500ms']);
    assert.deepEqual([0, 1500, 16 * 1024, 256 * 1024, 65_552, 4 * 1024 * 1024].map(formatSize), ['0', '1500', '16k', '256k', '65552', '4m']);
  });

  it('round-trip through parseDuration and parseSize', () => {
    for (const ms of [0, 1, 0.5, 100, 999, 1000, 1001, 10_000, 86_400_000]) assert.equal(parseDuration(formatDuration(ms), 'd'), ms);
    for (const bytes of [0, 1, 1023, 1024, 1025, 65_527, 65_552, 1024 * 1024, 3 * 1024 * 1024 + 1]) assert.equal(parseSize(formatSize(bytes), 's'), bytes);
  });

  it('refuse what is not a duration or a size', () => {
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) assert.throws(() => formatDuration(bad), RangeError);
    for (const bad of [-1, 1.5, Number.NaN]) assert.throws(() => formatSize(bad), RangeError);
  });
});

describe('command defaults are the library defaults', () => {
  it('connect: CLIENT_DEFAULTS and PROXY_CONFIG_DEFAULTS', () => {
    assertDefaults(flagsOf(connectCommand, ['--proxy', 'http://127.0.0.1:1']), [
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
    assertDefaults(flagsOf(serveCommand), [
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
    assert.equal(flagsOf(serveCommand)['max-sessions-per-connection'], undefined, 'unset, so the server derives it from --max-streams');
  });

  it('inspect: RELAY_DEFAULTS and the decoder defaults', () => {
    assertDefaults(flagsOf(inspectCommand), [
      ['connect-timeout', 'duration', RELAY_DEFAULTS.connectTimeoutMs],
      ['max-connections', 'value', RELAY_DEFAULTS.maxConnections],
      ['head-timeout', 'duration', RELAY_DEFAULTS.headTimeoutMs],
      ['bytes', 'value', DEFAULT_PREVIEW_BYTES],
      ['max-capsule', 'size', DEFAULT_MAX_CAPSULE_LENGTH],
    ]);
  });

  it('bench: BENCH_DEFAULTS', () => {
    assertDefaults(flagsOf(benchCommand), [
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
    assertDefaults(flagsOf(demoCommand), [
      ['peers', 'value', DEMO_TRAFFIC_DEFAULTS.peers],
      ['count', 'value', DEMO_TRAFFIC_DEFAULTS.count],
      ['size', 'value', DEMO_TRAFFIC_DEFAULTS.size],
    ]);
  });
});
