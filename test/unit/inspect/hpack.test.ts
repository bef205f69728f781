import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { HpackDecoder, huffmanCode, huffmanDecode, huffmanEncode, HPACK_STATIC_TABLE } from '../../../src/inspect/hpack.js';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';
import { headerBlock, hpackInt, literalIncremental } from '../../helpers/h2-writer.js';

function h(hex: string): Buffer {
  return Buffer.from(hex.replace(/\s+/g, ''), 'hex');
}

function hpackRejects(block: Buffer, fragment: string, decoder = new HpackDecoder(), code = 'UT_ERR_HPACK'): void {
  assert.throws(
    () => decoder.decode(block),
    (e: unknown) => isUdpTunnelError(e, code as 'UT_ERR_HPACK') && e.message.includes(fragment),
  );
}

describe('HPACK: RFC 7541 Appendix C.2 (single representations)', () => {
  it('C.2.1 literal with indexing', () => {
    const d = new HpackDecoder();
    assert.deepEqual(d.decode(h('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572')), [['custom-key', 'custom-header']]);
    assert.deepEqual(d.tableEntries(), [['custom-key', 'custom-header']]);
    assert.equal(d.tableSize, 55);
  });
  it('C.2.2 literal without indexing', () => {
    const d = new HpackDecoder();
    assert.deepEqual(d.decode(h('040c 2f73 616d 706c 652f 7061 7468')), [[':path', '/sample/path']]);
    assert.equal(d.tableLength, 0);
  });
  it('C.2.3 literal never indexed', () => {
    const d = new HpackDecoder();
    assert.deepEqual(d.decode(h('1008 7061 7373 776f 7264 0673 6563 7265 74')), [['password', 'secret']]);
    assert.equal(d.tableLength, 0);
  });
  it('C.2.4 indexed', () => {
    assert.deepEqual(new HpackDecoder().decode(h('82')), [[':method', 'GET']]);
  });
});

const REQ1 = [
  [':method', 'GET'],
  [':scheme', 'http'],
  [':path', '/'],
  [':authority', 'www.example.com'],
];
const REQ2 = [...REQ1, ['cache-control', 'no-cache']];
const REQ3 = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':path', '/index.html'],
  [':authority', 'www.example.com'],
  ['custom-key', 'custom-value'],
];

function requestSequence(blocks: string[]): void {
  const d = new HpackDecoder();
  assert.deepEqual(d.decode(h(blocks[0]!)), REQ1);
  assert.deepEqual(d.tableEntries(), [[':authority', 'www.example.com']]);
  assert.equal(d.tableSize, 57);
  assert.deepEqual(d.decode(h(blocks[1]!)), REQ2);
  assert.deepEqual(d.tableEntries(), [['cache-control', 'no-cache'], [':authority', 'www.example.com']]);
  assert.equal(d.tableSize, 110);
  assert.deepEqual(d.decode(h(blocks[2]!)), REQ3);
  assert.deepEqual(d.tableEntries(), [['custom-key', 'custom-value'], ['cache-control', 'no-cache'], [':authority', 'www.example.com']]);
  assert.equal(d.tableSize, 164);
}

describe('HPACK: RFC 7541 Appendix C.3/C.4 (requests, one connection)', () => {
  it('C.3 without Huffman coding', () => {
    requestSequence([
      '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
      '8286 84be 5808 6e6f 2d63 6163 6865',
      '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
    ]);
  });
  it('C.4 with Huffman coding', () => {
    requestSequence([
      '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
      '8286 84be 5886 a8eb 1064 9cbf',
      '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
    ]);
  });
});

const RESP1 = [
  [':status', '302'],
  ['cache-control', 'private'],
  ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
  ['location', 'https://www.example.com'],
];
const RESP2 = [[':status', '307'], ...RESP1.slice(1)];
const COOKIE = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';
const RESP3 = [
  [':status', '200'],
  ['cache-control', 'private'],
  ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'],
  ['location', 'https://www.example.com'],
  ['content-encoding', 'gzip'],
  ['set-cookie', COOKIE],
];

