import http2 from 'node:http2';

/** A raw HTTP/2 client session that has received the server's SETTINGS (so :protocol may be sent, RFC 8441 §3). */
export { h2Session as h2Connect, connectUdpHeaders } from './tunnel.js';

/** Outcome of one raw request. */
export interface RawResult {
  status: number | null;
  headers: http2.IncomingHttpHeaders;
  endAfterHeaders: boolean;
  rstCode: number | null;
  stream: http2.ClientHttp2Stream;
}

/** Sends a request and resolves on the response headers, or on the stream's close without one. */
export function rawRequest(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, endStream = false): Promise<RawResult> {
  const stream = session.request(headers, { endStream });
  stream.on('error', () => {});
  return new Promise((resolve) => {
    // The HEADERS flags tell END_STREAM; stream.endAfterHeaders is not yet set when 'response' fires.
    stream.once('response', (h, flags: number) =>
      resolve({ status: Number(h[':status']), headers: h, endAfterHeaders: (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0, rstCode: null, stream }),
    );
    stream.once('close', () => resolve({ status: null, headers: {}, endAfterHeaders: false, rstCode: stream.rstCode ?? null, stream }));
  });
}

/** Resolves when the stream closes, with its RST_STREAM code. */
export function closed(stream: http2.ClientHttp2Stream): Promise<number> {
  return new Promise((resolve) => {
    if (stream.closed) return resolve(stream.rstCode ?? 0);
    stream.once('close', () => resolve(stream.rstCode ?? 0));
  });
}
