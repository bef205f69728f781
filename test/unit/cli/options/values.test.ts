import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  closest,
  editDistance,
  MAX_DURATION_MS,
  OptionValueError,
  readDuration,
  readSize,
  readValue,
  showDuration,
  showSize,
  type OptionKind,
  type OptionSpec,
} from '../../../../src/cli/options/spec.js';
import { COMMAND_NAMES } from '../../../../src/cli/commands/summaries.js';
import { CONNECT_SCHEMA } from '../../../../src/cli/schemas/connect.js';

/** A spec of `kind` for tests, with the fields each kind needs. */
function spec(kind: OptionKind, extra: Partial<OptionSpec> = {}): OptionSpec {
  return { name: `test-${kind}`, kind, group: 'G', describe: 'test option', ...(kind === 'choice' ? { choices: ['red', 'green'] } : {}), ...extra };
}

/** Asserts readValue refuses `raw` with an OptionValueError whose message matches `re`. */
function refuses(s: OptionSpec, raw: unknown, re: RegExp): void {
  assert.throws(
    () => readValue(s, raw),
    (err: unknown) => err instanceof OptionValueError && re.test(err.message),
    `${s.kind} ${JSON.stringify(raw)} should be refused with ${String(re)}`,
  );
}

describe('readValue: int', () => {
  const n = spec('int', { min: 1, max: 1000 });
  it('reads whole numbers, with a leading + or spaces', () => {
    assert.equal(readValue(n, '7'), 7);
    assert.equal(readValue(n, '+3'), 3);
    assert.equal(readValue(n, ' 12 '), 12);
    assert.equal(readValue(n, 1000), 1000);
  });
  it('refuses text, fractions and values out of range, saying which', () => {
    refuses(n, 'abc', /^'abc' is not a number$/);
    refuses(n, '1.5', /^'1.5' is not a whole number$/);
    refuses(n, '-5', /^'-5' is out of range: it must be 1\.\.1000$/);
    refuses(n, '1001', /out of range: it must be 1\.\.1000$/);
    refuses(n, '', /is not a number/);
    refuses(n, '0x10', /is not a number/);
    refuses(n, '1e3', /is not a number/);
  });
  it("says that 0 would turn it off when the minimum is above 0", () => {
    refuses(n, '0', /^'0' is out of range: it must be 1\.\.1000 \(0 would turn it off\)$/);
    // The hint is only for 0, and only when 0 is below the range.
    assert.doesNotMatch(messageOf(n, '-5'), /turn it off/);
    assert.equal(readValue(spec('int', { min: 0 }), '0'), 0);
  });
  it('names the range when only one bound is set', () => {
    refuses(spec('int', { min: 2 }), '1', /it must be at least 2/);
    refuses(spec('int', { max: 9 }), '10', /it must be at most 9/);
  });
});

function messageOf(s: OptionSpec, raw: unknown): string {
  try {
    readValue(s, raw);
  } catch (err) {
    if (err instanceof OptionValueError) return err.message;
    throw err;
  }
  assert.fail(`${JSON.stringify(raw)} was accepted`);
}

describe('readValue: number', () => {
  const n = spec('number', { min: 0, max: 100 });
  it('reads decimals in the forms people type', () => {
    assert.equal(readValue(n, '1.5'), 1.5);
    assert.equal(readValue(n, '.5'), 0.5);
    assert.equal(readValue(n, '2.'), 2);
    assert.equal(readValue(n, '+7'), 7);
  });
  it('refuses text, exponents, out-of-range values and overflow to infinity', () => {
    refuses(n, 'abc', /^'abc' is not a number$/);
    refuses(n, '1e3', /is not a number/);
    refuses(n, '-0.1', /out of range: it must be 0\.\.100/);
    refuses(n, '100.5', /out of range/);
    refuses(spec('number'), '9'.repeat(400), /is not a number/);
  });
});

describe('readValue: size', () => {
  const s = spec('size', { min: 1, max: 1024 ** 3 });
  it('reads bytes with k, KB, KiB (all 1024) and M, G units', () => {
    const cases: [string, number][] = [
      ['1500', 1500],
      ['16KiB', 16 * 1024],
      ['1MB', 1024 * 1024],
      ['64k', 64 * 1024],
      ['1.5k', 1536],
      ['4m', 4 * 1024 * 1024],
      ['1GiB', 1024 ** 3],
      ['10 b', 10],
    ];
    for (const [text, bytes] of cases) assert.equal(readValue(s, text), bytes, text);
  });
  it('refuses negative sizes, unknown units, fractions of a byte and out-of-range sizes', () => {
    refuses(s, '-1', /^'-1' is out of range: a size cannot be negative$/);
    refuses(s, '1TB', /^'1TB' is not a size \(examples: 1500, 64KiB, 1MB\)$/);
    refuses(s, '1.5x', /is not a size/);
    refuses(s, 'k', /is not a size/);
    refuses(s, '1.5', /not a whole number of bytes/);
    refuses(s, '0', /out of range: it must be 1\.\.1GiB \(0 would turn it off\)/);
    refuses(s, '2GiB', /out of range: it must be 1\.\.1GiB$/);
  });
});

