import { formatIp as formatIpBytes } from './codec/bind.js';
import { isIP } from 'node:net';
import { ErrorCodes, UdpTunnelError } from './errors.js';

/** What a rule does to a target it matches. */
export type PolicyAction = 'allow' | 'deny';

/** Address family of a parsed address or rule. */
export type IpFamily = 4 | 6;

/** A parsed address: family and the address as an unsigned 32- or 128-bit integer. */
export interface ParsedIp {
  family: IpFamily;
  value: bigint;
}

/** Inclusive UDP port range of a rule. */
export interface PortRange {
  lo: number;
  hi: number;
}

/** One target rule: a network (host bits clear) and optional port range; `ports` undefined = every port. */
export interface PolicyRule {
  action: PolicyAction;
  family: IpFamily;
  network: bigint;
  prefix: number;
  ports?: PortRange;
}

/** Coarse class of an address, as reported by `ipCategory`. */
export type IpCategory = 'loopback' | 'link-local' | 'multicast' | 'broadcast' | 'unspecified' | 'private' | 'public';

/** Why a guarded target was refused: an address class, or one of the proxy's own addresses. */
export type RefusedCategory = 'loopback' | 'link-local' | 'multicast' | 'broadcast' | 'unspecified' | 'own-address';

/**
 * Outcome of `TargetPolicy.check`. A refusal says why in words fit for the remote client (`reason`, never naming
 * the operator's allow rules) and which rule decided, for the operator's log (`rule`: `deny CIDR`, `no allow rule
 * matched (allow: ...)`, `default: loopback only`, a guarded class, or `invalid target`).
 */
export type PolicyDecision = { allowed: true } | { allowed: false; reason: string; rule: string; category?: RefusedCategory };

/** Allow rules named in a `no allow rule matched` decision; the rest are counted. */
const LISTED_ALLOW_RULES = 8;

/** `TargetPolicy.summary`: the effective policy as data. */
export interface PolicySummary {
  /** Deny rules, checked first, in order (`formatRule` text). */
  deny: string[];
  /** Allow rules, checked after every deny rule, in order. */
  allow: string[];
  /** What a target no rule matches gets: loopback only (no allow rule given), or refused. */
  default: 'loopback-only' | 'deny';
  /** Allow rules that lie inside loopback and so can open loopback targets; empty with `default: 'deny'` = none can. */
  loopbackAllowRules: string[];
  /** Address classes refused unless an allow rule lies inside them (RFC 9298 §7). */
  guarded: RefusedCategory[];
  /** The proxy's own addresses, refused unless an allow rule names the exact address. */
  ownAddresses: string[];
}

/** Options of `TargetPolicy`. */
export interface TargetPolicyOptions {
  /** Ordered rules, first match wins (put deny rules first). */
  rules?: PolicyRule[];
  /** The proxy's own addresses, refused unless an allow rule names the exact address (/32 or /128). */
  ownAddresses?: string[];
}

const BITS: Record<IpFamily, number> = { 4: 32, 6: 128 };
const MAX_PORT = 65535;
const V4_MAPPED_PREFIX = 0xffffn << 32n;
const V4_MAPPED_MASK = ~0xffffffffn & ((1n << 128n) - 1n);

/** A network as family + masked value + prefix, with its mask precomputed for per-request matching. */
interface Net {
  family: IpFamily;
  network: bigint;
  prefix: number;
  mask: bigint;
}

function maskOf(family: IpFamily, prefix: number): bigint {
  const bits = BITS[family];
  const all = (1n << BigInt(bits)) - 1n;
  return (all >> BigInt(bits - prefix)) << BigInt(bits - prefix);
}

function net(family: IpFamily, network: bigint, prefix: number): Net {
  return { family, network, prefix, mask: maskOf(family, prefix) };
}

function contains(n: Net, ip: ParsedIp): boolean {
  return n.family === ip.family && (ip.value & n.mask) === n.network;
}

/** True when network `inner` lies entirely inside `outer`. */
function within(inner: Net, outer: Net): boolean {
  return inner.family === outer.family && inner.prefix >= outer.prefix && (inner.network & outer.mask) === outer.network;
}

// RFC 9298 §7: targets a proxy should refuse unless the operator allows them.
// Loopback is guarded too: a broad `--allow 0.0.0.0/0` must not open the proxy host's own services.
const GUARDED: ReadonlyArray<{ category: Exclude<RefusedCategory, 'own-address'>; nets: Net[] }> = [
  { category: 'unspecified', nets: [net(4, 0n, 8), net(6, 0n, 128)] },
  { category: 'loopback', nets: [net(4, 0x7f000000n, 8), net(6, 1n, 128)] },
  { category: 'link-local', nets: [net(4, 0xa9fe0000n, 16), net(6, 0xfe80n << 112n, 10)] },
  { category: 'multicast', nets: [net(4, 0xe0000000n, 4), net(6, 0xffn << 120n, 8)] },
  { category: 'broadcast', nets: [net(4, 0xffffffffn, 32)] },
];

