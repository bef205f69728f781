/** Stable error codes; part of the public API (match on `code`, never on message text). */
export const ErrorCodes = {
  VARINT_RANGE: 'UT_ERR_VARINT_RANGE',
  CAPSULE_TOO_LARGE: 'UT_ERR_CAPSULE_TOO_LARGE',
  CAPSULE_TRUNCATED: 'UT_ERR_CAPSULE_TRUNCATED',
  DECODER_FAILED: 'UT_ERR_DECODER_FAILED',
  DATAGRAM_MALFORMED: 'UT_ERR_DATAGRAM_MALFORMED',
  DATAGRAM_TOO_LARGE: 'UT_ERR_DATAGRAM_TOO_LARGE',
  INVALID_ADDRESS: 'UT_ERR_INVALID_ADDRESS',
  INVALID_OPTION: 'UT_ERR_INVALID_OPTION',
  INVALID_TEMPLATE: 'UT_ERR_INVALID_TEMPLATE',
  CONNECT_PROTOCOL_DISABLED: 'UT_ERR_CONNECT_PROTOCOL_DISABLED',
  TUNNEL_REFUSED: 'UT_ERR_TUNNEL_REFUSED',
  TUNNEL_FAILED: 'UT_ERR_TUNNEL_FAILED',
  PROXY_UNREACHABLE: 'UT_ERR_PROXY_UNREACHABLE',
  TLS: 'UT_ERR_TLS',
  AUTH_REQUIRED: 'UT_ERR_AUTH_REQUIRED',
  CLOSED: 'UT_ERR_CLOSED',
  TIMEOUT: 'UT_ERR_TIMEOUT',
  IO: 'UT_ERR_IO',
  INVALID_INPUT: 'UT_ERR_INVALID_INPUT',
  CAPTURE_INVALID: 'UT_ERR_CAPTURE_INVALID',
  CAPTURE_TRUNCATED: 'UT_ERR_CAPTURE_TRUNCATED',
  CAPTURE_GAP: 'UT_ERR_CAPTURE_GAP',
  HTTP1_MALFORMED: 'UT_ERR_HTTP1_MALFORMED',
  HTTP2_PROTOCOL: 'UT_ERR_HTTP2_PROTOCOL',
  HPACK: 'UT_ERR_HPACK',
  HEADERS_TOO_LARGE: 'UT_ERR_HEADERS_TOO_LARGE',
  LIMIT_EXCEEDED: 'UT_ERR_LIMIT_EXCEEDED',
  INSPECT_MALFORMED: 'UT_ERR_INSPECT_MALFORMED',
  BENCH_FAIL_IF: 'UT_ERR_BENCH_FAIL_IF',
} as const;

/** Union of all stable error codes. */
export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Base class of every error udp-tunnel raises on purpose; `code` is stable, `details` is machine-readable. */
export class UdpTunnelError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UdpTunnelError';
    this.code = code;
    this.details = details;
  }
}

/** True when `err` is a UdpTunnelError, optionally with the given code. */
export function isUdpTunnelError(err: unknown, code?: ErrorCode): err is UdpTunnelError {
  return err instanceof UdpTunnelError && (code === undefined || err.code === code);
}
