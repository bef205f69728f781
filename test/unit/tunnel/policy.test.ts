import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import fc from 'fast-check';
import { ErrorCodes, UdpTunnelError } from '../../../src/tunnel/errors.js';
import {
  formatIp,
  formatRule,
  ipCategory,
  isLoopback,
  parseIp,
  parseRuleList,
  TargetPolicy,
  type PolicyRule,
  type RefusedCategory,
} from '../../../src/tunnel/policy.js';

type Expect =
  | 'allow'
  | 'unlisted'
  | 'default-deny'
  | 'bad-port'
  | 'bad-address'
  | { rule: string }
  | { category: RefusedCategory };

interface Case {
  allow?: string;
  deny?: string;
  /** Rules in this exact order, for first-match cases: [action, spec]. */
  ordered?: Array<['allow' | 'deny', string]>;
  own?: string[];
  address: string;
  port: number;
  expect: Expect;
}

function policyFor(c: Case): TargetPolicy {
  const rules: PolicyRule[] = [];
  if (c.ordered !== undefined) {
    for (const [action, spec] of c.ordered) rules.push(...parseRuleList(spec, action));
  } else {
    // The CLI's order: deny rules first, then allow rules.
    if (c.deny !== undefined) rules.push(...parseRuleList(c.deny, 'deny'));
    if (c.allow !== undefined) rules.push(...parseRuleList(c.allow, 'allow'));
  }
  return new TargetPolicy({ rules, ownAddresses: c.own ?? [] });
}

const BROAD = '0.0.0.0/0,::/0';