// RFC 1918, RFC 6598 (shared CGN space) and RFC 4193 (unique local): informational only.
const PRIVATE: Net[] = [
  net(4, 0x0a000000n, 8),
  net(4, 0xac100000n, 12),
  net(4, 0xc0a80000n, 16),
  net(4, 0x64400000n, 10),
  net(6, 0xfcn << 120n, 7),
];

function parseV4(text: string): bigint {
  let value = 0n;
  for (const part of text.split('.')) value = (value << 8n) | BigInt(Number(part));
  return value;
}

function parseV6(text: string): bigint {
  // isIP has already validated the syntax; only expand '::' and a trailing dotted quad.
  let groups: number[] = [];
  const toGroups = (s: string): number[] => {
    if (s === '') return [];
    const out: number[] = [];
    for (const piece of s.split(':')) {
      if (piece.includes('.')) {
        const v4 = Number(parseV4(piece));
        out.push(v4 >>> 16, v4 & 0xffff);
      } else {
        out.push(parseInt(piece, 16));
      }
    }
    return out;
  };
  const gap = text.indexOf('::');
  if (gap >= 0) {
    const head = toGroups(text.slice(0, gap));
    const tail = toGroups(text.slice(gap + 2));
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  } else {
    groups = toGroups(text);
  }
  let value = 0n;
  for (const g of groups) value = (value << 16n) | BigInt(g);
  return value;
}

/** Parses without IPv4-mapped normalization; null for anything that is not a plain address (zone ids included). */
function parseIpRaw(addr: string): ParsedIp | null {
  if (typeof addr !== 'string' || addr.includes('%')) return null;
  const family = isIP(addr);
  if (family === 4) return { family: 4, value: parseV4(addr) };
  if (family === 6) return { family: 6, value: parseV6(addr) };
  return null;
}

function isV4Mapped(ip: ParsedIp): boolean {
  return ip.family === 6 && (ip.value & V4_MAPPED_MASK) === V4_MAPPED_PREFIX;
}

/**
 * Parses an IPv4 or IPv6 address (no brackets, no zone id). IPv4-mapped IPv6 (`::ffff:a.b.c.d`) comes back as
 * family 4, so no check can be bypassed by spelling an IPv4 target as IPv6.
 */
export function parseIp(addr: string): ParsedIp | null {
  const ip = parseIpRaw(addr);
  if (ip !== null && isV4Mapped(ip)) return { family: 4, value: ip.value & 0xffffffffn };
  return ip;
}

function formatV4(value: bigint): string {
  const n = Number(value);
  return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
}

// RFC 5952 §4, written once in the codec (which formats the addresses of bound-tunnel datagrams too).
function formatV6(value: bigint): string {
  const bytes = new Uint8Array(16);
  for (let i = 0; i < 16; i++) bytes[15 - i] = Number((value >> BigInt(i * 8)) & 0xffn);
  return formatIpBytes(bytes);
}

/** Canonical text of a parsed address (dotted quad, or RFC 5952 IPv6). */
export function formatIp(ip: ParsedIp): string {
  return ip.family === 4 ? formatV4(ip.value) : formatV6(ip.value);
}

function guardedCategoryOf(ip: ParsedIp): Exclude<RefusedCategory, 'own-address'> | undefined {
  for (const g of GUARDED) if (g.nets.some((n) => contains(n, ip))) return g.category;
  return undefined;
}

/** Class of an address (IPv4-mapped IPv6 is classed as the IPv4 address); throws INVALID_ADDRESS when unparseable. */
export function ipCategory(addr: string): IpCategory {
  const ip = parseIp(addr);
  if (ip === null) {
    throw new UdpTunnelError(ErrorCodes.INVALID_ADDRESS, `not an IP address: ${JSON.stringify(String(addr))}`);
  }
  return guardedCategoryOf(ip) ?? (PRIVATE.some((n) => contains(n, ip)) ? 'private' : 'public');
}

/** True for 127.0.0.0/8, ::1 and their IPv4-mapped forms; false for anything else, including garbage. */
export function isLoopback(addr: string): boolean {
  const ip = parseIp(addr);
  return ip !== null && guardedCategoryOf(ip) === 'loopback';
}