describe('readValue: duration', () => {
  const d = spec('duration');
  it('reads ms, s, m, h and us; a bare number is in seconds', () => {
    const cases: [string, number][] = [
      ['500ms', 500],
      ['30s', 30_000],
      ['2m', 120_000],
      ['1h', 3_600_000],
      ['250us', 0.25],
      ['1.5s', 1500],
      ['5', 5000],
      ['0', 0],
    ];
    for (const [text, ms] of cases) assert.equal(readValue(d, text), ms, text);
  });
  it("reads a bare number in ms when the option's unit is ms", () => {
    const ms = spec('duration', { unit: 'ms' });
    assert.equal(readValue(ms, '250'), 250);
    assert.equal(readValue(ms, 250), 250);
    assert.equal(readValue(ms, '2s'), 2000);
  });
  it('refuses negative durations, unknown units and durations a timer cannot hold', () => {
    refuses(d, '-1s', /^'-1s' is out of range: a duration cannot be negative$/);
    refuses(d, '-5', /cannot be negative/);
    refuses(d, '3d', /^'3d' is not a duration \(examples: 500ms, 30s, 2m\)$/);
    refuses(d, 'soon', /is not a duration/);
    refuses(spec('duration', { min: 1 }), '0', /out of range: it must be at least 1ms \(0 would turn it off\)/);
    assert.equal(readValue(d, showDuration(MAX_DURATION_MS)), MAX_DURATION_MS);
    refuses(d, '597h', /out of range: a duration must be at most 596h/);
    refuses(d, '100000000s', /out of range/);
    refuses(d, `${'9'.repeat(400)}s`, /out of range/);
  });
});

describe('readValue: choice, string, list, boolean', () => {
  it('accepts only the listed choices and names them', () => {
    const c = spec('choice');
    assert.equal(readValue(c, 'green'), 'green');
    refuses(c, 'blue', /^'blue' is not one of red, green$/);
    refuses(c, 'Red', /is not one of/);
  });
  it('takes text as is, but not an empty string or a mapping', () => {
    const s = spec('string');
    assert.equal(readValue(s, ' a b '), ' a b ');
    assert.equal(readValue(s, 5), '5');
    refuses(s, '', /an empty value is not allowed/);
    refuses(s, { a: 1 }, /expected a single value/);
    refuses(s, ['a'], /expected a single value/);
    refuses(s, null, /expected a single value/);
  });
  it('splits lists on commas only when the option says so', () => {
    const plain = spec('list');
    const commas = spec('list', { commas: true });
    assert.deepEqual(readValue(plain, 'a,b'), ['a,b']);
    assert.deepEqual(readValue(plain, ['x: 1, 2', 'y']), ['x: 1, 2', 'y']);
    assert.deepEqual(readValue(commas, 'a, b'), ['a', 'b']);
    assert.deepEqual(readValue(commas, ['a,b', 'c']), ['a', 'b', 'c']);
    assert.deepEqual(readValue(commas, []), []);
    assert.deepEqual(readValue(plain, 53), ['53']);
  });
  it('refuses empty list items and nested values', () => {
    refuses(spec('list', { commas: true }), 'a,,b', /an empty value is not allowed/);
    refuses(spec('list', { commas: true }), 'a,', /an empty value is not allowed/);
    refuses(spec('list'), [''], /an empty value is not allowed/);
    refuses(spec('list'), [{ a: 1 }], /expected text or a list of text/);
    refuses(spec('list'), [null], /expected text or a list of text/);
  });
  it('reads booleans from config text', () => {
    const b = spec('boolean');
    for (const t of ['true', 'yes', 'on', '1', 'YES', ' On ']) assert.equal(readValue(b, t), true, t);
    for (const t of ['false', 'no', 'off', '0', 'Off']) assert.equal(readValue(b, t), false, t);
    assert.equal(readValue(b, true), true);
    assert.equal(readValue(b, false), false);
    refuses(b, 'maybe', /^'maybe' is not true or false$/);
    refuses(b, '', /is not true or false/);
    // From a config file: a list or mapping is no boolean, even one that prints as '1' or does not print at all.
    refuses(b, [1], /expected true or false, not a list or mapping/);
    refuses(b, { toString: {} }, /expected true or false/);
    refuses(b, null, /expected true or false/);
  });
});