const cases: Case[] = [
  // Default: no --allow means loopback only.
  { address: '127.0.0.1', port: 53, expect: 'allow' },
  { address: '127.255.255.254', port: 1, expect: 'allow' },
  { address: '::1', port: 65535, expect: 'allow' },
  { address: '::ffff:127.0.0.1', port: 9, expect: 'allow' },
  { address: '8.8.8.8', port: 53, expect: 'default-deny' },
  { address: '10.0.0.1', port: 53, expect: 'default-deny' },
  { address: '2001:db8::1', port: 53, expect: 'default-deny' },
  { address: '169.254.169.254', port: 80, expect: { category: 'link-local' } },
  { address: '0.0.0.0', port: 53, expect: { category: 'unspecified' } },
  { address: '::', port: 53, expect: { category: 'unspecified' } },
  { address: '255.255.255.255', port: 67, expect: { category: 'broadcast' } },
  { address: '224.0.0.251', port: 5353, expect: { category: 'multicast' } },
  { address: 'ff02::fb', port: 5353, expect: { category: 'multicast' } },
  { address: 'fe80::1', port: 53, expect: { category: 'link-local' } },
  { address: '127.0.0.1', port: 0, expect: 'bad-port' },
  { address: '127.0.0.1', port: 65536, expect: 'bad-port' },
  { address: '127.0.0.1', port: -1, expect: 'bad-port' },
  { address: '127.0.0.1', port: 53.5, expect: 'bad-port' },
  { address: '127.0.0.1', port: Number.NaN, expect: 'bad-port' },
  { allow: BROAD, address: '8.8.8.8', port: 0, expect: 'bad-port' },
  { address: 'localhost', port: 53, expect: 'bad-address' },
  { address: 'fe80::1%eth0', port: 53, expect: 'bad-address' },
  { address: '[::1]', port: 53, expect: 'bad-address' },
  { address: '127.1', port: 53, expect: 'bad-address' },
  { address: '', port: 53, expect: 'bad-address' },
  // Deny rules without allow rules keep the loopback default for everything else.
  { deny: '127.0.0.0/8:53', address: '127.0.0.1', port: 53, expect: { rule: '127.0.0.0/8:53' } },
  { deny: '127.0.0.0/8:53', address: '127.0.0.1', port: 54, expect: 'allow' },
  { deny: '127.0.0.0/8:53', address: '::ffff:127.0.0.1', port: 53, expect: { rule: '127.0.0.0/8:53' } },
  // A broad allow opens public and private space but not the guarded classes.
  { allow: BROAD, address: '8.8.8.8', port: 443, expect: 'allow' },
  { allow: BROAD, address: '2606:4700::1111', port: 443, expect: 'allow' },
  { allow: BROAD, address: '10.1.2.3', port: 53, expect: 'allow' },
  { allow: BROAD, address: 'fd00::1', port: 53, expect: 'allow' },
  { allow: BROAD, address: '169.254.169.254', port: 80, expect: { category: 'link-local' } },
  { allow: BROAD, address: '::ffff:169.254.169.254', port: 80, expect: { category: 'link-local' } },
  { allow: BROAD, address: '224.0.0.1', port: 5000, expect: { category: 'multicast' } },
  { allow: BROAD, address: '239.255.255.250', port: 1900, expect: { category: 'multicast' } },
  { allow: BROAD, address: '255.255.255.255', port: 67, expect: { category: 'broadcast' } },
  { allow: BROAD, address: '0.0.0.0', port: 53, expect: { category: 'unspecified' } },
  { allow: BROAD, address: '0.1.2.3', port: 53, expect: { category: 'unspecified' } },
  { allow: BROAD, address: '::', port: 53, expect: { category: 'unspecified' } },
  { allow: BROAD, address: '127.0.0.1', port: 53, expect: { category: 'loopback' } },
  { allow: BROAD, address: '::1', port: 53, expect: { category: 'loopback' } },
  { allow: BROAD, address: '::ffff:7f00:1', port: 53, expect: { category: 'loopback' } },
  { allow: BROAD, address: '::FFFF:127.0.0.2', port: 53, expect: { category: 'loopback' } },
  { allow: BROAD, address: 'fe80::1', port: 53, expect: { category: 'link-local' } },
  { allow: BROAD, address: 'febf:ffff::1', port: 53, expect: { category: 'link-local' } },
  { allow: BROAD, address: 'fec0::1', port: 53, expect: 'allow' },
  { allow: BROAD, address: 'ff02::1', port: 53, expect: { category: 'multicast' } },
  // Guarded addresses open only for an allow rule that lies inside the class.
  { allow: '0.0.0.0/0,169.254.169.254', address: '169.254.169.254', port: 80, expect: 'allow' },
  { allow: '0.0.0.0/0,169.254.169.254', address: '169.254.169.253', port: 80, expect: { category: 'link-local' } },
  { allow: '169.254.169.254/32:80', address: '169.254.169.254', port: 81, expect: { category: 'link-local' } },
  { allow: '169.254.0.0/16', address: '169.254.1.1', port: 80, expect: 'allow' },
  { allow: '169.254.0.0/15', address: '169.254.1.1', port: 80, expect: { category: 'link-local' } },
  { allow: '[fe80::/10]', address: 'fe80::1234', port: 80, expect: 'allow' },
  { allow: '224.0.0.0/4:5353', address: '224.0.0.251', port: 5353, expect: 'allow' },
  { allow: '224.0.0.0/4:5353', address: '224.0.0.251', port: 5354, expect: { category: 'multicast' } },
  { allow: '224.0.0.0/3', address: '224.0.0.251', port: 5353, expect: { category: 'multicast' } },
  { allow: '255.255.255.255', address: '255.255.255.255', port: 67, expect: 'allow' },
  { allow: '0.0.0.0/8', address: '0.0.0.0', port: 67, expect: 'allow' },
  { allow: '127.0.0.0/8', address: '127.0.0.1', port: 53, expect: 'allow' },
  { allow: '127.0.0.0/8', address: '8.8.8.8', port: 53, expect: 'unlisted' },
  { allow: '127.0.0.0/8', address: '::1', port: 53, expect: 'unlisted' },
  { allow: '10.0.0.0/8', address: '127.0.0.1', port: 53, expect: 'unlisted' },
  // CIDR and port ranges.
  { allow: '10.0.0.0/8:1000-2000', address: '10.1.2.3', port: 1000, expect: 'allow' },
  { allow: '10.0.0.0/8:1000-2000', address: '10.1.2.3', port: 2000, expect: 'allow' },
  { allow: '10.0.0.0/8:1000-2000', address: '10.1.2.3', port: 999, expect: 'unlisted' },
  { allow: '10.0.0.0/8:1000-2000', address: '10.1.2.3', port: 2001, expect: 'unlisted' },
  { allow: '10.0.0.0/8:1000-2000', address: '11.0.0.1', port: 1500, expect: 'unlisted' },
  { allow: '10.0.0.0/8:1000-2000', address: '9.255.255.255', port: 1500, expect: 'unlisted' },
  { allow: '10.0.0.0/8', address: '10.255.255.255', port: 1, expect: 'allow' },
  { allow: '10.0.0.0/8', address: '::ffff:10.0.0.1', port: 53, expect: 'allow' },
  { allow: '10.0.0.0/8', address: '::ffff:a00:1', port: 53, expect: 'allow' },
  { allow: '10.0.0.0/8', address: '::a00:1', port: 53, expect: 'unlisted' },
  { allow: '192.0.2.7', address: '192.0.2.7', port: 9, expect: 'allow' },
  { allow: '192.0.2.7', address: '192.0.2.8', port: 9, expect: 'unlisted' },
  { allow: '[2001:db8::/32]:53', address: '2001:db8:ffff::1', port: 53, expect: 'allow' },
  { allow: '[2001:db8::/32]:53', address: '2001:db9::1', port: 53, expect: 'unlisted' },
  { allow: '[2001:db8::/32]:53', address: '2001:db8::1', port: 54, expect: 'unlisted' },
  { allow: '[2001:db8::/32]:53', address: '10.0.0.1', port: 53, expect: 'unlisted' },
  { allow: '2001:db8::/32', address: '2001:DB8::ABCD', port: 65535, expect: 'allow' },
  { allow: '::/0', address: '8.8.8.8', port: 53, expect: 'unlisted' },
  { allow: '::/0', address: '::ffff:8.8.8.8', port: 53, expect: 'unlisted' },
  { allow: '::ffff:0:0/96', address: '8.8.8.8', port: 53, expect: 'allow' },
  { allow: '::/95', address: '::ffff:8.8.8.8', port: 53, expect: 'unlisted' },
  // First match wins.
  { deny: '10.0.0.0/24', allow: '10.0.0.0/8', address: '10.0.0.5', port: 53, expect: { rule: '10.0.0.0/24' } },
  { deny: '10.0.0.0/24', allow: '10.0.0.0/8', address: '10.0.1.5', port: 53, expect: 'allow' },
  { deny: '0.0.0.0/0:25', allow: BROAD, address: '8.8.8.8', port: 25, expect: { rule: '0.0.0.0/0:25' } },
  { deny: '[::/0]:53', allow: BROAD, address: '2001:db8::1', port: 53, expect: { rule: '[::/0]:53' } },
  { deny: '::ffff:10.0.0.0/104', allow: BROAD, address: '10.2.3.4', port: 53, expect: { rule: '10.0.0.0/8' } },
  {
    ordered: [['allow', '10.0.0.0/8'], ['deny', '10.0.0.0/24']],
    address: '10.0.0.5',
    port: 53,
    expect: 'allow',
  },
  // A deny always applies, even before a rule that names a guarded address.
  {
    deny: '127.0.0.0/8',
    allow: '127.0.0.1',
    address: '::ffff:127.0.0.1',
    port: 53,
    expect: { rule: '127.0.0.0/8' },
  },
  // A broad allow cannot open a guarded address, so a later deny still decides it.
  {
    ordered: [['allow', '0.0.0.0/0'], ['deny', '169.254.0.0/16'], ['allow', '169.254.169.254']],
    address: '169.254.169.254',
    port: 80,
    expect: { rule: '169.254.0.0/16' },
  },
  {
    ordered: [['allow', '0.0.0.0/0'], ['allow', '169.254.169.254'], ['deny', '169.254.0.0/16']],
    address: '169.254.169.254',
    port: 80,
    expect: 'allow',
  },
  // The proxy's own addresses.
  { allow: BROAD, own: ['192.0.2.10'], address: '192.0.2.10', port: 443, expect: { category: 'own-address' } },
  { allow: BROAD, own: ['192.0.2.10'], address: '192.0.2.11', port: 443, expect: 'allow' },
  { allow: '192.0.2.0/24', own: ['192.0.2.10'], address: '192.0.2.10', port: 1, expect: { category: 'own-address' } },
  { allow: '192.0.2.10/32', own: ['192.0.2.10'], address: '192.0.2.10', port: 1, expect: 'allow' },
  { allow: BROAD, own: ['::ffff:192.0.2.10'], address: '192.0.2.10', port: 1, expect: { category: 'own-address' } },
  { allow: BROAD, own: ['192.0.2.10'], address: '::ffff:c000:20a', port: 1, expect: { category: 'own-address' } },
  { own: ['127.0.0.1'], address: '127.0.0.1', port: 53, expect: { category: 'own-address' } },
  { own: ['127.0.0.1'], address: '127.0.0.2', port: 53, expect: 'allow' },
  { allow: '127.0.0.0/8', own: ['127.0.0.1'], address: '127.0.0.1', port: 53, expect: { category: 'own-address' } },
  { allow: '127.0.0.1', own: ['127.0.0.1'], address: '127.0.0.1', port: 53, expect: 'allow' },
  { allow: BROAD, own: ['2001:db8::10'], address: '2001:db8::10', port: 1, expect: { category: 'own-address' } },
  { allow: '::/0,2001:db8::10', own: ['2001:db8::10'], address: '2001:db8::10', port: 1, expect: 'allow' },
  { allow: BROAD, own: ['fe80::1%eth0'], address: 'fe80::1', port: 1, expect: { category: 'own-address' } },
];

