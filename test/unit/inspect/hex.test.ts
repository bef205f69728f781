import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { HEX_SNIFF_BYTES, looksLikeHexText, parseHexText } from '../../../src/inspect/hex.js';
import { isUdpTunnelError } from '../../../src/tunnel/errors.js';

function hex(text: string): string {
  return parseHexText(text).toString('hex');
}

function rejects(text: string, line: number, fragment: string): void {
  assert.throws(
    () => parseHexText(text),
    (e: unknown) => {
      assert.ok(isUdpTunnelError(e, 'UT_ERR_INVALID_INPUT'), String(e));
      assert.equal(e.details['line'], line);
      assert.ok(e.message.startsWith(`hex input line ${line}: `), e.message);
      assert.ok(e.message.includes(fragment), e.message);
      return true;
    },
  );
}

describe('parseHexText: free-form hex', () => {
  const cases: Array<[string, string, string]> = [
    ['contiguous', '000102ff', '000102ff'],
    ['spaces and newlines', '00 01\n02  ff\r\n', '000102ff'],
    ['0x prefixes', '0x00 0x01, 0x02,0xFF', '000102ff'],
    ['0x prefix on a run', '0x000102ff', '000102ff'],
    ['colon separators', '00:01:02:ff', '000102ff'],
    ['dash separators', '00-01-02-ff', '000102ff'],
    ['\\x escapes', '\\x00\\x01\\x02\\xff', '000102ff'],
    ['comment lines', '# capsule\n00 06\n  # value\n00 68656c6c6f', '000600' + '68656c6c6f'],
    ['upper case', 'DEADBEEF', 'deadbeef'],
    ['empty input', '', ''],
    ['only blank lines', '\n  \n\t\n', ''],
  ];
  for (const [name, input, expected] of cases) {
    it(name, () => assert.equal(hex(input), expected));
  }
});

describe('parseHexText: dumps', () => {
  it('xxd (default grouping, ASCII column stripped)', () => {
    const text = [
      '00000000: 0001 0203 0405 0607 0809 0a0b 0c0d 0e0f  ................',
      '00000010: 6162 6364 20ff                           abcd .',
    ].join('\n');
    assert.equal(hex(text), '000102030405060708090a0b0c0d0e0f61626364' + '20ff');
  });

  it('xxd ASCII column that looks like hex is not read as bytes', () => {
    assert.equal(hex('00000000: 6162 6364 6566                      abcdef'), '616263646566');
  });

  it('xxd -g1 and odd-length last line', () => {
    assert.equal(hex('00000000: 00 06 00 68 65 6c 6c 6f                          ...hello'), '00060068656c6c6f');
    assert.equal(hex('00000000: 0006 0068 656c 6c6f 21                 ...hello!'), '00060068656c6c6f21');
  });

  it('xxd with a starting offset (xxd -s)', () => {
    assert.equal(hex('00000100: 0102  ..\n00000102: 0304  ..'), '01020304');
  });

  it('hexdump -C with the middle gap, ASCII bars and the closing offset line', () => {
    const text = [
      '00000000  00 01 02 03 04 05 06 07  08 09 0a 0b 0c 0d 0e 0f  |................|',
      '00000010  61 62 63                                          |abc|',
      '00000013',
    ].join('\n');
    assert.equal(hex(text), '000102030405060708090a0b0c0d0e0f616263');
  });

  it("hexdump -C '*' repeat lines are expanded up to the next offset", () => {
    const text = [
      '00000000  00 00 00 00 00 00 00 00  00 00 00 00 00 00 00 00  |................|',
      '*',
      '00000030  ff                                                |.|',
      '00000031',
    ].join('\n');
    assert.equal(hex(text), '00'.repeat(48) + 'ff');
  });

  it('Wireshark-style hex dump (ASCII after three spaces)', () => {
    assert.equal(hex('0000   45 00 00 3c 1c 46 40 00   E..<.F@.\n0008   40 06   @.'), '4500003c1c4640004006');
  });
});

