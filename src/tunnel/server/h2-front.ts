import http2 from 'node:http2';
import type { IncomingTunnelRequest } from './connect-udp-request.js';
import type { RequestFront, ServerConnection } from './request-front.js';

const { HTTP2_HEADER_METHOD, HTTP2_HEADER_PATH, HTTP2_HEADER_AUTHORITY, HTTP2_HEADER_SCHEME, HTTP2_HEADER_STATUS } = http2.constants;
const HTTP2_HEADER_PROTOCOL = ':protocol';

/**
 * RFC 9113 §6.5.2: the size of a header list is the sum of each field's name and value length in octets plus 32.
 * `raw` is Node's flat `[name, value, ...]` list, whose strings hold one character per received octet.
 */
export function headerListSize(raw: readonly string[]): number {
  let size = 0;
  for (let i = 0; i + 1 < raw.length; i += 2) size += String(raw[i]).length + String(raw[i + 1]).length + 32;
  return size;
}

/** The fields of an HTTP/2 request that decide whether it is a tunnel request (RFC 9298 §3.4, RFC 8441 §4). */
export function h2TunnelRequest(headers: http2.IncomingHttpHeaders): IncomingTunnelRequest {
  return {
    httpVersion: 2,
    method: String(headers[HTTP2_HEADER_METHOD] ?? ''),
    protocol: headers[HTTP2_HEADER_PROTOCOL] as string | undefined,
    path: headers[HTTP2_HEADER_PATH] as string | undefined,
    authority: headers[HTTP2_HEADER_AUTHORITY] as string | undefined,
    scheme: headers[HTTP2_HEADER_SCHEME] as string | undefined,
    framingHeaders: headers['content-length'] !== undefined,
  };
}

/** RFC 9113 §8.5 / RFC 9298 §3.4: a request that ends its stream with the headers cannot carry a tunnel. */
export function streamEndedWithHeaders(stream: http2.ServerHttp2Stream, flags: number): boolean {
  return (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0 || stream.readableEnded;
}

/** The front of a request on an HTTP/2 stream: answers are HEADERS frames, the tunnel is the stream itself. */
export function h2Front(stream: http2.ServerHttp2Stream, conn: ServerConnection, rawHeaders: readonly string[]): RequestFront {
  return {
    httpVersion: 2,
    client: conn.client,
    conn,
    rawHeaders,
    gone: () => stream.destroyed || stream.closed,
    refuse: (status, extra) => {
      if (stream.destroyed || stream.closed || stream.headersSent) return;
      stream.respond({ [HTTP2_HEADER_STATUS]: status, ...extra }, { endStream: true });
    },
    refuseRetry: () => {
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
    },
    accept: (extra = {}) => {
      // RFC 9298 §3.5 / RFC 9297 §3.4: a 2xx with Capsule-Protocol: ?1 opens the tunnel. waitForTrailers keeps
      // Node from ending the stream by itself, so an abort below is a bare RST_STREAM, never END_STREAM first.
      stream.respond({ [HTTP2_HEADER_STATUS]: 200, 'capsule-protocol': '?1', ...extra }, { waitForTrailers: true });
      stream.on('wantTrailers', () => {
        if (!stream.closed && !stream.destroyed) stream.sendTrailers({});
      });
      return stream;
    },
    end: (reason) => {
      if (stream.destroyed || stream.closed) return;
      // RFC 9297 §3.3 + RFC 9113 §8.1.1: a malformed capsule stream is a stream error of type PROTOCOL_ERROR.
      stream.close(reason === 'malformed' ? http2.constants.NGHTTP2_PROTOCOL_ERROR : http2.constants.NGHTTP2_NO_ERROR);
    },
  };
}
