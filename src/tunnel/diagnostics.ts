import diagnosticsChannel from 'node:diagnostics_channel';

/**
 * Name of the diagnostics channel that carries every capsule-stream byte chunk of every tunnel, for in-process
 * inspection (`--inspect`). Publishing costs nothing while nobody subscribes.
 */
export const TAP_CHANNEL_NAME = 'udp-tunnel:tap';

/** Direction as seen on the wire: '->' client to proxy, '<-' proxy to client. */
export type WireDirection = '->' | '<-';

/**
 * Messages published on TAP_CHANNEL_NAME. A response names its HTTP version and status; its headers are the fields as
 * received or sent (over HTTP/2 including the `:status` pseudo-header, over HTTP/1.1 without any).
 */
export type TapMessage =
  | {
      kind: 'request';
      session: string;
      time: number;
      headers: Record<string, string | string[] | undefined>;
      /** HTTP/1.1 only (HTTP/2 carries these as pseudo-header fields). */
      requestLine?: { method: string; target: string };
    }
  | {
      kind: 'response';
      session: string;
      time: number;
      /** HTTP version of the exchange. */
      http: '1.1' | '2';
      /** Response status code. */
      status: number;
      headers: Record<string, string | string[] | undefined>;
    }
  | { kind: 'bytes'; session: string; time: number; dir: WireDirection; chunk: Buffer }
  | { kind: 'end'; session: string; time: number; dir: WireDirection }
  | { kind: 'close'; session: string; time: number; reason: string };

/** The shared tap channel. */
export const tapChannel = diagnosticsChannel.channel(TAP_CHANNEL_NAME);
