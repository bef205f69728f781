import type { ProxyStatusReport } from './proxy-status.js';

/** Stable error codes; part of the public API (match on `code`, never on message text). docs/errors.md lists them. */
export const ErrorCodes = {
  VARINT_RANGE: 'UT_ERR_VARINT_RANGE',
  CAPSULE_TOO_LARGE: 'UT_ERR_CAPSULE_TOO_LARGE',
  CAPSULE_TRUNCATED: 'UT_ERR_CAPSULE_TRUNCATED',
  DECODER_FAILED: 'UT_ERR_DECODER_FAILED',
  DATAGRAM_MALFORMED: 'UT_ERR_DATAGRAM_MALFORMED',
  DATAGRAM_TOO_LARGE: 'UT_ERR_DATAGRAM_TOO_LARGE',
  BIND_MALFORMED: 'UT_ERR_BIND_MALFORMED',
  BIND_NOT_GRANTED: 'UT_ERR_BIND_NOT_GRANTED',
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

/** Details of a code that carries none. */
export type NoDetails = Record<string, never>;

/**
 * Details of an error about an option. Options go by their library names (`maxDatagram`, nested ones dotted:
 * `tls.pins`); the CLI shows the matching flag instead.
 */
export type OptionDetails = {
  /** The option at fault. */
  option?: string;
  /** The value it was given. */
  value?: unknown;
  /** Further options the message names, e.g. the one to change instead (`name: false` for a boolean turned off). */
  related?: readonly string[];
};

/** Details of a decoding error at a byte position. */
export type OffsetDetails = {
  /** Byte offset of the fault in its input (stream, head or capture file). */
  offset: number;
  /** The rule broken, e.g. `RFC 9297 §3.3`. */
  rfc?: string;
};

/** Details of a failure to open a tunnel. */
export type RefusalDetails = OptionDetails & {
  /** The HTTP status the proxy answered with. */
  status: number;
  /** The proxy's `Proxy-Status` (RFC 9209 §2), parsed: error type, details and the rest; absent without one. */
  proxyStatus?: ProxyStatusReport | undefined;
};

/** The shape of `details` for each code; docs/errors.md describes every field. */
export type ErrorDetailsMap = {
  [ErrorCodes.VARINT_RANGE]: { value: string };
  [ErrorCodes.CAPSULE_TOO_LARGE]: OffsetDetails & { declared: string; limit: number; type: string };
  [ErrorCodes.CAPSULE_TRUNCATED]: OffsetDetails & { have: number; need?: number | undefined };
  [ErrorCodes.DECODER_FAILED]: NoDetails;
  [ErrorCodes.DATAGRAM_MALFORMED]: { length: number; rfc: string };
  [ErrorCodes.DATAGRAM_TOO_LARGE]: { length: number; limit: number; rfc: string };
  [ErrorCodes.BIND_MALFORMED]: {
    /** Which rule was broken, e.g. `ip-version`, `parity`, `duplicate-id` (docs/errors.md lists them). */
    rule: string;
    /** The draft section of the rule, e.g. `draft-ietf-masque-connect-udp-listen §3.1`. */
    rfc: string;
    /** The context ID concerned, when there is one (a decimal string). */
    contextId?: string;
    /** Length of the value that failed to decode, for format errors. */
    length?: number;
  };
  [ErrorCodes.BIND_NOT_GRANTED]: {
    /** The response header at fault, `connect-udp-bind` or `proxy-public-address`; absent for a refused context. */
    header?: string;
    /** Why it does not grant the binding, e.g. `absent`, `not a Boolean`, `empty list`. */
    reason: string;
    /** The status of the (otherwise successful) response, when it carried one. */
    status?: number;
  };
  [ErrorCodes.INVALID_ADDRESS]: OptionDetails & { spec?: string; host?: string };
  [ErrorCodes.INVALID_OPTION]: OptionDetails & {
    /** A bad target rule, as given. */
    entry?: string;
    /** A file that could not be read. */
    path?: string;
    /** Allowed bounds, when the message states them. */
    min?: number;
    max?: number;
    /** A bench argument out of range (probe length, sequence number, table capacity). */
    length?: number;
    seq?: unknown;
    capacity?: number;
    /** A `failIf` condition that does not parse, and its parts. */
    condition?: string;
    metric?: string;
    unit?: string;
  };
  [ErrorCodes.INVALID_TEMPLATE]: { template: string };
  [ErrorCodes.CONNECT_PROTOCOL_DISABLED]: OptionDetails;
  [ErrorCodes.TUNNEL_REFUSED]: RefusalDetails;
  [ErrorCodes.TUNNEL_FAILED]: { rstCode?: number | undefined };
  [ErrorCodes.PROXY_UNREACHABLE]: { osCode?: string };
  [ErrorCodes.TLS]: OptionDetails & { osCode?: string; presented?: string };
  [ErrorCodes.AUTH_REQUIRED]: RefusalDetails;
  [ErrorCodes.CLOSED]: NoDetails;
  [ErrorCodes.TIMEOUT]: { timeoutMs?: number };
  [ErrorCodes.IO]: {
    host?: string;
    port?: number;
    localHost?: string | undefined;
    /** The bench component that failed, its arguments, and the error code it reported. */
    role?: string;
    args?: readonly string[];
    code?: string | null;
    exitCode?: number | null;
  };
  [ErrorCodes.INVALID_INPUT]: { line?: number; token?: string };
  [ErrorCodes.CAPTURE_INVALID]: { offset: number };
  [ErrorCodes.CAPTURE_TRUNCATED]: { offset: number };
  [ErrorCodes.CAPTURE_GAP]: NoDetails;
  [ErrorCodes.HTTP1_MALFORMED]: OffsetDetails;
  [ErrorCodes.HTTP2_PROTOCOL]: NoDetails;
  [ErrorCodes.HPACK]: OffsetDetails;
  [ErrorCodes.HEADERS_TOO_LARGE]: { offset: number; limit: number };
  [ErrorCodes.LIMIT_EXCEEDED]: NoDetails;
  [ErrorCodes.INSPECT_MALFORMED]: { errors: number };
  [ErrorCodes.BENCH_FAIL_IF]: { failures: readonly { condition: string; actual: number }[] };
};

/** The shape of `details` for code `C` (the union of all shapes for the wide `ErrorCode`). */
export type ErrorDetails<C extends ErrorCode = ErrorCode> = ErrorDetailsMap[C];

/**
 * What the constructor takes as `details` for code `C`: its shape, or any record when the code is not known
 * statically (an error rebuilt from another error's code and details).
 */
export type ErrorDetailsArg<C extends ErrorCode> = ErrorCode extends C ? Record<string, unknown> : ErrorDetailsMap[C];

/**
 * Whether another attempt at the same operation may succeed, for each code; an error may say otherwise (a 503
 * refusal is retryable, a 403 is not). docs/errors.md documents this table.
 */
export const RETRYABLE_BY_DEFAULT: Readonly<Record<ErrorCode, boolean>> = {
  [ErrorCodes.VARINT_RANGE]: false,
  [ErrorCodes.CAPSULE_TOO_LARGE]: false,
  [ErrorCodes.CAPSULE_TRUNCATED]: false,
  [ErrorCodes.DECODER_FAILED]: false,
  [ErrorCodes.DATAGRAM_MALFORMED]: false,
  [ErrorCodes.DATAGRAM_TOO_LARGE]: false,
  [ErrorCodes.BIND_MALFORMED]: false,
  [ErrorCodes.BIND_NOT_GRANTED]: false,
  [ErrorCodes.INVALID_ADDRESS]: false,
  [ErrorCodes.INVALID_OPTION]: false,
  [ErrorCodes.INVALID_TEMPLATE]: false,
  [ErrorCodes.CONNECT_PROTOCOL_DISABLED]: false,
  [ErrorCodes.TUNNEL_REFUSED]: false,
  [ErrorCodes.TUNNEL_FAILED]: true,
  [ErrorCodes.PROXY_UNREACHABLE]: true,
  [ErrorCodes.TLS]: false,
  [ErrorCodes.AUTH_REQUIRED]: false,
  [ErrorCodes.CLOSED]: false,
  [ErrorCodes.TIMEOUT]: true,
  [ErrorCodes.IO]: false,
  [ErrorCodes.INVALID_INPUT]: false,
  [ErrorCodes.CAPTURE_INVALID]: false,
  [ErrorCodes.CAPTURE_TRUNCATED]: false,
  [ErrorCodes.CAPTURE_GAP]: false,
  [ErrorCodes.HTTP1_MALFORMED]: false,
  [ErrorCodes.HTTP2_PROTOCOL]: false,
  [ErrorCodes.HPACK]: false,
  [ErrorCodes.HEADERS_TOO_LARGE]: false,
  [ErrorCodes.LIMIT_EXCEEDED]: false,
  [ErrorCodes.INSPECT_MALFORMED]: false,
  [ErrorCodes.BENCH_FAIL_IF]: false,
};

/** The last constructor argument of UdpTunnelError. */
export interface UdpTunnelErrorOptions {
  /** The error this one wraps (an OS or TLS error, say). */
  cause?: unknown;
  /** Overrides RETRYABLE_BY_DEFAULT for this one error. */
  retryable?: boolean;
}

/** The constructor arguments after the message: `details` may be left out only when its shape has no required field. */
export type UdpTunnelErrorRest<C extends ErrorCode> =
  Record<string, never> extends ErrorDetailsArg<C>
    ? [details?: ErrorDetailsArg<C>, options?: UdpTunnelErrorOptions]
    : [details: ErrorDetailsArg<C>, options?: UdpTunnelErrorOptions];

/** Base class of every error udp-tunnel raises on purpose; `code` is stable, `details` is machine-readable. */
export class UdpTunnelError<C extends ErrorCode = ErrorCode> extends Error {
  readonly code: C;
  /** Typed per code (see ErrorDetailsMap); any other key reads as unknown. */
  readonly details: ErrorDetails<C> & Record<string, unknown>;
  /** Whether another attempt at the same operation may succeed (the client's reconnect loop reads this). */
  readonly retryable: boolean;
  constructor(code: C, message: string, ...[details, options]: UdpTunnelErrorRest<C>) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'UdpTunnelError';
    this.code = code;
    this.details = (details ?? {}) as ErrorDetails<C> & Record<string, unknown>;
    this.retryable = options?.retryable ?? RETRYABLE_BY_DEFAULT[code];
  }
}

/** True when `err` is a UdpTunnelError, optionally with the given code (then its `details` are typed). */
export function isUdpTunnelError<C extends ErrorCode = ErrorCode>(err: unknown, code?: C): err is UdpTunnelError<C> {
  return err instanceof UdpTunnelError && (code === undefined || err.code === code);
}
