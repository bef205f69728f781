import { Buffer } from 'node:buffer';
import net from 'node:net';
import { HpackDecoder } from '../../src/inspect/hpack.js';
import { Http2FrameParser, type Http2FrameItem } from '../../src/inspect/http2-frames.js';
import { END_HEADERS, END_STREAM, PREFACE, h2Frame, headerBlock, settingsFrame } from './h2-writer.js';

/** A frame the raw peer received; HEADERS carry their decoded field list. */
export type ReceivedFrame = Http2FrameItem & { fields?: Array<[string, string]> };

/**
 * An HTTP/2 client written frame by frame over a plain TCP socket, so a test controls what a well-behaved client
 * would never send (oversized header blocks, no SETTINGS acknowledgement) and sees every frame the server sends.
 */
export interface RawH2Peer {
  socket: net.Socket;
  frames: ReceivedFrame[];
  /** Sends one request's header block on `streamId`, split into HEADERS and CONTINUATION frames of 16,384 bytes. */
  request(streamId: number, fields: Array<[string, string]>, endStream?: boolean): void;
  /** Resolves with the first received frame (already received or later) that matches; rejects after `ms`. */
  waitFrame(match: (f: ReceivedFrame) => boolean, ms?: number): Promise<ReceivedFrame>;
  /** Resolves true when the server closed the connection, false after `ms`. */
  waitClosed(ms?: number): Promise<boolean>;
  readonly closed: boolean;
  destroy(): void;
}

/** Options of openRawH2Peer. */
export interface RawH2PeerOptions {
  /** Acknowledge the server's SETTINGS (RFC 9113 §6.5.3), as every real client does; default true. */
  ack?: boolean;
}

/** RFC 9113 §4.2: the largest frame payload before SETTINGS_MAX_FRAME_SIZE is raised. */
const FRAME_LIMIT = 16384;

/** Connects to `host:port`, sends the preface and an empty SETTINGS, and resolves once the server's SETTINGS arrived. */
export function openRawH2Peer(port: number, host: string, options: RawH2PeerOptions = {}): Promise<RawH2Peer> {
  const socket = net.connect({ port, host });
  const parser = new Http2FrameParser({ expectPreface: false });
  const hpack = new HpackDecoder();
  const frames: ReceivedFrame[] = [];
  let closed = false;
  let waiters: Array<{ match: (f: ReceivedFrame) => boolean; resolve: (f: ReceivedFrame) => void }> = [];
  let closeWaiters: Array<() => void> = [];
  socket.on('error', () => {});
  socket.on('close', () => {
    closed = true;
    for (const w of closeWaiters) w();
    closeWaiters = [];
  });
  const peer: RawH2Peer = {
    socket,
    frames,
    request(streamId, fields, endStream = true) {
      const block = headerBlock(fields);
      const out: Buffer[] = [];
      for (let off = 0; off === 0 || off < block.length; off += FRAME_LIMIT) {
        const last = off + FRAME_LIMIT >= block.length;
        const flags = (last ? END_HEADERS : 0) | (off === 0 && endStream ? END_STREAM : 0);
        // RFC 9113 §6.10: the block continues in CONTINUATION frames (type 9) after the first HEADERS (type 1).
        out.push(h2Frame(off === 0 ? 1 : 9, flags, streamId, block.subarray(off, off + FRAME_LIMIT)));
      }
      socket.write(Buffer.concat(out));
    },
    waitFrame(match, ms = 3000) {
      const seen = frames.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`timed out waiting for a frame; got ${frames.map((f) => f.type).join(',')}`)), ms);
        waiters.push({
          match,
          resolve: (f) => {
            clearTimeout(t);
            resolve(f);
          },
        });
      });
    },
    waitClosed(ms = 3000) {
      if (closed) return Promise.resolve(true);
      return new Promise((resolve) => {
        const t = setTimeout(() => resolve(false), ms);
        closeWaiters.push(() => {
          clearTimeout(t);
          resolve(true);
        });
      });
    },
    get closed() {
      return closed;
    },
    destroy: () => socket.destroy(),
  };
  return new Promise((resolve, reject) => {
    let settled = false;
    socket.on('data', (chunk: Buffer) => {
      for (const item of parser.push(chunk)) {
        const f: ReceivedFrame = item.type === 'HEADERS' ? { ...item, fields: hpack.decode(item.headerBlock) } : item;
        frames.push(f);
        if (f.type === 'SETTINGS' && !f.ack) {
          if (options.ack ?? true) socket.write(settingsFrame([], true));
          if (!settled) {
            settled = true;
            resolve(peer);
          }
        }
        waiters = waiters.filter((w) => {
          if (!w.match(f)) return true;
          w.resolve(f);
          return false;
        });
      }
    });
    socket.once('close', () => {
      if (!settled) reject(new Error('connection closed before the server SETTINGS'));
    });
    socket.once('connect', () => socket.write(Buffer.concat([PREFACE, settingsFrame([])])));
  });
}

/** The `:status` of a received HEADERS frame, or undefined. */
export function statusOf(f: ReceivedFrame): number | undefined {
  const v = f.fields?.find(([n]) => n === ':status')?.[1];
  return v === undefined ? undefined : Number(v);
}