function invalidEntry(entry: string, why: string): UdpTunnelError {
  return new UdpTunnelError(ErrorCodes.INVALID_OPTION, `invalid target rule ${JSON.stringify(entry)}: ${why}`, {
    entry,
  });
}

const DECIMAL = /^(?:0|[1-9][0-9]*)$/;
const BRACKET_HINT = ' (an IPv6 rule with a port needs brackets: [2001:db8::/32]:53)';

function parsePorts(entry: string, text: string): PortRange {
  const dash = text.indexOf('-');
  const loText = dash < 0 ? text : text.slice(0, dash);
  const hiText = dash < 0 ? text : text.slice(dash + 1);
  const parsePort = (s: string): number => {
    if (!DECIMAL.test(s) || s.length > 5) throw invalidEntry(entry, `bad port ${JSON.stringify(s)} (expected 1-65535)`);
    const n = Number(s);
    if (n < 1 || n > MAX_PORT) throw invalidEntry(entry, `port ${n} out of range 1-65535`);
    return n;
  };
  const lo = parsePort(loText);
  const hi = parsePort(hiText);
  if (lo > hi) throw invalidEntry(entry, `port range ${lo}-${hi} is reversed`);
  return { lo, hi };
}

function parseNetwork(entry: string, text: string): Omit<PolicyRule, 'action' | 'ports'> {
  if (text.includes('%')) throw invalidEntry(entry, 'zone ids (%...) are not supported');
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const raw = parseIpRaw(addrText);
  if (raw === null) {
    const hint = !entry.startsWith('[') && addrText.split(':').length > 2 ? BRACKET_HINT : '';
    throw invalidEntry(entry, `not an IP address or CIDR${hint}`);
  }
  let prefix = BITS[raw.family];
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    if (!DECIMAL.test(prefixText) || prefixText.length > 3) {
      const hint = prefixText.includes(':') ? BRACKET_HINT : '';
      throw invalidEntry(entry, `bad prefix length ${JSON.stringify(prefixText)}${hint}`);
    }
    prefix = Number(prefixText);
    if (prefix > BITS[raw.family]) throw invalidEntry(entry, `prefix /${prefix} exceeds ${BITS[raw.family]}`);
  }
  const mask = maskOf(raw.family, prefix);
  if ((raw.value & mask) !== raw.value) {
    const suggestion = `${formatIp({ family: raw.family, value: raw.value & mask })}/${prefix}`;
    throw invalidEntry(entry, `host bits set after /${prefix}; did you mean ${suggestion}?`);
  }
  // IPv4-mapped networks become IPv4 networks, because checked addresses are normalized the same way.
  if (raw.family === 6 && prefix >= 96 && isV4Mapped(raw)) {
    return { family: 4, network: raw.value & 0xffffffffn, prefix: prefix - 96 };
  }
  return { family: raw.family, network: raw.value, prefix };
}

function parseEntry(entry: string, action: PolicyAction): PolicyRule {
  let netText: string;
  let portText: string | undefined;
  if (entry.startsWith('[')) {
    // [v6], [v6/N], [v6]/N, each optionally followed by :PORT or :LO-HI
    const close = entry.indexOf(']');
    if (close < 0) throw invalidEntry(entry, "missing ']'");
    netText = entry.slice(1, close);
    let rest = entry.slice(close + 1);
    const restPrefix = /^\/[^:]*/.exec(rest);
    if (restPrefix !== null) {
      if (netText.includes('/')) throw invalidEntry(entry, 'two prefix lengths');
      netText += restPrefix[0];
      rest = rest.slice(restPrefix[0].length);
    }
    if (rest !== '') {
      if (!rest.startsWith(':')) throw invalidEntry(entry, `unexpected ${JSON.stringify(rest)} after ']'`);
      portText = rest.slice(1);
    }
    if (isIP(netText.split('/')[0] ?? '') === 4) throw invalidEntry(entry, 'brackets are for IPv6 only');
  } else {
    const colons = entry.split(':').length - 1;
    if (colons === 1) {
      const at = entry.indexOf(':');
      netText = entry.slice(0, at);
      portText = entry.slice(at + 1);
    } else {
      // Zero colons: IPv4 without port. Two or more: bare IPv6, which cannot carry a port unbracketed.
      netText = entry;
    }
  }
  const network = parseNetwork(entry, netText);
  if (portText === undefined) return { action, ...network };
  return { action, ...network, ports: parsePorts(entry, portText) };
}

/**
 * Parses `CIDR[:PORT|:LO-HI]` entries separated by commas (IPv6 in brackets when a port follows).
 * A bare address is a /32 or /128. Throws INVALID_OPTION naming the first bad entry.
 */