function responseSequence(blocks: string[]): void {
  // C.5/C.6 run with SETTINGS_HEADER_TABLE_SIZE = 256, so entries are evicted.
  const d = new HpackDecoder({ maxTableSize: 256 });
  assert.deepEqual(d.decode(h(blocks[0]!)), RESP1);
  assert.deepEqual(d.tableEntries(), [
    ['location', 'https://www.example.com'],
    ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
    ['cache-control', 'private'],
    [':status', '302'],
  ]);
  assert.equal(d.tableSize, 222);
  assert.deepEqual(d.decode(h(blocks[1]!)), RESP2);
  assert.deepEqual(d.tableEntries(), [
    [':status', '307'],
    ['location', 'https://www.example.com'],
    ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
    ['cache-control', 'private'],
  ]);
  assert.equal(d.tableSize, 222);
  assert.deepEqual(d.decode(h(blocks[2]!)), RESP3);
  assert.deepEqual(d.tableEntries(), [
    ['set-cookie', COOKIE],
    ['content-encoding', 'gzip'],
    ['date', 'Mon, 21 Oct 2013 20:13:22 GMT'],
  ]);
  assert.equal(d.tableSize, 215);
}

describe('HPACK: RFC 7541 Appendix C.5/C.6 (responses with evictions)', () => {
  it('C.5 without Huffman coding', () => {
    responseSequence([
      '4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d' +
        ' 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
      '4803 3330 37c1 c0bf',
      '88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f' +
        ' 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b' +
        ' 2076 6572 7369 6f6e 3d31',
    ]);
  });
  it('C.6 with Huffman coding', () => {
    responseSequence([
      '4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7' +
        ' 8f0b 97c8 e9ae 82ae 43d3',
      '4883 640e ffc1 c0bf',
      '88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335' +
        ' dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07',
    ]);
  });
});

describe('HPACK: integers, tables and size updates', () => {
  it('C.1 integer examples through size updates (5-bit prefix)', () => {
    const d = new HpackDecoder({ maxTableSize: 4096 });
    d.decode(hpackInt(10, 5, 0x20));
    assert.equal(d.tableMaxSize, 10);
    assert.deepEqual([...hpackInt(1337, 5, 0x20)], [0x3f, 0x9a, 0x0a]);
    d.decode(h('3f9a0a'));
    assert.equal(d.tableMaxSize, 1337);
  });

  it('the static table has 61 entries ending with www-authenticate', () => {
    assert.equal(HPACK_STATIC_TABLE.length, 61);
    assert.deepEqual(HPACK_STATIC_TABLE[60], ['www-authenticate', '']);
    assert.deepEqual(new HpackDecoder().decode(h('bd')), [['www-authenticate', '']]);
  });

  it('a size update evicts, and size 0 empties the table', () => {
    const d = new HpackDecoder();
    d.decode(Buffer.concat([literalIncremental('a', '1'), literalIncremental('b', '2')]));
    assert.equal(d.tableSize, 68);
    d.decode(hpackInt(40, 5, 0x20));
    assert.deepEqual(d.tableEntries(), [['b', '2']]);
    d.decode(h('20'));
    assert.equal(d.tableLength, 0);
    assert.equal(d.tableSize, 0);
  });

  it('an entry larger than the table empties it and is not added (RFC 7541 §4.4)', () => {
    const d = new HpackDecoder({ maxTableSize: 40 });
    d.decode(literalIncremental('a', '1'));
    assert.equal(d.tableLength, 1);
    assert.deepEqual(d.decode(literalIncremental('big', 'x'.repeat(10))), [['big', 'xxxxxxxxxx']]);
    assert.equal(d.tableLength, 0);
  });

  it('many insertions keep the table within its size', () => {
    const d = new HpackDecoder({ maxTableSize: 200 });
    for (let i = 0; i < 500; i++) d.decode(literalIncremental(`k${i}`, 'v'));
    assert.ok(d.tableSize <= 200);
    assert.deepEqual(d.tableEntries()[0], ['k499', 'v']);
    assert.deepEqual(d.decode(h('be')), [['k499', 'v']]);
  });

  it('setMaxTableSize raises the limit for later size updates', () => {
    const d = new HpackDecoder({ maxTableSize: 100 });
    hpackRejects(hpackInt(200, 5, 0x20), 'exceeds the limit 100', d);
    const d2 = new HpackDecoder({ maxTableSize: 100 });
    d2.setMaxTableSize(300);
    d2.decode(hpackInt(200, 5, 0x20));
    assert.equal(d2.tableMaxSize, 200);
  });
});

