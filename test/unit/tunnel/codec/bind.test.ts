import { Buffer } from 'node:buffer';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ErrorCodes, UdpTunnelError } from '../../../../src/tunnel/errors.js';
import { capsuleTypeName } from '../../../../src/tunnel/codec/capsule.js';
import {
  CAPSULE_TYPE_COMPRESSION_ACK,
  CAPSULE_TYPE_COMPRESSION_ASSIGN,
  CAPSULE_TYPE_COMPRESSION_CLOSE,
  MAX_BIND_HEADER_LENGTH,
  MAX_PUBLIC_ADDRESSES,
  decodeCompressionAck,
  decodeCompressionAssign,
  decodeCompressionClose,
  decodeUncompressedDatagram,
  encodeCompressionAck,
  encodeCompressionAssign,
  encodeCompressionClose,
  encodeUncompressedDatagram,
  formatConnectUdpBind,
  formatIp,
  formatProxyPublicAddress,
  parseConnectUdpBind,
  parseIpv6,
  parseProxyPublicAddress,
  type BindTarget,
  type CompressionAssign,
} from '../../../../src/tunnel/codec/bind.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function bindError(rule: string): (err: unknown) => boolean {
  return (err: unknown) => {
    assert.ok(err instanceof UdpTunnelError, `a UdpTunnelError, got ${String(err)}`);
    assert.equal(err.code, ErrorCodes.BIND_MALFORMED);
    assert.equal(err.details['rule'], rule, err.message);
    assert.match(String(err.details['rfc']), /^draft-ietf-masque-connect-udp-listen §/);
    return true;
  };
}

describe('bind capsule types', () => {
  it('are 0x11, 0x12, 0x13 and capsuleTypeName names them', () => {
    assert.deepEqual([CAPSULE_TYPE_COMPRESSION_ASSIGN, CAPSULE_TYPE_COMPRESSION_ACK, CAPSULE_TYPE_COMPRESSION_CLOSE], [0x11, 0x12, 0x13]);
    assert.equal(capsuleTypeName(0x11), 'COMPRESSION_ASSIGN');
    assert.equal(capsuleTypeName(0x12n), 'COMPRESSION_ACK');
    assert.equal(capsuleTypeName(0x13), 'COMPRESSION_CLOSE');
    assert.equal(capsuleTypeName(0x14), 'UNKNOWN 0x14');
  });
});

describe('COMPRESSION_ASSIGN', () => {
  it('encodes the three forms byte for byte', () => {
    assert.deepEqual(encodeCompressionAssign({ contextId: 2, ipVersion: 0 }), hex('02 00'));
    assert.deepEqual(encodeCompressionAssign({ contextId: 4, ipVersion: 4, address: '192.0.2.7', port: 443 }), hex('04 04 c0000207 01bb'));
    assert.deepEqual(
      encodeCompressionAssign({ contextId: 64, ipVersion: 6, address: '2001:db8::1', port: 65535 }),
      hex('4040 06 20010db8000000000000000000000001 ffff'),
    );
  });

  it('decodes them back', () => {
    assert.deepEqual(decodeCompressionAssign(hex('02 00')), { contextId: 2, ipVersion: 0 });
    assert.deepEqual(decodeCompressionAssign(hex('04 04 c0000207 01bb')), { contextId: 4, ipVersion: 4, address: '192.0.2.7', port: 443 });
    assert.deepEqual(decodeCompressionAssign(hex('4040 06 20010db8000000000000000000000001 ffff')), {
      contextId: 64,
      ipVersion: 6,
      address: '2001:db8::1',
      port: 65535,
    });
  });

  it('refuses every malformed form', () => {
    assert.throws(() => decodeCompressionAssign(hex('')), bindError('short'));
    assert.throws(() => decodeCompressionAssign(hex('40')), bindError('short'));
    assert.throws(() => decodeCompressionAssign(hex('02')), bindError('short'));
    assert.throws(() => decodeCompressionAssign(hex('00 00')), bindError('zero-id'));
    assert.throws(() => decodeCompressionAssign(hex('02 05 c0000207 01bb')), bindError('ip-version'));
    assert.throws(() => decodeCompressionAssign(hex('02 04 c0000207 01')), bindError('short'));
    assert.throws(() => decodeCompressionAssign(hex('02 06 c0000207 01bb')), bindError('short'));
    assert.throws(() => decodeCompressionAssign(hex('02 00 00')), bindError('trailing'));
    assert.throws(() => decodeCompressionAssign(hex('02 04 c0000207 01bb 00')), bindError('trailing'));
    assert.throws(() => decodeCompressionAssign(hex('ffffffffffffffff 00')), bindError('id-range'));
  });

  it('refuses to encode what does not fit', () => {
    assert.throws(() => encodeCompressionAssign({ contextId: 0, ipVersion: 0 }), bindError('zero-id'));
    assert.throws(() => encodeCompressionAssign({ contextId: 2, ipVersion: 4, address: '2001:db8::1', port: 1 }), bindError('address'));
    assert.throws(() => encodeCompressionAssign({ contextId: 2, ipVersion: 6, address: '192.0.2.1', port: 1 }), bindError('address'));
    assert.throws(() => encodeCompressionAssign({ contextId: 2, ipVersion: 4, address: '192.0.2.1', port: 65536 }), bindError('port'));
  });
});