function allowTexts(c: Case): string[] {
  const specs = c.ordered !== undefined ? c.ordered.filter(([a]) => a === 'allow').map(([, spec]) => spec) : c.allow !== undefined ? [c.allow] : [];
  return specs.flatMap((spec) => parseRuleList(spec, 'allow')).map(formatRule);
}

function expectedDecision(c: Case): ReturnType<TargetPolicy['check']> {
  const e = c.expect;
  if (e === 'allow') return { allowed: true };
  if (e === 'unlisted') return { allowed: false, reason: 'it matches no allow rule', rule: `no allow rule matched (allow: ${allowTexts(c).join(', ')})` };
  if (e === 'default-deny') return { allowed: false, reason: 'only loopback targets are allowed by default', rule: 'default: loopback only' };
  if (e === 'bad-port') return { allowed: false, reason: `port ${String(c.port)} is outside 1-65535`, rule: 'invalid target' };
  if (e === 'bad-address') return { allowed: false, reason: 'not a valid IP address', rule: 'invalid target' };
  if ('rule' in e) return { allowed: false, reason: `denied by rule ${e.rule}`, rule: `deny ${e.rule}` };
  const shown = formatIp(parseIp(c.address)!);
  const what =
    e.category === 'own-address'
      ? "the proxy's own address"
      : `${e.category === 'unspecified' ? 'an' : 'a'} ${e.category} address`;
  return {
    allowed: false,
    reason: `${shown} is ${what}; refused unless an allow rule names it explicitly (RFC 9298 §7)`,
    rule: e.category === 'own-address' ? 'guard: own address (no allow rule names it exactly)' : `guard: ${e.category} (no allow rule inside its range)`,
    category: e.category,
  };
}

