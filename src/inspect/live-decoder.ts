import { ErrorCodes } from '../tunnel/errors.js';
import { BindSession, requestsBind } from './bind-view.js';
import { CapsuleView } from './capsule-view.js';
import type { CapsuleViewEvent } from './capsule-view.js';
import type { CloseReason, Direction, HeaderList, HttpVersion, InspectEvent } from './events.js';
import { isCapsuleRequest, isInterimStatus, opensTunnel, requestEvent, responseEvent } from './http-fields.js';
import type { RequestHead } from './http-fields.js';

/** Default number of sessions a LiveSessionDecoder decodes at once. */
export const DEFAULT_MAX_LIVE_SESSIONS = 10_000;

/** Options of a LiveSessionDecoder. */
export interface LiveDecoderOptions {
  /** Check CONNECT-UDP Bind context-ID rules and report violations as error events (inspect --strict). */
  bindRules?: boolean;
  /** Payload/value bytes shown as hex per capsule (default 16). */
  previewBytes?: number;
  /** Show whole payloads/values. */
  full?: boolean;
  /** Largest declared capsule length accepted (--max-capsule). */
  maxCapsuleLength?: number;
  /** Which request bodies are capsule streams (see isCapsuleRequest); default 'auto'. */
  capsuleStreams?: 'auto' | 'all';
  /** Sessions decoded at once; a request beyond it is reported but its bytes are not decoded (counted). */
  maxSessions?: number;
  /** Receives every event, in order. Must not throw; an exception is caught and counted. */
  onEvent: (ev: InspectEvent) => void;
}

/** Counters of a LiveSessionDecoder. */
export interface LiveDecoderStats {
  /** Sessions seen (with or without a request). */
  sessions: number;
  /** Sessions whose capsules were not decoded because maxSessions were open. */
  droppedSessions: number;
  /** Byte chunks for sessions that were dropped or never announced and could not be opened. */
  droppedChunks: number;
  /** Exceptions caught from the decoder or from onEvent (each also ends decoding of that direction). */
  failures: number;
}

const DIR_INDEX: Record<Direction, 0 | 1> = { '->': 0, '<-': 1 };
const DIRS: readonly [Direction, Direction] = ['->', '<-'];

interface LiveSession {
  id: string;
  views: [CapsuleView | null, CapsuleView | null];
  ended: [boolean, boolean];
  tunnel: boolean;
}

/**
 * Turns what a live source sees (request and response heads, byte chunks per direction, stream ends, session
 * closes) into inspect events, with one CapsuleView per direction. Shared by the relay and the in-process tap so both
 * report the same events for the same traffic. It never throws into its caller: decoding problems become events.
 */
export class LiveSessionDecoder {
  /** Counters (see LiveDecoderStats). */
  readonly stats: LiveDecoderStats = { sessions: 0, droppedSessions: 0, droppedChunks: 0, failures: 0 };
  private readonly opts: LiveDecoderOptions;
  private readonly maxSessions: number;
  private readonly sessions = new Map<string, LiveSession>();
  /** Ids of sessions dropped at the limit, so their later bytes are not mistaken for an unannounced session. */
  private readonly dropped = new Set<string>();

  constructor(options: LiveDecoderOptions) {
    this.opts = options;
    this.maxSessions = options.maxSessions ?? DEFAULT_MAX_LIVE_SESSIONS;
    // Validate the view options once, up front, so a bad option is a clear error and not a per-session failure.
    this.newView('', '->');
  }

  /** Sessions currently open. */
  get openSessions(): number {
    return this.sessions.size;
  }

  /** Reports a request head and opens the session (decoding its bodies when it is a capsule stream). */
  request(session: string, t: number, head: RequestHead): void {
    const ev = requestEvent(session, t, head);
    const decode = isCapsuleRequest(head, ev.capsuleProtocol, this.opts.capsuleStreams ?? 'auto');
    if (!this.sessions.has(session)) this.open(session, decode, requestsBind(head.headers), true);
    this.emit(ev);
  }

  /**
   * Reports a response head (final or interim). A final status other than 2xx (HTTP/2) or 101 (HTTP/1.1) means no
   * tunnel (RFC 9298 §3.2, §3.3): both directions end there, unclean, and any body that follows is not decoded as
   * capsules.
   */
  response(session: string, t: number, http: HttpVersion, status: number, headers: HeaderList): void {
    this.emit(responseEvent(session, t, http, status, headers));
    const s = this.sessions.get(session);
    if (s === undefined || !s.tunnel) return;
    if (isInterimStatus(status) || opensTunnel(http, status)) return;
    for (const i of [0, 1] as const) this.endDir(s, i, t, true);
  }