describe('COMPRESSION_ACK and COMPRESSION_CLOSE', () => {
  it('round-trip a context ID', () => {
    for (const id of [1, 2, 63, 64, 16383, 16384, 2 ** 30, Number.MAX_SAFE_INTEGER]) {
      assert.equal(decodeCompressionAck(encodeCompressionAck(id)), id);
      assert.equal(decodeCompressionClose(encodeCompressionClose(id)), id);
    }
    assert.deepEqual(encodeCompressionClose(3), hex('03'));
  });

  it('refuse an empty value, ID 0 and trailing bytes', () => {
    for (const decode of [decodeCompressionAck, decodeCompressionClose]) {
      assert.throws(() => decode(hex('')), bindError('short'));
      assert.throws(() => decode(hex('80 00')), bindError('short'));
      assert.throws(() => decode(hex('00')), bindError('zero-id'));
      assert.throws(() => decode(hex('4000')), bindError('zero-id'));
      assert.throws(() => decode(hex('02 00')), bindError('trailing'));
    }
    assert.throws(() => encodeCompressionClose(0), bindError('zero-id'));
    assert.throws(() => encodeCompressionAck(-1), bindError('id-range'));
  });
});

describe('uncompressed datagrams', () => {
  it('round-trip IPv4 and IPv6 with any payload, empty included', () => {
    const v4 = encodeUncompressedDatagram({ ipVersion: 4, address: '127.0.0.1', port: 5353 }, Buffer.from('hi'));
    assert.deepEqual(v4, hex('04 7f000001 14e9 6869'));
    const d4 = decodeUncompressedDatagram(v4);
    assert.deepEqual({ ...d4, payload: d4.payload.toString() }, { ipVersion: 4, address: '127.0.0.1', port: 5353, payload: 'hi' });
    const d6 = decodeUncompressedDatagram(encodeUncompressedDatagram({ ipVersion: 6, address: '::1', port: 1 }, Buffer.alloc(0)));
    assert.deepEqual({ ...d6, payload: d6.payload.length }, { ipVersion: 6, address: '::1', port: 1, payload: 0 });
  });

  it('refuse IP version 0 or 5 and short headers', () => {
    assert.throws(() => decodeUncompressedDatagram(hex('')), bindError('short'));
    assert.throws(() => decodeUncompressedDatagram(hex('00 7f000001 14e9')), bindError('ip-version'));
    assert.throws(() => decodeUncompressedDatagram(hex('05 7f000001 14e9')), bindError('ip-version'));
    assert.throws(() => decodeUncompressedDatagram(hex('04 7f000001 14')), bindError('short'));
    assert.throws(() => decodeUncompressedDatagram(hex('06 7f000001 14e9 0000')), bindError('short'));
  });
});

