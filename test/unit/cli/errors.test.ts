import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EXIT_FAILURE, EXIT_USAGE, UsageError, describeError, exitCodeFor, flagFor, flagMessage } from '../../../src/cli/errors.js';
import { ErrorCodes, UdpTunnelError, type ErrorCode } from '../../../src/tunnel/errors.js';
import { readErrorsDoc } from '../../helpers/errors-doc.js';

describe('exit codes', () => {
  it('docs/errors.md gives each code the exit code the CLI maps it to', () => {
    const rows = readErrorsDoc().rows;
    assert.equal(rows.length, Object.values(ErrorCodes).length);
    for (const row of rows) assert.equal(row.exit, String(exitCodeFor(row.code as ErrorCode)), row.code);
  });

  it('bad options, addresses, templates and inspect input exit 2; everything else 1', () => {
    for (const code of [ErrorCodes.INVALID_OPTION, ErrorCodes.INVALID_ADDRESS, ErrorCodes.INVALID_TEMPLATE, ErrorCodes.INVALID_INPUT]) {
      assert.equal(exitCodeFor(code), EXIT_USAGE, code);
    }
    for (const code of [ErrorCodes.TUNNEL_REFUSED, ErrorCodes.IO, ErrorCodes.BENCH_FAIL_IF, ErrorCodes.INSPECT_MALFORMED]) {
      assert.equal(exitCodeFor(code), EXIT_FAILURE, code);
    }
  });
});

describe('flagFor', () => {
  it('turns a library option name into its flag: kebab-case, without a trailing Ms', () => {
    assert.equal(flagFor('maxDatagram'), '--max-datagram');
    assert.equal(flagFor('maxUdpSendQueue'), '--max-udp-send-queue');
    assert.equal(flagFor('idleTimeoutMs'), '--idle-timeout');
    assert.equal(flagFor('proxy'), '--proxy');
    assert.equal(flagFor('failIf'), '--fail-if');
  });

  it('uses the exceptions table where the flag is named otherwise', () => {
    assert.equal(flagFor('headers'), '-H');
    assert.equal(flagFor('tls.pins'), '--pin');
    assert.equal(flagFor('postRoutes'), '--post-route');
    assert.equal(flagFor('maxCapsuleLength'), '--max-capsule');
    assert.equal(flagFor('direct: false'), '--no-direct');
  });

  it('leaves flags and unknown dotted names alone', () => {
    assert.equal(flagFor('--idle-timeout'), '--idle-timeout');
    assert.equal(flagFor('target.host'), 'target.host');
  });
});

describe('flagMessage', () => {
  it('shows details.option as its flag', () => {
    const e = new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'maxDatagram must be 0..65527 (RFC 9298 §5)', { option: 'maxDatagram', value: 70000 });
    assert.equal(flagMessage(e), '--max-datagram must be 0..65527 (RFC 9298 §5)');
  });

  it('shows details.related as flags too, each at its first mention', () => {
    const e = new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'proxy and target go together: the target is the UDP echo the external proxy reaches', {
      option: 'target',
      related: ['proxy'],
    });
    assert.equal(flagMessage(e), '--proxy and --target go together: the target is the UDP echo the external proxy reaches');
  });

  it('does not touch a name inside a URL, a longer word or a dotted name', () => {
    const url = new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'proxy must use http:// (cleartext h2c) or https:// (TLS), not ftp: (http 1.1 is fine)', {
      option: 'proxy',
      related: ['http'],
    });
    assert.equal(flagMessage(url), '--proxy must use http:// (cleartext h2c) or https:// (TLS), not ftp: (--http 1.1 is fine)');
    const word = new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'tokens token68 token must be set', { option: 'token' });
    assert.equal(flagMessage(word), 'tokens token68 --token must be set');
  });

  it('leaves a message without option details as it is', () => {
    const e = new UdpTunnelError(ErrorCodes.TIMEOUT, 'no response from proxy within 10 ms', { timeoutMs: 10 });
    assert.equal(flagMessage(e), 'no response from proxy within 10 ms');
  });
});

describe('describeError', () => {
  it('maps a coded error to its exit code and a one-line message with flags and the code', () => {
    const e = new UdpTunnelError(ErrorCodes.INVALID_OPTION, "tls.pins 'sha1/abc': expected sha256/BASE64", { option: 'tls.pins', value: 'sha1/abc' });
    assert.deepEqual(describeError(e), { code: EXIT_USAGE, message: "--pin 'sha1/abc': expected sha256/BASE64 [UT_ERR_INVALID_OPTION]" });
    const io = new UdpTunnelError(ErrorCodes.IO, 'echo worker failed');
    assert.deepEqual(describeError(io), { code: EXIT_FAILURE, message: 'echo worker failed [UT_ERR_IO]' });
  });

  it('shows the flag for a core message a command rethrew as a UsageError', () => {
    assert.deepEqual(describeError(new UsageError('maxDatagram must be 0..65527 (RFC 9298 §5)')), {
      code: EXIT_USAGE,
      message: '--max-datagram must be 0..65527 (RFC 9298 §5)',
    });
    assert.deepEqual(describeError(new UsageError('the relay needs --upstream URL')), { code: EXIT_USAGE, message: 'the relay needs --upstream URL' });
  });
});
