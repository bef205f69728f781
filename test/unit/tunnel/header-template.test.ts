import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildTransport, parseHeaderFlags } from '../../../src/tunnel/client-config.js';
import { TunnelClient } from '../../../src/tunnel/client.js';
import { ErrorCodes, UdpTunnelError } from '../../../src/tunnel/errors.js';
import { checkHeaderTemplates, expandHeaderTemplates, HEADER_TEMPLATE_NAMES, type DownstreamInfo } from '../../../src/tunnel/header-template.js';

const V4: DownstreamInfo = { remoteAddress: '127.0.0.9', remotePort: 40000, localAddress: '127.0.0.1', localPort: 5353 };
const V6: DownstreamInfo = { remoteAddress: '::1', remotePort: 40001, localAddress: '::1', localPort: 5354 };

const isHeadersError = (err: unknown): boolean => err instanceof UdpTunnelError && err.code === ErrorCodes.INVALID_OPTION && err.details['option'] === 'headers';

describe('tunnel/header-template', () => {
  const cases: [string, DownstreamInfo | undefined, string][] = [
    ['%DOWNSTREAM_REMOTE_ADDRESS%', V4, '127.0.0.9:40000'],
    ['%DOWNSTREAM_REMOTE_ADDRESS%', V6, '[::1]:40001'],
    ['%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%', V6, '::1'],
    ['%DOWNSTREAM_REMOTE_PORT%', V4, '40000'],
    ['%DOWNSTREAM_LOCAL_ADDRESS%', V4, '127.0.0.1:5353'],
    ['%DOWNSTREAM_LOCAL_ADDRESS%', V6, '[::1]:5354'],
    ['%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%', V4, '127.0.0.1'],
    ['%DOWNSTREAM_LOCAL_PORT%', V4, '5353'],
    ['%SESSION_ID%', V4, 's7'],
    ['port=%DOWNSTREAM_LOCAL_PORT%;peer=%DOWNSTREAM_REMOTE_PORT%', V4, 'port=5353;peer=40000'],
    ['100%% sure, %SESSION_ID%%%', V4, '100% sure, s7%'],
    ['%%DOWNSTREAM_LOCAL_PORT%%', V4, '%DOWNSTREAM_LOCAL_PORT%'],
    ['plain value', V4, 'plain value'],
    ['%DOWNSTREAM_LOCAL_PORT%', undefined, ''],
    ['id %SESSION_ID%', undefined, 'id s7'],
  ];
  for (const [value, d, want] of cases) {
    it(`'${value}' ${d ? `for ${d.remoteAddress}` : 'without a downstream'} -> '${want}'`, () => {
      assert.deepEqual(expandHeaderTemplates([['x', value]], 's7', d), [['x', want]]);
    });
  }

  it('documents every name in docs/forwards.md terms: seven names', () => {
    assert.deepEqual([...HEADER_TEMPLATE_NAMES].sort(), [
      'DOWNSTREAM_LOCAL_ADDRESS',
      'DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT',
      'DOWNSTREAM_LOCAL_PORT',
      'DOWNSTREAM_REMOTE_ADDRESS',
      'DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT',
      'DOWNSTREAM_REMOTE_PORT',
      'SESSION_ID',
    ]);
  });

  const bad: [string, RegExp][] = [
    ['%DOWNSTREAM_PORT%', /unknown %DOWNSTREAM_PORT%: use one of %DOWNSTREAM_REMOTE_ADDRESS%/],
    ['%downstream_local_port%', /a lone % at column 1: write %% for a percent sign/],
    ['50%', /a lone % at column 3/],
    ['a%20b', /a lone % at column 2/],
    ['%%%', /a lone % at column 3/],
    ['%REQ(x)%', /a lone % at column 1/],
  ];
  for (const [value, why] of bad) {
    it(`refuses '${value}' with INVALID_OPTION (headers)`, () => {
      assert.throws(() => checkHeaderTemplates([['x', value]]), (err: unknown) => isHeadersError(err) && why.test((err as Error).message));
      assert.throws(() => parseHeaderFlags([`x: ${value}`]), isHeadersError);
    });
  }

  it('unknown names are refused at start: building a transport, making a client', () => {
    assert.throws(() => buildTransport({ proxy: 'http://127.0.0.1:1', target: { host: '127.0.0.1', port: 53 }, headers: [['x', '%NOPE%']] }), isHeadersError);
    const transport = buildTransport({ proxy: 'http://127.0.0.1:1', target: { host: '127.0.0.1', port: 53 } });
    assert.throws(() => new TunnelClient({ host: '127.0.0.1', port: 0, transport, request: { headers: [['x', '%NOPE%']] } }), isHeadersError);
  });
});
