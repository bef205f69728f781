import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import type { InspectEvent } from './events.js';

type Check = (v: unknown) => boolean;

const isNum: Check = (v) => typeof v === 'number' && Number.isFinite(v);
const isCount: Check = (v) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isStr: Check = (v) => typeof v === 'string';
const isBool: Check = (v) => typeof v === 'boolean';
const isHex: Check = (v) => typeof v === 'string' && /^(?:[0-9a-f]{2})*$/.test(v);
const isDir: Check = (v) => v === '->' || v === '<-';
const isBigish: Check = (v) => isCount(v) || (typeof v === 'string' && /^[0-9]{1,20}$/.test(v));
const orNull = (c: Check): Check => (v) => v === null || c(v);
const isHeaders: Check = (v) => Array.isArray(v) && v.every((p) => Array.isArray(p) && p.length === 2 && isStr(p[0]) && isStr(p[1]));
const isTarget: Check = (v) =>
  v === null || (typeof v === 'object' && isStr((v as Record<string, unknown>)['host']) && isCount((v as Record<string, unknown>)['port']));
const CLOSE_REASONS = new Set(['end-stream', 'rst-stream', 'goaway', 'tcp-fin', 'tcp-rst', 'refused', 'not-a-tunnel', 'error', 'capture-end', 'local']);

const REQUIRED: Record<InspectEvent['event'], Record<string, Check>> = {
  request: {
    dir: (v) => v === '->',
    http: (v) => v === '1.1' || v === '2',
    method: isStr,
    protocol: orNull(isStr),
    scheme: orNull(isStr),
    authority: orNull(isStr),
    path: orNull(isStr),
    target: isTarget,
    capsuleProtocol: isBool,
    headers: isHeaders,
  },
  response: {
    dir: (v) => v === '<-',
    http: (v) => v === '1.1' || v === '2',
    status: isCount,
    proxyStatus: orNull(isStr),
    capsuleProtocol: isBool,
    headers: isHeaders,
  },
  capsule: {
    dir: isDir,
    offset: isCount,
    type: isBigish,
    typeName: isStr,
    length: isCount,
    typeWidth: isCount,
    lengthWidth: isCount,
    nonMinimal: isBool,
    previewTruncated: isBool,
  },
  error: { dir: isDir, offset: isCount, layer: (v) => v === 'capsule' || v === 'http' || v === 'tcp', code: isStr, reason: isStr, rfc: orNull(isStr) },
  end: { dir: isDir, clean: isBool, totalBytes: isCount, capsules: isCount, ignoredBytes: isCount },
  close: { reason: (v) => typeof v === 'string' && CLOSE_REASONS.has(v), detail: orNull(isStr) },
};

const OPTIONAL_CAPSULE: Record<string, Check> = {
  contextId: isBigish,
  contextIdWidth: isCount,
  payloadLength: isCount,
  payloadHex: isHex,
  valueHex: isHex,
  ipVersion: (v) => v === 0 || v === 4 || v === 6,
  address: orNull(isStr),
  port: orNull(isCount),
  target: (v) =>
    typeof v === 'object' && v !== null && ((v as Record<string, unknown>)['ipVersion'] === 4 || (v as Record<string, unknown>)['ipVersion'] === 6) &&
    isStr((v as Record<string, unknown>)['address']) && isCount((v as Record<string, unknown>)['port']) && isBool((v as Record<string, unknown>)['compressed']),
};

function invalid(message: string, line: number | undefined): never {
  const where = line === undefined ? '' : `line ${line}: `;
  throw new UdpTunnelError(ErrorCodes.INVALID_INPUT, `inspect event ${where}${message}`, line === undefined ? {} : { line });
}

/**
 * Checks that a parsed JSON value is an inspect event of this schema (extra fields are kept; required ones must have
 * the documented types). Throws UdpTunnelError INVALID_INPUT naming the field (and `line`, when given).
 */
export function parseInspectEvent(value: unknown, line?: number): InspectEvent {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) invalid('is not a JSON object', line);
  const o = value as Record<string, unknown>;
  const kind = o['event'];
  if (typeof kind !== 'string' || !(kind in REQUIRED)) invalid(`has unknown event type ${JSON.stringify(kind)}`, line);
  if (o['tMs'] === undefined && isNum(o['t'])) {
    // Schema 1 (recordings made before the rename) called the time `t`.
    o['tMs'] = o['t'];
    delete o['t'];
  }
  if (!isNum(o['tMs'])) invalid(`field 'tMs' must be a number`, line);
  if (!isStr(o['session'])) invalid(`field 'session' must be a string`, line);
  const checks = REQUIRED[kind as InspectEvent['event']];
  for (const [field, check] of Object.entries(checks)) {
    if (!check(o[field])) invalid(`${kind} field '${field}' is missing or has the wrong type (${JSON.stringify(o[field])?.slice(0, 40)})`, line);
  }
  if (kind === 'capsule') {
    for (const [field, check] of Object.entries(OPTIONAL_CAPSULE)) {
      if (o[field] !== undefined && !check(o[field])) invalid(`capsule field '${field}' has the wrong type`, line);
    }
  }
  return o as unknown as InspectEvent;
}

/** Parses an NDJSON recording of inspect events (blank lines skipped); errors name the line. */
export function parseInspectNdjson(text: string): InspectEvent[] {
  const out: InspectEvent[] = [];
  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    const raw = lines[n]!.trim();
    if (raw === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch (err) {
      invalid(`is not valid JSON (${err instanceof Error ? err.message : String(err)})`, n + 1);
    }
    out.push(parseInspectEvent(value, n + 1));
  }
  return out;
}