function label(c: Case): string {
  const rules = c.ordered
    ? c.ordered.map(([a, s]) => `${a} ${s}`).join(' ; ')
    : [c.deny && `deny ${c.deny}`, c.allow && `allow ${c.allow}`].filter(Boolean).join(' ; ') || 'default';
  const own = c.own ? ` own=${c.own.join(',')}` : '';
  return `[${rules}${own}] ${c.address} port ${c.port} -> ${typeof c.expect === 'string' ? c.expect : JSON.stringify(c.expect)}`;
}

describe('TargetPolicy.check table', () => {
  it('has at least 40 cases', () => {
    assert.ok(cases.length >= 40, `only ${cases.length} cases`);
  });
  for (const c of cases) {
    it(label(c), () => {
      assert.deepEqual(policyFor(c).check(c.address, c.port), expectedDecision(c));
    });
  }
});

describe('TargetPolicy', () => {
  it('addOwnAddress takes effect on later checks', () => {
    const policy = new TargetPolicy({ rules: parseRuleList('0.0.0.0/0', 'allow') });
    assert.deepEqual(policy.check('198.51.100.4', 53), { allowed: true });
    policy.addOwnAddress('198.51.100.4');
    assert.equal(policy.check('198.51.100.4', 53).allowed, false);
    assert.deepEqual(policy.check('198.51.100.5', 53), { allowed: true });
  });

  it('rejects an unparseable own address with INVALID_OPTION', () => {
    assert.throws(
      () => new TargetPolicy({ ownAddresses: ['not-an-ip'] }),
      (err: unknown) => err instanceof UdpTunnelError && err.code === ErrorCodes.INVALID_OPTION,
    );
  });

  it('rejects hand-built rules that are malformed', () => {
    const bad: PolicyRule[] = [
      { action: 'allow', family: 4, network: 0x0a000001n, prefix: 8 },
      { action: 'allow', family: 4, network: 0n, prefix: 33 },
      { action: 'allow', family: 4, network: 1n << 32n, prefix: 32 },
      { action: 'allow', family: 6, network: -1n, prefix: 128 },
      { action: 'allow', family: 4, network: 0n, prefix: 0, ports: { lo: 0, hi: 10 } },
      { action: 'allow', family: 4, network: 0n, prefix: 0, ports: { lo: 10, hi: 9 } },
      { action: 'maybe' as 'allow', family: 4, network: 0n, prefix: 0 },
      { action: 'allow', family: 5 as 4, network: 0n, prefix: 0 },
    ];
    for (const rule of bad) {
      assert.throws(
        () => new TargetPolicy({ rules: [rule] }),
        (err: unknown) => err instanceof UdpTunnelError && err.code === ErrorCodes.INVALID_OPTION,
        JSON.stringify(rule, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)),
      );
    }
  });

  it('does not keep a reference to the caller rule objects', () => {
    const rules = parseRuleList('10.0.0.0/8', 'allow');
    const policy = new TargetPolicy({ rules });
    rules[0]!.prefix = 0;
    rules[0]!.network = 0n;
    assert.deepEqual(policy.check('8.8.8.8', 53), { allowed: false, reason: 'it matches no allow rule', rule: 'no allow rule matched (allow: 10.0.0.0/8)' });
  });

  it('describe lists guards, rules in order and the default', () => {
    const policy = new TargetPolicy({
      rules: [...parseRuleList('10.0.0.0/8:53', 'deny'), ...parseRuleList('0.0.0.0/0,[2001:db8::/32]:1-1024', 'allow')],
      ownAddresses: ['192.0.2.1', '2001:DB8:0:0:0:0:0:1'],
    });
    assert.deepEqual(policy.describe(), [
      'refuse own addresses 192.0.2.1, 2001:db8::1 unless an allow rule names the exact address',
      'refuse unspecified, loopback, link-local, multicast, broadcast targets unless an allow rule lies inside that range',
      'deny 10.0.0.0/8:53',
      'allow 0.0.0.0/0 (all ports)',
      'allow [2001:db8::/32]:1-1024',
      'deny everything else',
    ]);
  });

  it('names at most 8 allow rules in a "no allow rule matched" decision and counts the rest', () => {
    const specs = Array.from({ length: 10 }, (_, i) => `10.${i}.0.0/16`);
    const d = new TargetPolicy({ rules: parseRuleList(specs.join(','), 'allow') }).check('192.0.2.1', 53);
    assert.deepEqual(d, { allowed: false, reason: 'it matches no allow rule', rule: `no allow rule matched (allow: ${specs.slice(0, 8).join(', ')}, 2 more)` });
  });

  it('summary gives the rules as data, the default and the allow rules that open loopback', () => {
    const policy = new TargetPolicy({
      rules: [...parseRuleList('127.0.0.2/32', 'deny'), ...parseRuleList('10.0.0.0/8,127.0.0.1:53,[::1]:53', 'allow')],
      ownAddresses: ['192.0.2.1'],
    });
    assert.deepEqual(policy.summary(), {
      deny: ['127.0.0.2/32'],
      allow: ['10.0.0.0/8', '127.0.0.1/32:53', '[::1/128]:53'],
      default: 'deny',
      loopbackAllowRules: ['127.0.0.1/32:53', '[::1/128]:53'],
      guarded: ['unspecified', 'loopback', 'link-local', 'multicast', 'broadcast'],
      ownAddresses: ['192.0.2.1'],
    });
    // A broad allow rule does not open loopback (it is guarded); only one inside 127.0.0.0/8 or ::1 does.
    assert.deepEqual(new TargetPolicy({ rules: parseRuleList('0.0.0.0/0,::/0', 'allow') }).summary().loopbackAllowRules, []);
    const byDefault = new TargetPolicy().summary();
    assert.deepEqual([byDefault.default, byDefault.allow, byDefault.deny, byDefault.loopbackAllowRules], ['loopback-only', [], [], []]);
  });

  it('describe states the loopback default when there is no allow rule', () => {
    assert.deepEqual(new TargetPolicy().describe(), [
      'refuse unspecified, loopback, link-local, multicast, broadcast targets unless an allow rule lies inside that range',
      'allow loopback (127.0.0.0/8, ::1) only; deny everything else',
    ]);
  });
});