describe('HPACK: malformed blocks are coded errors', () => {
  it('index 0', () => hpackRejects(h('80'), 'index 0 is not used'));
  it('index beyond both tables', () => hpackRejects(h('be'), 'index 62 is beyond the tables'));
  it('size update after a field (RFC 7541 §4.2)', () => hpackRejects(h('82 20'), 'size update after a header field'));
  it('size update above the limit', () => hpackRejects(hpackInt(4097, 5, 0x20), 'exceeds the limit 4096'));
  it('integer cut short', () => hpackRejects(h('ff'), 'ends inside an integer'));
  it('integer too large', () => hpackRejects(h('ffffffffffff7f'), 'integer too large'));
  it('string past the end', () => hpackRejects(h('0003 6162'), 'runs past the header block'));
  it('missing value string', () => hpackRejects(h('00 0161'), 'ends before a string'));
  it('Huffman EOS inside a string', () => hpackRejects(h('00 84 ffffffff 00'), 'contains EOS'));
  it('Huffman padding not all ones', () => hpackRejects(Buffer.concat([h('00 81'), Buffer.from([0x00])]), 'padding is not the EOS prefix'));
  it('Huffman padding longer than 7 bits', () => hpackRejects(Buffer.concat([h('00 82'), Buffer.from([0x1f, 0xff]), h('00')]), 'padding longer than 7 bits'));
  it('header list over its limit', () => {
    const d = new HpackDecoder({ maxHeaderListSize: 100 });
    hpackRejects(headerBlock([['a', 'x'.repeat(40)], ['b', 'y'.repeat(40)]]), 'header list exceeds 100 bytes', d, 'UT_ERR_HEADERS_TOO_LARGE');
  });
});

describe('HPACK Huffman code', () => {
  it('codes match RFC 7541 Appendix B rows', () => {
    const rows: Array<[number, number, number]> = [
      [0, 0x1ff8, 13],
      [1, 0x7fffd8, 23],
      [9, 0xffffea, 24],
      [10, 0x3ffffffc, 30],
      [22, 0x3ffffffe, 30],
      [32, 0x14, 6],
      [47, 0x18, 6],
      [48, 0x0, 5],
      [58, 0x5c, 7],
      [92, 0x7fff0, 19],
      [123, 0x7ffe, 15],
      [127, 0xffffffc, 28],
      [128, 0xfffe6, 20],
      [153, 0x1fffdc, 21],
      [199, 0x1ffffec, 25],
      [203, 0x7ffffde, 27],
      [220, 0xffffffd, 28],
      [249, 0xffffffe, 28],
      [255, 0x3ffffee, 26],
      [256, 0x3fffffff, 30],
    ];
    for (const [sym, code, len] of rows) assert.deepEqual(huffmanCode(sym), [code, len], `symbol ${sym}`);
  });

  it('is a complete prefix code (Kraft sum is exactly 1)', () => {
    let sum = 0;
    for (let s = 0; s <= 256; s++) sum += 2 ** -huffmanCode(s)[1];
    assert.equal(sum, 1);
  });

  it('encodes the C.4.1 authority exactly', () => {
    assert.equal(huffmanEncode(Buffer.from('www.example.com')).toString('hex'), 'f1e3c2e5f23a6ba0ab90f4ff');
  });

  it('round-trips any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        assert.deepEqual([...huffmanDecode(huffmanEncode(bytes))], [...bytes]);
      }),
      { numRuns: 300 },
    );
  });

  it('literal-without-indexing blocks round-trip any latin1 fields, Huffman or not', () => {
    const field = fc.tuple(fc.string({ minLength: 1, maxLength: 20 }), fc.string({ maxLength: 40 }));
    fc.assert(
      fc.property(fc.array(field, { maxLength: 10 }), fc.boolean(), (fields, huff) => {
        const latin = fields.map(([n, v]) => [Buffer.from(n, 'latin1').toString('latin1'), Buffer.from(v, 'latin1').toString('latin1')] as [string, string]);
        const d = new HpackDecoder();
        assert.deepEqual(d.decode(headerBlock(latin, huff)), latin);
        assert.equal(d.tableLength, 0);
      }),
      { numRuns: 200 },
    );
  });

  it('never throws anything but coded errors on random blocks', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        try {
          new HpackDecoder().decode(bytes);
        } catch (e) {
          assert.ok(isUdpTunnelError(e), String(e));
        }
      }),
      { numRuns: 500 },
    );
  });
});
