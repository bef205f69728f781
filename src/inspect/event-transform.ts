import type { InspectEvent } from './events.js';

/** Header fields whose values carry credentials (RFC 9110 §11.6.2, §11.7.2). */
const CREDENTIAL_FIELDS = new Set(['authorization', 'proxy-authorization']);

/**
 * Cuts a capsule event's hex preview (payloadHex / valueHex) to `bytes` bytes, setting previewTruncated; other
 * events, and previews already short enough, are returned as they are. Never mutates its argument.
 */
export function trimPreview(ev: InspectEvent, bytes: number): InspectEvent {
  if (ev.event !== 'capsule') return ev;
  const max = bytes * 2;
  const p = ev.payloadHex;
  const v = ev.valueHex;
  const cutP = p !== undefined && p.length > max;
  const cutV = v !== undefined && v.length > max;
  if (!cutP && !cutV) return ev;
  return {
    ...ev,
    ...(cutP ? { payloadHex: p.slice(0, max) } : {}),
    ...(cutV ? { valueHex: v.slice(0, max) } : {}),
    previewTruncated: true,
  };
}

/**
 * Replaces the credentials in Authorization and Proxy-Authorization fields of request events with `<redacted>`,
 * keeping the scheme word (`Bearer <redacted>`), so output and recordings do not leak tokens. Never mutates.
 */
export function redactCredentials(ev: InspectEvent): InspectEvent {
  if (ev.event !== 'request' || !ev.headers.some(([n]) => CREDENTIAL_FIELDS.has(n.toLowerCase()))) return ev;
  return {
    ...ev,
    headers: ev.headers.map(([n, v]): [string, string] => {
      if (!CREDENTIAL_FIELDS.has(n.toLowerCase())) return [n, v];
      const scheme = /^\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s+\S/.exec(v);
      return [n, scheme ? `${scheme[1]} <redacted>` : '<redacted>'];
    }),
  };
}
