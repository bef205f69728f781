/**
 * Inspect event schema: what `udp-tunnel inspect` reports, whatever the source (relay, in-process tap, raw/hex file,
 * NDJSON recording, pcap capture). One event is one JSON object; a recording is one event per line (NDJSON).
 *
 * Conventions (all sources):
 * - Every event has `event` (the discriminant), `tMs` and `session`.
 * - `tMs`: milliseconds since the start of the source (first packet of a capture, start of a relay/tap, 0 for a file),
 *   a plain number that may carry a fraction (captures have microsecond or nanosecond stamps). Schema 1 named it `t`;
 *   parseInspectEvent still reads that name.
 * - `session`: an opaque string id of one HTTP request/response exchange (one tunnel). The capture decoder uses
 *   `c<N>s<ID>` for HTTP/2 stream ID of TCP connection N (`c1s1`), `c<N>` for an HTTP/1.1 connection and for events
 *   about an HTTP/2 connection as a whole (framing or HPACK errors). Connections are numbered from 1 in order of
 *   first appearance. Relay/tap sources choose their own ids.
 * - `dir`: `'->'` client to proxy (request direction), `'<-'` proxy to client (response direction).
 * - Raw numbers only (bytes, offsets, widths); byte content as lowercase hex strings without separators.
 * - Integers that can exceed 2^53-1 (capsule type, context id) are a number when safe, else a decimal string.
 * - Offsets (`offset`) count bytes from the start of that direction's capsule stream (the concatenated HTTP/2 DATA
 *   payloads, or the bytes after the HTTP/1.1 header block), except for `layer: 'http'`/`'tcp'` errors, where they
 *   count bytes of that direction's TCP byte stream.
 *
 * Event types (fields beyond the common ones):
 * - `request`  (dir '->'): http ('1.1' | '2'), method, protocol (HTTP/2 `:protocol`, or the HTTP/1.1 `Upgrade` token;
 *   null if absent), scheme, authority (`:authority`, or the HTTP/1.1 `Host`), path (`:path` or the request-target;
 *   null if absent), target ({host, port} when path matches the RFC 9298 default template
 *   `/.well-known/masque/udp/{host}/{port}/`, percent-decoded once so an IPv6 host reads `2001:db8::1`; else null),
 *   capsuleProtocol (RFC 9297 §3.4 `Capsule-Protocol: ?1` present exactly once), headers (every field line as
 *   received, in order, as [name, value] pairs; HTTP/2 pseudo-header fields included).
 * - `response` (dir '<-'): http, status (0 when missing or not three digits), proxyStatus (RFC 9209 `Proxy-Status`
 *   values joined with ', ', or null), capsuleProtocol, headers. Interim (1xx other than 101) responses are reported too.
 * - `capsule`: dir, offset (of the capsule's first byte), type (number, or decimal string when > 2^53-1), typeName
 *   (capsuleTypeName: DATAGRAM, GREASE 0x.., UNKNOWN 0x.., legacy names), length (declared value length), typeWidth,
 *   lengthWidth (encoded varint widths), nonMinimal (type or length varint longer than needed; valid per RFC 9297
 *   §1.1), previewTruncated (the hex preview below is shorter than the bytes it previews).
 *   DATAGRAM capsules add contextId (number or decimal string), contextIdWidth, payloadLength and payloadHex (the first
 *   `previewBytes` bytes of the UDP payload, or all of it in `full` mode). Other types add valueHex, a preview of the
 *   capsule value under the same rule.
 * - `error`: dir, offset, layer ('capsule' | 'http' | 'tcp'), code (a stable UT_ERR_* code), reason (one line for
 *   people), rfc (the rule broken, e.g. 'RFC 9297 §3.3' for a stream ending inside a capsule, 'RFC 9298 §5' for a
 *   missing context ID or a context-0 payload over 65527 bytes; null for a local limit such as --max-capsule).
 *   After a capsule-layer error the rest of that direction is not decoded (see `end.ignoredBytes`).
 * - `end`: dir, clean (the direction ended at a capsule boundary, by END_STREAM / connection close, with no error),
 *   totalBytes (bytes of that direction's capsule stream seen), capsules (capsules reported), ignoredBytes (bytes from
 *   the failing capsule's offset to the end, not decoded after an error; 0 when none).
 * - `close`: reason (see CloseReason), detail (extra words such as the RST_STREAM error code, or null). Ends a session.
 *
 * Order: within a session, `request` precedes its capsules; each direction ends with at most one `end`; `close` comes
 * last. Events of different sessions interleave in time order.
 */

/** Schema version of the inspect events; bump on an incompatible change. */
export const INSPECT_SCHEMA_VERSION = 2;

/** Direction of bytes: '->' client to proxy, '<-' proxy to client. */
export type Direction = '->' | '<-';

/** Client-to-proxy (request) direction. */
export const DIR_REQUEST: Direction = '->';

/** Proxy-to-client (response) direction. */
export const DIR_RESPONSE: Direction = '<-';