describe('parseHexText: errors name the line', () => {
  it('odd number of digits', () => rejects('00 01\n0 02', 2, "'0' has an odd number of hex digits"));
  it('odd digits inside a run', () => rejects('001', 1, 'odd number of hex digits'));
  it('garbage', () => rejects('00 01\n\nzz 02', 3, "'zz' is not hexadecimal"));
  it('0x without digits', () => rejects('0x', 1, 'prefix without digits'));
  it('a non-hex word in free text', () => rejects('capsule 00', 1, 'not hexadecimal'));
  it('xxd line with a bad group', () => rejects('00000000: 0001 0g03  ....', 1, "'0g03' is not a group of hex digit pairs"));
  it('xxd line with an odd group', () => rejects('00000000: 0001 020  ....', 1, 'hex digit pairs'));
  it('a plain line inside an xxd dump', () => rejects('00000000: 0001  ..\nff ee', 2, 'not a xxd line'));
  it('xxd offsets that skip bytes', () => rejects('00000000: 0001  ..\n00000010: 0203  ..', 2, 'does not follow the previous line (expected 0x2)'));
  it('hexdump token that is not a byte', () => rejects('00000000  00 01 0203  |...|', 1, "'0203' is not a two-digit hex byte"));
  it("'*' with no previous line", () => rejects('*\n00000000  00  |.|', 1, "'*' repeat marker without a previous dump line"));
  it("'*' at the end", () => rejects('00000000  00 01  |..|\n*', 2, "'*' repeat marker at the end"));
  it("'*' followed by an offset that is not a whole number of lines", () =>
    rejects('00000000  00 01  |..|\n*\n00000005  ff  |.|', 3, 'does not continue the repeated line'));
  it("'*' expansion beyond the output limit", () =>
    rejects('00000000  00 01  |..|\n*\n7fffffff0  ff  |.|', 3, 'output exceeds the'));
});

describe('parseHexText: properties', () => {
  it('round-trips bytes written as plain hex, xxd and hexdump -C', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
        const b = Buffer.from(bytes);
        assert.equal(hex(b.toString('hex')), b.toString('hex'));
        assert.equal(hex([...b].map((x) => `0x${x.toString(16).padStart(2, '0')}`).join(', ')), b.toString('hex'));
        const xxd: string[] = [];
        const hd: string[] = [];
        for (let o = 0; o < b.length; o += 16) {
          const line = b.subarray(o, o + 16);
          const groups: string[] = [];
          for (let g = 0; g < line.length; g += 2) groups.push(line.subarray(g, g + 2).toString('hex'));
          const ascii = [...line].map((c) => (c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '.')).join('');
          xxd.push(`${o.toString(16).padStart(8, '0')}: ${groups.join(' ').padEnd(39)}  ${ascii}`);
          const pairs = [...line].map((c) => c.toString(16).padStart(2, '0'));
          const left = pairs.slice(0, 8).join(' ');
          const right = pairs.slice(8).join(' ');
          hd.push(`${o.toString(16).padStart(8, '0')}  ${`${left}  ${right}`.padEnd(49)} |${ascii}|`);
        }
        hd.push(b.length.toString(16).padStart(8, '0'));
        assert.equal(hex(xxd.join('\n')), b.toString('hex'));
        if (b.length > 0) assert.equal(hex(hd.join('\n')), b.toString('hex'));
      }),
      { numRuns: 200 },
    );
  });
});

describe('looksLikeHexText', () => {
  const b = (s: string): Buffer => Buffer.from(s, 'latin1');

  it('recognizes hex digits with whitespace and 0x prefixes', () => {
    assert.equal(looksLikeHexText(b('00 05 00 68 69 21 21\n')), true);
    assert.equal(looksLikeHexText(b('0x00 0X05\t0xff\r\n')), true);
    assert.equal(looksLikeHexText(b('deadBEEF')), true);
  });

  it('rejects binary capsules, other text, a stray x and too few digits', () => {
    assert.equal(looksLikeHexText(Buffer.from([0x00, 0x05, 0x00, 0x68, 0x69, 0x21, 0x21])), false);
    assert.equal(looksLikeHexText(b('hello world')), false);
    assert.equal(looksLikeHexText(b('x0 12')), false);
    assert.equal(looksLikeHexText(b('10x0')), false);
    assert.equal(looksLikeHexText(b('0')), false);
    assert.equal(looksLikeHexText(b(' \n')), false);
  });

  it('looks only at the first HEX_SNIFF_BYTES bytes', () => {
    assert.equal(looksLikeHexText(b(`${'ab'.repeat(HEX_SNIFF_BYTES / 2)}\u0000`)), true);
    assert.equal(looksLikeHexText(b(`${'ab'.repeat(HEX_SNIFF_BYTES / 2 - 1)}\u0000`)), false);
  });
});