describe('parseRuleList', () => {
  const v4 = (network: number, prefix: number, ports?: [number, number]): PolicyRule => ({
    action: 'allow',
    family: 4,
    network: BigInt(network >>> 0),
    prefix,
    ...(ports ? { ports: { lo: ports[0], hi: ports[1] } } : {}),
  });
  const v6 = (network: bigint, prefix: number, ports?: [number, number]): PolicyRule => ({
    action: 'allow',
    family: 6,
    network,
    prefix,
    ...(ports ? { ports: { lo: ports[0], hi: ports[1] } } : {}),
  });
  const valid: Array<[string, PolicyRule[]]> = [
    ['10.0.0.0/8', [v4(0x0a000000, 8)]],
    ['127.0.0.1', [v4(0x7f000001, 32)]],
    ['127.0.0.0/8:53', [v4(0x7f000000, 8, [53, 53])]],
    ['10.1.2.3:1000-2000', [v4(0x0a010203, 32, [1000, 2000])]],
    ['1.2.3.4:65535', [v4(0x01020304, 32, [65535, 65535])]],
    ['0.0.0.0/0', [v4(0, 0)]],
    ['[::1]:53', [v6(1n, 128, [53, 53])]],
    ['[2001:db8::/32]:1-1024', [v6(0x20010db8n << 96n, 32, [1, 1024])]],
    ['[2001:db8::]/32:53', [v6(0x20010db8n << 96n, 32, [53, 53])]],
    ['[2001:db8::]/32', [v6(0x20010db8n << 96n, 32)]],
    ['[::1]', [v6(1n, 128)]],
    ['::1', [v6(1n, 128)]],
    ['fe80::/10', [v6(0xfe80n << 112n, 10)]],
    ['[::]/0', [v6(0n, 0)]],
    ['::ffff:127.0.0.1', [v4(0x7f000001, 32)]],
    ['[::ffff:0:0/96]:53', [v4(0, 0, [53, 53])]],
    ['::/95', [v6(0n, 95)]],
    [' 10.0.0.0/8 , [::1]:7 ', [v4(0x0a000000, 8), v6(1n, 128, [7, 7])]],
  ];
  for (const [spec, rules] of valid) {
    it(`parses ${JSON.stringify(spec)}`, () => {
      assert.deepEqual(parseRuleList(spec, 'allow'), rules);
      assert.deepEqual(
        parseRuleList(spec, 'deny'),
        rules.map((r) => ({ ...r, action: 'deny' })),
      );
    });
  }

  // [spec, the entry the message must name]
  const invalid: Array<[string, string]> = [
    ['10.0.0.0/33', '10.0.0.0/33'],
    ['[::/129]', '[::/129]'],
    ['::/129', '::/129'],
    ['1.2.3.4:0', '1.2.3.4:0'],
    ['1.2.3.4:65536', '1.2.3.4:65536'],
    ['1.2.3.4:99999999', '1.2.3.4:99999999'],
    ['1.2.3.4:2000-1000', '1.2.3.4:2000-1000'],
    ['1.2.3.4:-1', '1.2.3.4:-1'],
    ['1.2.3.4:1-', '1.2.3.4:1-'],
    ['1.2.3.4:01', '1.2.3.4:01'],
    ['1.2.3.4:', '1.2.3.4:'],
    ['1.2.3.4:53:54', '1.2.3.4:53:54'],
    ['1.2.3.4/', '1.2.3.4/'],
    ['1.2.3.4/08', '1.2.3.4/08'],
    ['1.2.3.4/-1', '1.2.3.4/-1'],
    ['1.2.3', '1.2.3'],
    ['256.0.0.1', '256.0.0.1'],
    ['garbage', 'garbage'],
    ['localhost:53', 'localhost:53'],
    ['fe80::1%eth0', 'fe80::1%eth0'],
    ['[fe80::1%eth0]:53', '[fe80::1%eth0]:53'],
    ['10.1.2.3/8', '10.1.2.3/8'],
    ['2001:db8::/32:53', '2001:db8::/32:53'],
    ['2001:db8::1:99999', '2001:db8::1:99999'],
    ['[::1', '[::1'],
    ['[::1]x', '[::1]x'],
    ['[::1]53', '[::1]53'],
    ['[10.0.0.1]:53', '[10.0.0.1]:53'],
    ['[::1/64]/64', '[::1/64]/64'],
    ['::ffff:0:0/95', '::ffff:0:0/95'],
    ['10.0.0.0/8,,127.0.0.1', ''],
    ['10.0.0.0/8, ', ' '],
    ['', ''],
    ['10.0.0.0/8,bogus,127.0.0.1', 'bogus'],
  ];
  for (const [spec, entry] of invalid) {
    it(`rejects ${JSON.stringify(spec)} naming ${JSON.stringify(entry)}`, () => {
      assert.throws(
        () => parseRuleList(spec, 'allow'),
        (err: unknown) =>
          err instanceof UdpTunnelError &&
          err.code === ErrorCodes.INVALID_OPTION &&
          err.message.startsWith(`invalid target rule ${JSON.stringify(entry)}: `),
      );
    });
  }

  it('explains why an entry is bad', () => {
    const messageOf = (spec: string): string => {
      try {
        parseRuleList(spec, 'allow');
      } catch (err) {
        return (err as Error).message;
      }
      return 'did not throw';
    };
    assert.equal(messageOf('10.0.0.0/33'), 'invalid target rule "10.0.0.0/33": prefix /33 exceeds 32');
    assert.equal(messageOf('1.2.3.4:0'), 'invalid target rule "1.2.3.4:0": port 0 out of range 1-65535');
    assert.equal(messageOf('1.2.3.4:9-8'), 'invalid target rule "1.2.3.4:9-8": port range 9-8 is reversed');
    assert.equal(messageOf('::1%lo'), 'invalid target rule "::1%lo": zone ids (%...) are not supported');
    assert.equal(
      messageOf('10.1.2.3/8'),
      'invalid target rule "10.1.2.3/8": host bits set after /8; did you mean 10.0.0.0/8?',
    );
    assert.equal(
      messageOf('2001:db8::/32:53'),
      'invalid target rule "2001:db8::/32:53": bad prefix length "32:53" ' +
        '(an IPv6 rule with a port needs brackets: [2001:db8::/32]:53)',
    );
  });

  it('rejects an unknown action', () => {
    assert.throws(
      () => parseRuleList('10.0.0.0/8', 'permit' as 'allow'),
      (err: unknown) => err instanceof UdpTunnelError && err.code === ErrorCodes.INVALID_OPTION,
    );
  });
});

