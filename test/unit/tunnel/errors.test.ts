import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ErrorCodes, RETRYABLE_BY_DEFAULT, UdpTunnelError, isUdpTunnelError, type ErrorCode } from '../../../src/tunnel/errors.js';
import { readErrorsDoc } from '../../helpers/errors-doc.js';

const CODES: ErrorCode[] = Object.values(ErrorCodes);
const sorted = (xs: Iterable<string>): string[] => [...xs].sort();

describe('docs/errors.md covers every error code', () => {
  const doc = readErrorsDoc();

  it('has one section per code, no more', () => {
    assert.ok(doc.headings.length > 0, 'the document has code headings');
    assert.deepEqual(sorted(doc.headings), sorted(CODES));
    assert.equal(new Set(doc.headings).size, doc.headings.length, 'no code has two sections');
  });

  it('has one summary row per code, no more', () => {
    assert.deepEqual(sorted(doc.rows.map((r) => r.code)), sorted(CODES));
    assert.equal(new Set(doc.rows.map((r) => r.code)).size, doc.rows.length, 'no code has two rows');
  });

  it('names no code that does not exist', () => {
    const unknown = [...doc.mentioned].filter((c) => !(CODES as string[]).includes(c));
    assert.deepEqual(unknown, []);
  });

  it('states the default retryable of each code as RETRYABLE_BY_DEFAULT has it', () => {
    for (const row of doc.rows) {
      const said = /^(yes|no)\b/.exec(row.retryable)?.[1];
      assert.ok(said !== undefined, `${row.code}: retryable cell '${row.retryable}' starts with yes or no`);
      assert.equal(said === 'yes', RETRYABLE_BY_DEFAULT[row.code as ErrorCode], row.code);
    }
  });
});

describe('RETRYABLE_BY_DEFAULT', () => {
  it('has a boolean for every code and nothing else', () => {
    assert.deepEqual(sorted(Object.keys(RETRYABLE_BY_DEFAULT)), sorted(CODES));
    for (const code of CODES) assert.equal(typeof RETRYABLE_BY_DEFAULT[code], 'boolean', code);
  });

  it('retries what another attempt can fix: timeouts, unreachable proxies, failed set-ups; not refusals or bad input', () => {
    assert.equal(RETRYABLE_BY_DEFAULT[ErrorCodes.TIMEOUT], true);
    assert.equal(RETRYABLE_BY_DEFAULT[ErrorCodes.PROXY_UNREACHABLE], true);
    assert.equal(RETRYABLE_BY_DEFAULT[ErrorCodes.TUNNEL_FAILED], true);
    for (const code of [ErrorCodes.TUNNEL_REFUSED, ErrorCodes.AUTH_REQUIRED, ErrorCodes.TLS, ErrorCodes.CLOSED, ErrorCodes.INVALID_OPTION]) {
      assert.equal(RETRYABLE_BY_DEFAULT[code], false, code);
    }
  });
});

describe('UdpTunnelError', () => {
  it('takes retryable from the table unless the constructor says otherwise', () => {
    for (const code of CODES) {
      const e = new UdpTunnelError(code as ErrorCode, 'x', {});
      assert.equal(e.retryable, RETRYABLE_BY_DEFAULT[code], code);
    }
    const refused = new UdpTunnelError(ErrorCodes.TUNNEL_REFUSED, 'proxy refused: HTTP 503', { status: 503 }, { retryable: true });
    assert.equal(refused.retryable, true);
    const malformed = new UdpTunnelError(ErrorCodes.TUNNEL_FAILED, 'bad head', {}, { retryable: false });
    assert.equal(malformed.retryable, false);
  });

  it('keeps code, message, details and cause; details default to an empty object', () => {
    const cause = new Error('ECONNREFUSED');
    const e = new UdpTunnelError(ErrorCodes.PROXY_UNREACHABLE, 'cannot reach proxy', { osCode: 'ECONNREFUSED' }, { cause });
    assert.equal(e.name, 'UdpTunnelError');
    assert.equal(e.code, 'UT_ERR_PROXY_UNREACHABLE');
    assert.equal(e.message, 'cannot reach proxy');
    assert.deepEqual(e.details, { osCode: 'ECONNREFUSED' });
    assert.equal(e.cause, cause);
    assert.ok(e instanceof Error);
    const bare = new UdpTunnelError(ErrorCodes.CLOSED, 'client is closing');
    assert.deepEqual(bare.details, {});
    assert.equal('cause' in bare, false);
  });

  it('isUdpTunnelError matches the class, and the code when given', () => {
    const e: unknown = new UdpTunnelError(ErrorCodes.INVALID_OPTION, 'maxDatagram must be 0..65527', { option: 'maxDatagram', value: 70000 });
    assert.ok(isUdpTunnelError(e));
    assert.ok(isUdpTunnelError(e, ErrorCodes.INVALID_OPTION));
    assert.equal(isUdpTunnelError(e, ErrorCodes.IO), false);
    assert.equal(isUdpTunnelError(new Error('x')), false);
    // Narrowed by the code: details are typed, so this compiles without a cast.
    if (isUdpTunnelError(e, ErrorCodes.INVALID_OPTION)) assert.equal(e.details.option, 'maxDatagram');
  });
});
