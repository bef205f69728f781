import { tapChannel, type TapMessage } from '../tunnel/diagnostics.js';
import type { CloseReason } from './events.js';
import { headerListFromObject, requestHeadFromHttp1, requestHeadFromHttp2 } from './http-fields.js';
import type { RequestHead } from './http-fields.js';
import { http2ErrorName } from './http2-frames.js';
import { LiveSessionDecoder, type LiveDecoderOptions, type LiveDecoderStats } from './live-decoder.js';

/** Options of a TapInspector. */
export type TapInspectorOptions = LiveDecoderOptions;

/** Maps a close reason string of the client or server core to an inspect close reason. */
export function tapCloseReason(text: string): { reason: CloseReason; detail: string | null } {
  const reset = /^stream-reset:(\d+)$/.exec(text);
  if (reset) return { reason: 'rst-stream', detail: http2ErrorName(Number(reset[1])) };
  if (text.startsWith('malformed')) return { reason: 'error', detail: text };
  if (text.startsWith('connect-failed')) return { reason: 'refused', detail: text };
  if (text === 'stream-closed' || text === 'tunnel-ended' || text === 'tunnel-closed') return { reason: 'end-stream', detail: text };
  return { reason: 'local', detail: text };
}

function headOf(m: Extract<TapMessage, { kind: 'request' }>): RequestHead {
  const list = headerListFromObject(m.headers);
  if (m.requestLine) return requestHeadFromHttp1(m.requestLine.method, m.requestLine.target, list);
  if (list.some(([n]) => n === ':method')) return requestHeadFromHttp2(list);
  return { ...requestHeadFromHttp1('', '', list), path: null };
}

/**
 * The in-process tap (`connect --inspect`, `serve --inspect`): subscribes to the `udp-tunnel:tap` diagnostics channel
 * and turns what the core publishes into the same inspect events a relay reports. Nothing is published (or costs
 * anything) until start(); stop() unsubscribes and closes sessions still open as 'local'.
 */
export class TapInspector {
  private readonly decoder: LiveSessionDecoder;
  private startedAt = 0;
  private subscribed = false;
  private readonly listener = (message: unknown): void => this.onMessage(message as TapMessage);

  constructor(options: TapInspectorOptions) {
    this.decoder = new LiveSessionDecoder(options);
  }

  /** Decoder counters. */
  get stats(): LiveDecoderStats {
    return this.decoder.stats;
  }

  /** Subscribes; event times count from `origin` (epoch milliseconds, default now). */
  start(origin = Date.now()): void {
    if (this.subscribed) return;
    this.subscribed = true;
    this.startedAt = origin;
    tapChannel.subscribe(this.listener);
  }

  /** Unsubscribes and closes the sessions still open ('local', `detail`). */
  stop(detail = 'tap stopped'): void {
    if (!this.subscribed) return;
    this.subscribed = false;
    tapChannel.unsubscribe(this.listener);
    this.decoder.closeAll(this.rel(Date.now()), 'local', detail);
  }

  private rel(time: number): number {
    return Math.max(0, time - this.startedAt);
  }

  private onMessage(m: TapMessage): void {
    const t = this.rel(m.time);
    switch (m.kind) {
      case 'request': {
        this.decoder.request(m.session, t, headOf(m));
        return;
      }
      case 'response':
        this.decoder.response(m.session, t, m.http, m.status, headerListFromObject(m.headers));
        return;
      case 'bytes':
        this.decoder.bytes(m.session, m.dir, m.chunk, t);
        return;
      case 'end':
        this.decoder.end(m.session, m.dir, t);
        return;
      case 'close': {
        const { reason, detail } = tapCloseReason(m.reason);
        this.decoder.close(m.session, t, reason, detail);
        return;
      }
      default:
        return;
    }
  }
}