describe('IP text forms', () => {
  it('formats IPv6 per RFC 5952 and parses the usual forms', () => {
    const cases: Array<[string, string]> = [
      ['::', '::'],
      ['::1', '::1'],
      ['2001:DB8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['::ffff:192.0.2.1', '::ffff:c000:201'],
      ['fe80::', 'fe80::'],
    ];
    for (const [text, canonical] of cases) assert.equal(formatIp(parseIpv6(text)!), canonical, text);
    for (const bad of ['', ':', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '12345::', 'g::', '1:2:3:4:5:6:7', '::1.2.3', '[::1]']) {
      assert.equal(parseIpv6(bad), null, bad);
    }
  });
});

describe('Connect-UDP-Bind header', () => {
  it('is enabled by a single ?1, parameters ignored', () => {
    assert.equal(formatConnectUdpBind(), '?1');
    for (const v of ['?1', ' ?1 ', '?1;foo', '?1;a=1;b="x;y"', ['?1']]) assert.deepEqual(parseConnectUdpBind(v), { enabled: true, reason: null }, String(v));
  });

  it('counts anything else as absent, with a reason, never throwing', () => {
    const off: Array<string | string[] | undefined> = [undefined, [], '?0', '1', 'true', '?1, ?1', ['?1', '?1'], '?1;Bad', '?1 x', '?2', '"?1"'];
    for (const v of off) {
      const r = parseConnectUdpBind(v);
      assert.equal(r.enabled, false, String(v));
      assert.equal(typeof r.reason, 'string');
    }
    assert.equal(parseConnectUdpBind(`?1;a="${'x'.repeat(MAX_BIND_HEADER_LENGTH)}"`).enabled, false);
  });
});

describe('Proxy-Public-Address header', () => {
  it('parses a list of IP:port strings, IPv6 in brackets, across field lines', () => {
    const r = parseProxyPublicAddress(['"192.0.2.45:54321";p=1, "[2001:DB8::1]:443"', '"127.0.0.1:9"']);
    assert.deepEqual(r, {
      reason: null,
      addresses: [
        { ipVersion: 4, address: '192.0.2.45', port: 54321 },
        { ipVersion: 6, address: '2001:db8::1', port: 443 },
        { ipVersion: 4, address: '127.0.0.1', port: 9 },
      ],
    });
  });

  it('formats what it parses', () => {
    const list: BindTarget[] = [
      { ipVersion: 4, address: '198.51.100.1', port: 1 },
      { ipVersion: 6, address: '::1', port: 65535 },
    ];
    assert.equal(formatProxyPublicAddress(list), '"198.51.100.1:1", "[::1]:65535"');
    assert.deepEqual(parseProxyPublicAddress(formatProxyPublicAddress(list)).addresses, list);
  });

  it('refuses bad values with a reason, never throwing', () => {
    const bad = [
      undefined,
      '',
      '192.0.2.1:1',
      '"192.0.2.1"',
      '"192.0.2.1:0"',
      '"192.0.2.1:65536"',
      '"2001:db8::1:443"',
      '"[192.0.2.1]:443"',
      '"01.2.3.4:1"',
      '"1.2.3.4:1",',
      '"1.2.3.4:1" "5.6.7.8:2"',
      '"1.2.3.4:1',
      '("1.2.3.4:1")',
      '"1.2.3.4:1";',
      '"a\\b"',
      `"${'1'.repeat(MAX_BIND_HEADER_LENGTH)}"`,
      new Array(MAX_PUBLIC_ADDRESSES + 1).fill('"127.0.0.1:1"').join(', '),
    ];
    for (const v of bad) {
      const r = parseProxyPublicAddress(v);
      assert.equal(r.addresses, null, String(v).slice(0, 40));
      assert.equal(typeof r.reason, 'string');
    }
    assert.equal(parseProxyPublicAddress(new Array(MAX_PUBLIC_ADDRESSES).fill('"127.0.0.1:1"').join(', ')).addresses?.length, MAX_PUBLIC_ADDRESSES);
  });
});

const targetArb: fc.Arbitrary<BindTarget> = fc.oneof(
  fc.record({ ipVersion: fc.constant(4 as const), address: fc.ipV4(), port: fc.integer({ min: 0, max: 65535 }) }),
  fc.record({
    ipVersion: fc.constant(6 as const),
    address: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => formatIp(b)),
    port: fc.integer({ min: 0, max: 65535 }),
  }),
);
const idArb = fc.oneof(fc.integer({ min: 1, max: 20000 }), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }));
const assignArb: fc.Arbitrary<CompressionAssign> = fc.oneof(
  idArb.map((contextId) => ({ contextId, ipVersion: 0 as const })),
  fc.tuple(idArb, targetArb).map(([contextId, t]) => ({ contextId, ipVersion: t.ipVersion, address: t.address, port: t.port })),
);

describe('bind codec properties', () => {
  it('encode then decode is the identity', () => {
    fc.assert(
      fc.property(assignArb, idArb, targetArb, fc.uint8Array({ maxLength: 64 }), (a, id, t, payload) => {
        assert.deepEqual(decodeCompressionAssign(encodeCompressionAssign(a)), { ...a });
        assert.equal(decodeCompressionAck(encodeCompressionAck(id)), id);
        assert.equal(decodeCompressionClose(encodeCompressionClose(id)), id);
        const d = decodeUncompressedDatagram(encodeUncompressedDatagram(t, payload));
        assert.deepEqual({ ipVersion: d.ipVersion, address: d.address, port: d.port }, { ...t });
        assert.deepEqual(new Uint8Array(d.payload), payload);
      }),
      { numRuns: 300 },
    );
  });

  it('decoders throw nothing but UdpTunnelError BIND_MALFORMED on arbitrary bytes; header parsers never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.string({ maxLength: 80 }), (bytes, text) => {
        const b = Buffer.from(bytes);
        for (const decode of [decodeCompressionAssign, decodeCompressionAck, decodeCompressionClose, decodeUncompressedDatagram]) {
          try {
            decode(b);
          } catch (err) {
            assert.ok(err instanceof UdpTunnelError && err.code === ErrorCodes.BIND_MALFORMED, String(err));
          }
        }
        assert.equal(typeof parseConnectUdpBind(text).enabled, 'boolean');
        const r = parseProxyPublicAddress(text);
        assert.ok(r.addresses !== null || typeof r.reason === 'string');
      }),
      { numRuns: 1000 },
    );
  });
});