export function parseRuleList(spec: string, action: PolicyAction): PolicyRule[] {
  if (action !== 'allow' && action !== 'deny') {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `rule action must be "allow" or "deny"`);
  }
  if (typeof spec !== 'string') {
    throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `target rule list must be a string`);
  }
  const rules: PolicyRule[] = [];
  for (const rawEntry of spec.split(',')) {
    const entry = rawEntry.trim();
    if (entry === '') throw invalidEntry(rawEntry, `empty entry in rule list ${JSON.stringify(spec)}`);
    rules.push(parseEntry(entry, action));
  }
  return rules;
}

/** Canonical `CIDR[:PORT|:LO-HI]` text of a rule; `parseRuleList` reads it back to the same rule. */
export function formatRule(rule: PolicyRule): string {
  const cidr = `${formatIp({ family: rule.family, value: rule.network })}/${rule.prefix}`;
  if (rule.ports === undefined) return cidr;
  const ports = rule.ports.lo === rule.ports.hi ? `${rule.ports.lo}` : `${rule.ports.lo}-${rule.ports.hi}`;
  return `${rule.family === 6 ? `[${cidr}]` : cidr}:${ports}`;
}

interface CompiledRule extends Net {
  rule: PolicyRule;
  /** `formatRule` text, computed once so a refusal costs no formatting. */
  text: string;
  lo: number;
  hi: number;
  /** Guarded categories this allow rule names explicitly (its network lies inside them). */
  names: ReadonlySet<RefusedCategory>;
}

function validateRule(rule: PolicyRule): void {
  const bad = (why: string): UdpTunnelError => new UdpTunnelError(ErrorCodes.INVALID_OPTION, `invalid target rule: ${why}`);
  if (rule === null || typeof rule !== 'object') throw bad('not an object');
  if (rule.action !== 'allow' && rule.action !== 'deny') throw bad('action must be "allow" or "deny"');
  if (rule.family !== 4 && rule.family !== 6) throw bad('family must be 4 or 6');
  const bits = BITS[rule.family];
  if (!Number.isInteger(rule.prefix) || rule.prefix < 0 || rule.prefix > bits) throw bad(`prefix must be 0-${bits}`);
  if (typeof rule.network !== 'bigint' || rule.network < 0n || rule.network >> BigInt(bits) !== 0n) {
    throw bad(`network must be an unsigned ${bits}-bit bigint`);
  }
  if ((rule.network & maskOf(rule.family, rule.prefix)) !== rule.network) throw bad('host bits set');
  if (rule.ports !== undefined) {
    const { lo, hi } = rule.ports;
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi > MAX_PORT || lo > hi) {
      throw bad('ports must satisfy 1 <= lo <= hi <= 65535');
    }
  }
}

function ipKey(ip: ParsedIp): string {
  return `${ip.family}/${ip.value}`;
}

/**
 * RFC 9298 §7 target policy: ordered allow/deny rules (first match wins) over IPv4/IPv6 networks and port ranges,
 * with guarded address classes that only an allow rule naming them can open.
 */
export class TargetPolicy {
  readonly #rules: CompiledRule[];
  readonly #hasAllow: boolean;
  /** The `rule` of a refusal because no allow rule matched. */
  readonly #unmatched: string;
  readonly #own = new Map<string, ParsedIp>();