/** Header fields as received, in order: [name, value] pairs. */
export type HeaderList = Array<[string, string]>;

/** Which HTTP version carried a request. */
export type HttpVersion = '1.1' | '2';

/** Which layer an error event comes from. */
export type ErrorLayer = 'capsule' | 'http' | 'tcp';

/**
 * Why a session closed: 'end-stream' (both directions ended normally), 'rst-stream' (HTTP/2 RST_STREAM),
 * 'goaway' (stream above the GOAWAY last-stream-id), 'tcp-fin', 'tcp-rst', 'refused' (final response not 2xx/101),
 * 'not-a-tunnel' (request without capsule protocol; its body is not decoded), 'error' (decoding stopped after an
 * HTTP-layer error), 'capture-end' (the capture ended while the session was open), 'local' (a relay or tap
 * endpoint ended the session itself: idle timeout, shutdown, target unreachable; `detail` says which).
 */
export type CloseReason =
  | 'end-stream'
  | 'rst-stream'
  | 'goaway'
  | 'tcp-fin'
  | 'tcp-rst'
  | 'refused'
  | 'not-a-tunnel'
  | 'error'
  | 'capture-end'
  | 'local';

/** A target decoded from the RFC 9298 default URI template. */
export interface MasqueTarget {
  /** Percent-decoded host (IPv6 without brackets). */
  host: string;
  /** Port 1..65535. */
  port: number;
}

/** Fields every event has. */
export interface InspectEventBase {
  /** Milliseconds since the start of the source (schema 1 called it `t`). */
  tMs: number;
  /** Session id (see the schema notes above). */
  session: string;
}

/** The request head of a session. */
export interface RequestEvent extends InspectEventBase {
  event: 'request';
  dir: '->';
  http: HttpVersion;
  method: string;
  protocol: string | null;
  scheme: string | null;
  authority: string | null;
  path: string | null;
  target: MasqueTarget | null;
  capsuleProtocol: boolean;
  headers: HeaderList;
}

/** A response head (final or interim) of a session. */
export interface ResponseEvent extends InspectEventBase {
  event: 'response';
  dir: '<-';
  http: HttpVersion;
  status: number;
  proxyStatus: string | null;
  capsuleProtocol: boolean;
  headers: HeaderList;
}

/** The address a CONNECT-UDP Bind datagram is for or from. */
export interface BindTargetField {
  /** 4 or 6. */
  ipVersion: 4 | 6;
  /** The IP address in text form. */
  address: string;
  /** The UDP port. */
  port: number;
  /** True when it comes from the context's registration, false when the datagram carried it (uncompressed). */
  compressed: boolean;
}

/** One capsule of a capsule stream. */
export interface CapsuleEvent extends InspectEventBase {
  event: 'capsule';
  dir: Direction;
  offset: number;
  type: number | string;
  typeName: string;
  length: number;
  typeWidth: number;
  lengthWidth: number;
  nonMinimal: boolean;
  /** DATAGRAM only: RFC 9298 §4 context ID. */
  contextId?: number | string;
  /** DATAGRAM only: encoded width of the context ID. */
  contextIdWidth?: number;
  /** DATAGRAM only: UDP payload length (capsule length minus the context ID). */
  payloadLength?: number;
  /** DATAGRAM only: hex preview of the UDP payload. */
  payloadHex?: string;
  /** Non-DATAGRAM only: hex preview of the capsule value. */
  valueHex?: string;
  /** COMPRESSION_ASSIGN only: 0 (uncompressed), 4 or 6 (draft-ietf-masque-connect-udp-listen §3.1). */
  ipVersion?: 0 | 4 | 6;
  /** COMPRESSION_ASSIGN only: the registered IP address (null for ipVersion 0). */
  address?: string | null;
  /** COMPRESSION_ASSIGN only: the registered UDP port (null for ipVersion 0). */
  port?: number | null;
  /** DATAGRAM of a bind session only: the context's target (compressed) or the datagram's own (uncompressed). */
  target?: BindTargetField;
  previewTruncated: boolean;
}

/** A decoding error; the direction (or connection, for layer 'http'/'tcp') stops being decoded after it. */
export interface ErrorEvent extends InspectEventBase {
  event: 'error';
  dir: Direction;
  offset: number;
  layer: ErrorLayer;
  code: string;
  reason: string;
  rfc: string | null;
}

/** The end of one direction's capsule stream. */
export interface EndEvent extends InspectEventBase {
  event: 'end';
  dir: Direction;
  clean: boolean;
  totalBytes: number;
  capsules: number;
  ignoredBytes: number;
}

/** The end of a session. */
export interface CloseEvent extends InspectEventBase {
  event: 'close';
  reason: CloseReason;
  detail: string | null;
}

/** Any inspect event (discriminated on `event`). */
export type InspectEvent = RequestEvent | ResponseEvent | CapsuleEvent | ErrorEvent | EndEvent | CloseEvent;

/** The `event` discriminant values. */
export type InspectEventType = InspectEvent['event'];