  /**
   * Feeds bytes of one direction. Bytes of a session never announced by request() open it as a capsule stream
   * (a source that does not report heads); bytes of a dropped session are only counted.
   */
  bytes(session: string, dir: Direction, chunk: Uint8Array, t: number): void {
    let s = this.sessions.get(session) ?? null;
    // While the dropped-id set is full, an unknown id may be a dropped session: do not decode it from mid-stream.
    if (s === null && !this.dropped.has(session) && this.dropped.size < this.maxSessions) s = this.open(session, true);
    if (s === null) {
      this.stats.droppedChunks++;
      return;
    }
    const i = DIR_INDEX[dir];
    const v = s.views[i];
    if (v === null || s.ended[i]) return;
    let events: CapsuleViewEvent[];
    try {
      events = v.push(chunk, t);
    } catch (err) {
      this.viewFailed(s, i, t, err);
      return;
    }
    for (const ev of events) this.emit(ev);
  }

  /**
   * Reports an HTTP-layer error of a session (a head that could not be parsed; `offset` counts bytes of that
   * direction's TCP stream). A session never announced by request() is opened without decoding, so that close()
   * reports it. The session stays open until close().
   */
  httpError(session: string, t: number, dir: Direction, offset: number, code: string, reason: string, rfc: string | null): void {
    if (!this.sessions.has(session) && !this.dropped.has(session)) this.open(session, false);
    this.emit({ event: 'error', tMs: t, session, dir, offset, layer: 'http', code, reason, rfc });
  }

  /** The end of one direction (END_STREAM): ending inside a capsule is reported (RFC 9297 §3.3). */
  end(session: string, dir: Direction, t: number, options: { aborted?: boolean } = {}): void {
    const s = this.sessions.get(session);
    if (s === undefined) return;
    this.endDir(s, DIR_INDEX[dir], t, options.aborted ?? false);
  }

  /** Closes a session: directions still open end as aborted (not clean), then `close` is reported. */
  close(session: string, t: number, reason: CloseReason, detail: string | null): void {
    const s = this.sessions.get(session);
    if (s === undefined) {
      if (this.dropped.delete(session)) this.emit({ event: 'close', tMs: t, session, reason, detail });
      return;
    }
    for (const i of [0, 1] as const) this.endDir(s, i, t, true);
    this.sessions.delete(session);
    this.emit({ event: 'close', tMs: t, session, reason, detail });
  }

  /** Closes every open session (shutdown of the source). */
  closeAll(t: number, reason: CloseReason, detail: string | null): void {
    for (const id of [...this.sessions.keys()]) this.close(id, t, reason, detail);
    for (const id of [...this.dropped]) this.close(id, t, reason, detail);
  }

  /** True when the session's bodies are being decoded as capsule streams. */
  isTunnel(session: string): boolean {
    return this.sessions.get(session)?.tunnel ?? false;
  }

  private open(session: string, decode: boolean, bind = false, requestSeen = false): LiveSession | null {
    this.stats.sessions++;
    if (this.sessions.size >= this.maxSessions) {
      this.stats.droppedSessions++;
      if (this.dropped.size < this.maxSessions) this.dropped.add(session);
      return null;
    }
    const b = new BindSession({ enabled: bind, rules: this.opts.bindRules ?? false, bothDirections: true, requestSeen });
    const s: LiveSession = {
      id: session,
      views: decode ? [this.newView(session, '->', b), this.newView(session, '<-', b)] : [null, null],
      ended: [false, false],
      tunnel: decode,
    };
    this.sessions.set(session, s);
    return s;
  }

  private newView(session: string, dir: Direction, bind?: BindSession): CapsuleView {
    const o = this.opts;
    return new CapsuleView({
      session,
      dir,
      ...(bind === undefined ? {} : { bind }),
      ...(o.previewBytes === undefined ? {} : { previewBytes: o.previewBytes }),
      ...(o.full === undefined ? {} : { full: o.full }),
      ...(o.maxCapsuleLength === undefined ? {} : { maxCapsuleLength: o.maxCapsuleLength }),
    });
  }

  private endDir(s: LiveSession, i: 0 | 1, t: number, aborted: boolean): void {
    if (s.ended[i]) return;
    s.ended[i] = true;
    const v = s.views[i];
    if (v === null) return;
    try {
      for (const ev of v.end(t, { aborted })) this.emit(ev);
    } catch (err) {
      this.viewFailed(s, i, t, err);
    }
  }

  private viewFailed(s: LiveSession, i: 0 | 1, t: number, err: unknown): void {
    this.stats.failures++;
    const v = s.views[i];
    s.views[i] = null;
    this.emit({
      event: 'error',
      tMs: t,
      session: s.id,
      dir: DIRS[i],
      offset: v?.totalBytes ?? 0,
      layer: 'capsule',
      code: ErrorCodes.DECODER_FAILED,
      reason: `decoder failed: ${err instanceof Error ? err.message : String(err)}; the rest of this direction is not decoded`,
      rfc: null,
    });
  }

  private emit(ev: InspectEvent): void {
    try {
      this.opts.onEvent(ev);
    } catch {
      // A failing consumer must not break the source that feeds us (the relay keeps relaying).
      this.stats.failures++;
    }
  }
}