describe('readValue on arbitrary input', () => {
  const specs: OptionSpec[] = [
    spec('string'),
    spec('boolean'),
    spec('int', { min: 1, max: 65535 }),
    spec('int'),
    spec('number', { min: 0 }),
    spec('size', { min: 64, max: 16 * 1024 * 1024 }),
    spec('size'),
    spec('duration', { min: 1 }),
    spec('duration', { unit: 'ms' }),
    spec('choice'),
    spec('list'),
    spec('list', { commas: true }),
  ];
  /** Calls readValue and fails the property on any error but OptionValueError. */
  const onlyValueErrors = (s: OptionSpec, raw: unknown): boolean => {
    try {
      readValue(s, raw);
    } catch (err) {
      if (!(err instanceof OptionValueError)) throw err;
    }
    return true;
  };
  // Text that looks like a value, so the property also reaches the unit and range paths.
  const valueish = fc.tuple(fc.constantFrom('', '-', '+', ' '), fc.stringMatching(/^[0-9]{0,25}(\.[0-9]{0,4})?$/), fc.constantFrom('', 'k', 'KiB', 'MB', 'g', 'ms', 's', 'm', 'h', 'us', 'x', 'TB')).map((p) => p.join(''));

  for (const s of specs) {
    it(`throws nothing but OptionValueError for a ${s.kind}${s.min !== undefined ? ` (min ${s.min})` : ''}${s.commas ? ' (commas)' : ''}${s.unit ? ` (unit ${s.unit})` : ''}`, () => {
      fc.assert(fc.property(fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), valueish), (text) => onlyValueErrors(s, text)), { numRuns: 300 });
      fc.assert(fc.property(fc.anything(), (raw) => onlyValueErrors(s, raw)), { numRuns: 200 });
    });
  }

  it('a value it accepts is in range and of the kind asked for', () => {
    const ranged = spec('size', { min: 64, max: 1024 * 1024 });
    fc.assert(
      fc.property(valueish, (text) => {
        let v: unknown;
        try {
          v = readValue(ranged, text);
        } catch (err) {
          if (err instanceof OptionValueError) return true;
          throw err;
        }
        return typeof v === 'number' && Number.isSafeInteger(v) && v >= 64 && v <= 1024 * 1024;
      }),
      { numRuns: 500 },
    );
  });
});

describe('showSize and showDuration round-trip', () => {
  it('readSize(showSize(n)) is n for any whole number of bytes', () => {
    const bytes = fc.oneof(fc.nat({ max: 2 ** 40 }), fc.nat({ max: 2 ** 20 }).map((k) => k * 1024), fc.nat({ max: 4096 }).map((m) => m * 1024 * 1024));
    fc.assert(fc.property(bytes, (n) => readSize(showSize(n)) === n), { numRuns: 500 });
  });
  it('readDuration(showDuration(ms)) is ms in both bare-number units', () => {
    const ms = fc.oneof(fc.nat({ max: MAX_DURATION_MS }), fc.nat({ max: 596 * 3600 }).map((s) => s * 1000), fc.nat({ max: 596 }).map((h) => h * 3_600_000));
    fc.assert(
      fc.property(ms, (n) => {
        const text = showDuration(n);
        return readDuration(text, 's') === n && readDuration(text, 'ms') === n && readValue(spec('duration'), text) === n;
      }),
      { numRuns: 500 },
    );
  });
});

describe('closest and editDistance', () => {
  const flags = CONNECT_SCHEMA.options.map((o) => o.name);
  it('suggests the flag a slip was meant to be', () => {
    assert.equal(closest('taget', flags), 'target');
    assert.equal(closest('prxy', flags), 'proxy');
    assert.equal(closest('max-sesions', flags), 'max-sessions');
    assert.equal(closest('max-sess', flags), 'max-sessions');
    assert.equal(closest('idle-timout', flags), 'idle-timeout');
  });
  it('suggests the command a slip was meant to be', () => {
    assert.equal(closest('conect', COMMAND_NAMES), 'connect');
    assert.equal(closest('serv', COMMAND_NAMES), 'serve');
    assert.equal(closest('bnech', COMMAND_NAMES), 'bench');
  });
  it('suggests nothing for an unrelated word', () => {
    assert.equal(closest('bogus-flag', flags), null);
    assert.equal(closest('frobnicate', COMMAND_NAMES), null);
    assert.equal(closest('xyz', flags), null);
    assert.equal(closest('stray', flags), null);
    assert.equal(closest('anything', []), null);
  });
  it('counts a swap of neighbours as one edit', () => {
    assert.equal(editDistance('serve', 'serve'), 0);
    assert.equal(editDistance('sevre', 'serve'), 1);
    assert.equal(editDistance('', 'abc'), 3);
    assert.equal(editDistance('kitten', 'sitting'), 3);
  });
  it('is a symmetric distance', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 12 }), fc.string({ maxLength: 12 }), (a, b) => {
        const d = editDistance(a, b);
        return d === editDistance(b, a) && d <= Math.max(a.length, b.length) && (d === 0) === (a === b);
      }),
      { numRuns: 300 },
    );
  });
});
