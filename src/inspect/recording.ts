import { Buffer } from 'node:buffer';
import { createWriteStream, type WriteStream } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { ErrorCodes, UdpTunnelError } from '../tunnel/errors.js';
import { parseInspectEvent } from './event-parse.js';
import { INSPECT_SCHEMA_VERSION, type InspectEvent } from './events.js';

/**
 * Recording format (`connect/serve/inspect --record FILE`, replayed by `inspect --file FILE`): NDJSON, UTF-8.
 * Line 1 is a header object without an `event` field:
 *   {"recording":"udp-tunnel-inspect","version":1,"schema":2,"source":"serve","startedAt":"2025-01-01T00:00:00.000Z"}
 * (`startedAt` is the wall-clock time of tMs = 0; `schema` is INSPECT_SCHEMA_VERSION). Every further line is one inspect
 * event exactly as `--json` prints it, in the order seen, with its original `tMs`. Capsule previews are whole payloads
 * (the recording is made with full previews), so a replay can show any `--bytes N` or `--full`. The header is
 * optional for readers: plain `inspect --json` output replays too.
 */
export const RECORDING_FORMAT = 'udp-tunnel-inspect';

/** Version of the recording container (header line); bump on an incompatible change. */
export const RECORDING_VERSION = 1;

/** Default cap on bytes a RecordingWriter lets the file stream queue before it drops events. */
export const DEFAULT_RECORDING_BUFFER = 8 * 1024 * 1024;

/** Default cap on one line of a recording being read. */
export const DEFAULT_MAX_RECORDING_LINE = 4 * 1024 * 1024;

/** The first line of a recording. */
export interface RecordingHeader {
  recording: typeof RECORDING_FORMAT;
  version: number;
  schema: number;
  /** What made it: 'connect', 'serve', 'relay', 'pcap', 'raw', 'file'. */
  source: string;
  /** ISO 8601 wall-clock time of tMs = 0. */
  startedAt: string;
}

/** Builds a recording header for a source that started at `startedAtMs` (epoch milliseconds). */
export function recordingHeader(source: string, startedAtMs: number): RecordingHeader {
  return { recording: RECORDING_FORMAT, version: RECORDING_VERSION, schema: INSPECT_SCHEMA_VERSION, source, startedAt: new Date(startedAtMs).toISOString() };
}

/** Options of a RecordingWriter. */
export interface RecordingWriterOptions {
  /** Bytes the file stream may queue before further events are dropped (counted); default 8 MiB. */
  maxBufferedBytes?: number;
}

/**
 * Writes a recording. A slow disk never slows the tunnel: once more than maxBufferedBytes wait to be written, events
 * are dropped and counted in `dropped`; a write error (disk full) stops writing and is kept in `error`.
 */
export class RecordingWriter {
  /** Events written (queued to the file). */
  written = 0;
  /** Events not written because the queue was full or the file failed. */
  dropped = 0;
  /** The first write error, if any. */
  error: Error | null = null;
  private readonly stream: WriteStream;
  private readonly max: number;
  private closed = false;

  private constructor(stream: WriteStream, max: number) {
    this.stream = stream;
    this.max = max;
    stream.on('error', (err) => {
      this.error ??= err;
    });
  }

  /** Creates (truncates) `path` and writes the header; rejects if the file cannot be opened. */
  static open(path: string, header: RecordingHeader, options: RecordingWriterOptions = {}): Promise<RecordingWriter> {
    const max = options.maxBufferedBytes ?? DEFAULT_RECORDING_BUFFER;
    if (!Number.isSafeInteger(max) || max < 0) {
      return Promise.reject(new UdpTunnelError(ErrorCodes.INVALID_OPTION, `maxBufferedBytes must be a non-negative integer, got ${max}`, { option: 'maxBufferedBytes', value: max }));
    }
    return new Promise((resolve, reject) => {
      const stream = createWriteStream(path, { flags: 'w' });
      const onError = (err: Error): void => reject(err);
      stream.once('error', onError);
      stream.once('open', () => {
        stream.off('error', onError);
        const w = new RecordingWriter(stream, max);
        stream.write(`${JSON.stringify(header)}\n`);
        resolve(w);
      });
    });
  }

  /** Bytes waiting to be written. */
  get bufferedBytes(): number {
    return this.stream.writableLength;
  }

  /** Appends one event; returns false when it was dropped. */
  write(ev: InspectEvent): boolean {
    if (this.closed || this.error !== null || this.stream.writableLength > this.max) {
      this.dropped++;
      return false;
    }
    this.stream.write(`${JSON.stringify(ev)}\n`);
    this.written++;
    return true;
  }

  /** Flushes and closes the file; rejects with the first write error. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return new Promise((resolve, reject) => {
      this.stream.end(() => (this.error ? reject(this.error) : resolve()));
    });
  }
}

/** One item read from a recording. */
export type RecordingItem = { kind: 'header'; header: RecordingHeader } | { kind: 'event'; event: InspectEvent; line: number };

function invalid(line: number, message: string): never {
  throw new UdpTunnelError(ErrorCodes.INVALID_INPUT, `recording line ${line}: ${message}`, { line });
}

function parseLine(raw: string, line: number, first: boolean): RecordingItem | null {
  const text = raw.trim();
  if (text === '') return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    invalid(line, `not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && 'recording' in value) {
    const h = value as Partial<RecordingHeader>;
    if (!first) invalid(line, 'a recording header may only be the first line');
    if (h.recording !== RECORDING_FORMAT) invalid(line, `unknown recording format ${JSON.stringify(h.recording)}`);
    if (typeof h.version !== 'number' || h.version > RECORDING_VERSION) {
      invalid(line, `recording version ${String(h.version)} is not supported (this reader knows version ${RECORDING_VERSION})`);
    }
    return { kind: 'header', header: value as RecordingHeader };
  }
  return { kind: 'event', event: parseInspectEvent(value, line), line };
}

/**
 * Reads a recording (or plain `--json` output) from chunks as they arrive: yields the optional header, then each
 * event, validated. Throws UdpTunnelError INVALID_INPUT naming the line for bad JSON, an invalid event or a line
 * over `maxLineBytes` characters (default 4 MiB).
 */
export async function* readRecording(input: AsyncIterable<Uint8Array | string>, options: { maxLineBytes?: number } = {}): AsyncGenerator<RecordingItem> {
  const maxLine = options.maxLineBytes ?? DEFAULT_MAX_RECORDING_LINE;
  const decoder = new StringDecoder('utf8');
  let pending = '';
  let line = 0;
  let first = true;
  const take = function* (text: string): Generator<RecordingItem> {
    line++;
    const item = parseLine(text, line, first);
    if (item !== null) {
      first = false;
      yield item;
    }
  };
  for await (const chunk of input) {
    pending += typeof chunk === 'string' ? chunk : decoder.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    let start = 0;
    for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n', start)) {
      const text = pending.slice(start, nl);
      start = nl + 1;
      if (text.length > maxLine) invalid(line + 1, `line longer than ${maxLine} characters`);
      yield* take(text);
    }
    pending = pending.slice(start);
    if (pending.length > maxLine) invalid(line + 1, `line longer than ${maxLine} characters`);
  }
  pending += decoder.end();
  if (pending.length > maxLine) invalid(line + 1, `line longer than ${maxLine} characters`);
  if (pending !== '') yield* take(pending);
}