  /** Throws INVALID_OPTION for a malformed rule or own address. */
  constructor(options: TargetPolicyOptions = {}) {
    this.#rules = (options.rules ?? []).map((rule) => {
      validateRule(rule);
      const n = net(rule.family, rule.network, rule.prefix);
      const names = new Set<RefusedCategory>();
      for (const g of GUARDED) if (g.nets.some((outer) => within(n, outer))) names.add(g.category);
      return { ...n, rule: { ...rule }, text: formatRule(rule), lo: rule.ports?.lo ?? 1, hi: rule.ports?.hi ?? MAX_PORT, names };
    });
    const allows = this.#rules.filter((r) => r.rule.action === 'allow');
    this.#hasAllow = allows.length > 0;
    const listed = allows.slice(0, LISTED_ALLOW_RULES).map((r) => r.text);
    if (allows.length > LISTED_ALLOW_RULES) listed.push(`${allows.length - LISTED_ALLOW_RULES} more`);
    this.#unmatched = `no allow rule matched (allow: ${listed.join(', ')})`;
    for (const addr of options.ownAddresses ?? []) this.addOwnAddress(addr);
  }

  /** Registers one of the proxy's own addresses (a zone id is ignored); throws INVALID_OPTION if unparseable. */
  addOwnAddress(addr: string): void {
    const ip = parseIp(typeof addr === 'string' ? addr.replace(/%.*$/, '') : addr);
    if (ip === null) {
      const shown = JSON.stringify(String(addr));
      throw new UdpTunnelError(ErrorCodes.INVALID_OPTION, `own address is not an IP address: ${shown}`);
    }
    this.#own.set(ipKey(ip), ip);
  }

  /** Decides whether a datagram socket may be opened to `address`:`port` (apply to the resolved address). */
  check(address: string, port: number): PolicyDecision {
    if (!Number.isInteger(port) || port < 1 || port > MAX_PORT) {
      return { allowed: false, reason: `port ${String(port)} is outside 1-65535`, rule: 'invalid target' };
    }
    const ip = parseIp(address);
    if (ip === null) return { allowed: false, reason: 'not a valid IP address', rule: 'invalid target' };
    const guarded: RefusedCategory | undefined = this.#own.has(ipKey(ip)) ? 'own-address' : guardedCategoryOf(ip);
    // An own address that is also e.g. link-local needs both conditions named; the own check is the stricter one.
    const alsoCategory = guarded === 'own-address' ? guardedCategoryOf(ip) : undefined;
    let blockedBy: RefusedCategory | undefined;
    for (const r of this.#rules) {
      if (port < r.lo || port > r.hi || !contains(r, ip)) continue;
      if (r.rule.action === 'deny') return { allowed: false, reason: `denied by rule ${r.text}`, rule: `deny ${r.text}` };
      if (guarded !== undefined && !this.#names(r, guarded, alsoCategory)) {
        // This allow is too broad to open a guarded address; a later, narrower rule still may.
        blockedBy ??= guarded;
        continue;
      }
      return { allowed: true };
    }
    if (blockedBy !== undefined) return refusal(blockedBy, ip);
    if (!this.#hasAllow && guarded === 'loopback') return { allowed: true };
    if (guarded !== undefined && guarded !== 'loopback') return refusal(guarded, ip);
    if (this.#hasAllow) return { allowed: false, reason: 'it matches no allow rule', rule: this.#unmatched };
    return { allowed: false, reason: 'only loopback targets are allowed by default', rule: 'default: loopback only' };
  }

  /**
   * The policy as data, for startup reports: rules in the order they are checked (`formatRule` text), the default
   * for targets no rule matches, and the allow rules that open loopback (empty: loopback targets are refused).
   */
  summary(): PolicySummary {
    const of = (action: PolicyAction): string[] => this.#rules.filter((r) => r.rule.action === action).map((r) => r.text);
    return {
      deny: of('deny'),
      allow: of('allow'),
      default: this.#hasAllow ? 'deny' : 'loopback-only',
      loopbackAllowRules: this.#hasAllow ? this.#rules.filter((r) => r.rule.action === 'allow' && r.names.has('loopback')).map((r) => r.text) : [],
      guarded: GUARDED.map((g) => g.category),
      ownAddresses: [...this.#own.values()].map(formatIp),
    };
  }

  #names(r: CompiledRule, guarded: RefusedCategory, also: RefusedCategory | undefined): boolean {
    if (guarded === 'own-address') {
      if (r.prefix !== BITS[r.family]) return false;
      return also === undefined || r.names.has(also);
    }
    return r.names.has(guarded);
  }

  /** Human-readable effective policy for startup logs: the guards, then the rules in order, then the default. */
  describe(): string[] {
    const lines = this.#rules.map((r) => `${r.rule.action} ${formatRule(r.rule)}${r.rule.ports ? '' : ' (all ports)'}`);
    const cats = GUARDED.map((g) => g.category).join(', ');
    lines.unshift(`refuse ${cats} targets unless an allow rule lies inside that range`);
    if (this.#own.size > 0) {
      const own = [...this.#own.values()].map(formatIp).join(', ');
      lines.unshift(`refuse own addresses ${own} unless an allow rule names the exact address`);
    }
    lines.push(this.#hasAllow ? 'deny everything else' : 'allow loopback (127.0.0.0/8, ::1) only; deny everything else');
    return lines;
  }
}

function refusal(category: RefusedCategory, ip: ParsedIp): PolicyDecision {
  const what =
    category === 'own-address' ? "the proxy's own address" : `${category === 'unspecified' ? 'an' : 'a'} ${category} address`;
  return {
    allowed: false,
    reason: `${formatIp(ip)} is ${what}; refused unless an allow rule names it explicitly (RFC 9298 §7)`,
    rule: category === 'own-address' ? 'guard: own address (no allow rule names it exactly)' : `guard: ${category} (no allow rule inside its range)`,
    category,
  };
}