describe('tunnel/policy: address helpers', () => {
  it('parseIp returns family and integer value, normalizing IPv4-mapped IPv6', () => {
    assert.deepEqual(parseIp('127.0.0.1'), { family: 4, value: 0x7f000001n });
    assert.deepEqual(parseIp('255.255.255.255'), { family: 4, value: 0xffffffffn });
    assert.deepEqual(parseIp('::'), { family: 6, value: 0n });
    assert.deepEqual(parseIp('::1'), { family: 6, value: 1n });
    assert.deepEqual(parseIp('2001:db8::1'), { family: 6, value: (0x20010db8n << 96n) | 1n });
    assert.deepEqual(parseIp('1:2:3:4:5:6:7:8'), { family: 6, value: 0x00010002000300040005000600070008n });
    assert.deepEqual(parseIp('1:2:3:4:5:6:1.2.3.4'), { family: 6, value: 0x00010002000300040005000601020304n });
    assert.deepEqual(parseIp('::ffff:127.0.0.1'), { family: 4, value: 0x7f000001n });
    assert.deepEqual(parseIp('::ffff:7f00:1'), { family: 4, value: 0x7f000001n });
    assert.deepEqual(parseIp('0:0:0:0:0:FFFF:0A00:0001'), { family: 4, value: 0x0a000001n });
    assert.deepEqual(parseIp('::1.2.3.4'), { family: 6, value: 0x01020304n });
    for (const bad of ['', '127.1', '010.0.0.1', '[::1]', 'fe80::1%eth0', ' 1.2.3.4', 'example.com', '1::2::3']) {
      assert.equal(parseIp(bad), null, bad);
    }
  });

  it('formatIp writes RFC 5952 text', () => {
    const cases: Array<[string, string]> = [
      ['2001:0DB8:0000:0000:0001:0000:0000:0001', '2001:db8::1:0:0:1'],
      ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
      ['1:0:2:3:4:5:6:7', '1:0:2:3:4:5:6:7'],
      ['0:0:0:0:0:0:0:0', '::'],
      ['fe80:0:0:0:0:0:0:1', 'fe80::1'],
      ['1:2:3:4:5:6:7:0', '1:2:3:4:5:6:7:0'],
      ['1:0:0:4:5:0:0:8', '1::4:5:0:0:8'],
      ['10.0.0.1', '10.0.0.1'],
      ['::ffff:10.0.0.1', '10.0.0.1'],
    ];
    for (const [input, text] of cases) assert.equal(formatIp(parseIp(input)!), text, input);
  });

  it('ipCategory classifies each range', () => {
    const cases: Array<[string, ReturnType<typeof ipCategory>]> = [
      ['127.0.0.1', 'loopback'],
      ['::1', 'loopback'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['169.254.169.254', 'link-local'],
      ['fe80::1', 'link-local'],
      ['224.0.0.1', 'multicast'],
      ['239.255.255.255', 'multicast'],
      ['ff05::2', 'multicast'],
      ['255.255.255.255', 'broadcast'],
      ['0.0.0.0', 'unspecified'],
      ['::', 'unspecified'],
      ['10.0.0.1', 'private'],
      ['172.16.0.1', 'private'],
      ['172.31.255.255', 'private'],
      ['172.32.0.1', 'public'],
      ['192.168.1.1', 'private'],
      ['100.64.0.1', 'private'],
      ['fd12:3456::1', 'private'],
      ['8.8.8.8', 'public'],
      ['2606:4700::1111', 'public'],
    ];
    for (const [addr, category] of cases) assert.equal(ipCategory(addr), category, addr);
    assert.throws(
      () => ipCategory('nope'),
      (err: unknown) => err instanceof UdpTunnelError && err.code === ErrorCodes.INVALID_ADDRESS,
    );
  });

  it('isLoopback', () => {
    assert.equal(isLoopback('127.0.0.1'), true);
    assert.equal(isLoopback('127.200.0.9'), true);
    assert.equal(isLoopback('::1'), true);
    assert.equal(isLoopback('::ffff:7f00:1'), true);
    assert.equal(isLoopback('128.0.0.1'), false);
    assert.equal(isLoopback('::2'), false);
    assert.equal(isLoopback('localhost'), false);
  });
});

describe('tunnel/policy: properties', () => {
  const MAPPED = 0xffffn << 32n;
  const mask = (bits: number, prefix: number): bigint =>
    (((1n << BigInt(bits)) - 1n) >> BigInt(bits - prefix)) << BigInt(bits - prefix);
  const ports = fc.option(
    fc.tuple(fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 1, max: 65535 })).map(([a, b]) => ({
      lo: Math.min(a, b),
      hi: Math.max(a, b),
    })),
    { nil: undefined },
  );
  const ruleArb: fc.Arbitrary<PolicyRule> = fc
    .record({
      action: fc.constantFrom<'allow' | 'deny'>('allow', 'deny'),
      family: fc.constantFrom<4 | 6>(4, 6),
      v4: fc.bigInt(0n, (1n << 32n) - 1n),
      v6: fc.bigInt(0n, (1n << 128n) - 1n),
      p4: fc.integer({ min: 0, max: 32 }),
      p6: fc.integer({ min: 0, max: 128 }),
      ports,
    })
    .map(({ action, family, v4, v6, p4, p6, ports: pr }) => {
      const prefix = family === 4 ? p4 : p6;
      const network = (family === 4 ? v4 : v6) & mask(family === 4 ? 32 : 128, prefix);
      return { action, family, network, prefix, ...(pr ? { ports: pr } : {}) };
    })
    // IPv4-mapped IPv6 networks deliberately read back as IPv4; covered by the table above.
    .filter((r) => !(r.family === 6 && r.prefix >= 96 && r.network >> 32n === 0xffffn));

  it('formatRule -> parseRuleList returns the same rules, and describe is stable', () => {
    fc.assert(
      fc.property(fc.array(ruleArb, { minLength: 1, maxLength: 6 }), (rules) => {
        const reparsed = rules.flatMap((r) => parseRuleList(formatRule(r), r.action));
        assert.deepEqual(reparsed, rules);
        assert.deepEqual(new TargetPolicy({ rules: reparsed }).describe(), new TargetPolicy({ rules }).describe());
      }),
    );
  });

  it('parseRuleList on any string returns valid rules or throws INVALID_OPTION, nothing else', () => {
    const chars = fc.constantFrom(...'0123456789abcdefABCDEF:./[]-,% fx'.split(''));
    const input = fc.oneof(fc.string(), fc.string({ unit: chars, maxLength: 40 }));
    fc.assert(
      fc.property(input, fc.constantFrom<'allow' | 'deny'>('allow', 'deny'), (spec, action) => {
        let rules: PolicyRule[];
        try {
          rules = parseRuleList(spec, action);
        } catch (err) {
          assert.ok(err instanceof UdpTunnelError, `threw ${String(err)}`);
          assert.equal(err.code, ErrorCodes.INVALID_OPTION);
          return;
        }
        const policy = new TargetPolicy({ rules });
        const again = parseRuleList(rules.map(formatRule).join(','), action);
        assert.deepEqual(again, rules);
        assert.deepEqual(new TargetPolicy({ rules: again }).describe(), policy.describe());
      }),
    );
  });

  it('check never throws, and an IPv4 target decides like its IPv4-mapped form', () => {
    fc.assert(
      fc.property(
        fc.array(ruleArb, { maxLength: 5 }),
        fc.bigInt(0n, (1n << 32n) - 1n),
        fc.integer({ min: -2, max: 70000 }),
        fc.string(),
        (rules, v4, port, junk) => {
          const policy = new TargetPolicy({ rules });
          const ip = formatIp({ family: 4, value: v4 });
          const mapped = formatIp({ family: 6, value: MAPPED | v4 });
          assert.equal(mapped.startsWith('::ffff:'), true);
          assert.deepEqual(policy.check(`::ffff:${ip}`, port), policy.check(ip, port));
          assert.deepEqual(policy.check(mapped, port), policy.check(ip, port));
          assert.equal(typeof policy.check(junk, port).allowed, 'boolean');
        },
      ),
    );
  });

  it('formatIp agrees with the WHATWG URL serializer and parseIp reads it back', () => {
    fc.assert(
      fc.property(fc.bigInt(0n, (1n << 128n) - 1n), (value) => {
        const text = formatIp({ family: 6, value });
        assert.equal(isIP(text), 6);
        assert.equal(new URL(`http://[${text}]/`).hostname, `[${text}]`);
        const back = parseIp(text);
        if (value >> 32n === 0xffffn) assert.deepEqual(back, { family: 4, value: value & 0xffffffffn });
        else assert.deepEqual(back, { family: 6, value });
      }),
    );
  });
});
