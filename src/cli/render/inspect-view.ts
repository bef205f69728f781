import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { redactCredentials } from '../../inspect/event-transform.js';
import type { InspectEvent } from '../../inspect/events.js';
import { RecordingWriter, recordingHeader } from '../../inspect/recording.js';
import { ErrorCodes, UdpTunnelError } from '../../tunnel/errors.js';
import { color } from '../color.js';
import { InspectRenderer, type InspectFilters } from './inspect-render.js';
import type { Output } from '../output.js';

/** Bytes stdout may queue (a slow pipe) before a live source drops output lines rather than hold them. */
const LIVE_STDOUT_LIMIT = 4 * 1024 * 1024;
/** Queue level at which a replay waits for stdout to drain. */
const REPLAY_STDOUT_HIGH = 1024 * 1024;

/** How an inspect view prints and records. */
export interface InspectViewSettings {
  json: boolean;
  verbose: boolean;
  bytes: number;
  full: boolean;
  filters: InspectFilters;
  /** Print events (false: only record them). */
  print: boolean;
  /** Print the summary table on finish (human mode). */
  summary: boolean;
  /** Fail finish() when an error event was seen. */
  strict: boolean;
  showCredentials: boolean;
  /** NDJSON recording file. */
  record?: string;
}

/**
 * Glue between an event source and the terminal: renders each event, writes the recording, and on finish prints the
 * summary, reports dropped output and applies --strict. Live sources (relay, tap) never wait on stdout: when it backs
 * up past 4 MiB, lines are dropped and counted, so a slow terminal cannot stall relayed traffic.
 */
export class InspectView {
  /** The renderer (counts errors and sessions). */
  readonly renderer: InspectRenderer;
  /** Output lines dropped because stdout was not read fast enough (live sources only). */
  droppedLines = 0;
  private readonly settings: InspectViewSettings;
  private readonly out: Output;
  private readonly live: boolean;
  private readonly target: Writable;
  private readonly limit: number;
  private recorder: RecordingWriter | null = null;

  private constructor(settings: InspectViewSettings, out: Output, live: boolean, target: Writable, limit: number) {
    this.settings = settings;
    this.out = out;
    this.live = live;
    this.target = target;
    this.limit = limit;
    this.renderer = new InspectRenderer({
      json: settings.json,
      verbose: settings.verbose,
      bytes: settings.bytes,
      full: settings.full,
      filters: settings.filters,
      showCredentials: settings.showCredentials,
      chalk: color(),
      write: (line) => this.writeLine(line),
    });
  }

  /**
   * Creates the view and opens the recording file (if any); `source` names the source in the recording header.
   * Lines go to `target` (default process.stdout). While more than `limit` bytes wait there, a live view drops lines
   * (default 4 MiB) and a replay's drain() waits (default 1 MiB).
   */
  static async create(
    settings: InspectViewSettings,
    out: Output,
    source: string,
    options: { live: boolean; startedAtMs: number; target?: Writable; limit?: number },
  ): Promise<InspectView> {
    const limit = options.limit ?? (options.live ? LIVE_STDOUT_LIMIT : REPLAY_STDOUT_HIGH);
    const view = new InspectView(settings, out, options.live, options.target ?? process.stdout, limit);
    if (settings.record !== undefined) {
      view.recorder = await RecordingWriter.open(settings.record, recordingHeader(source, options.startedAtMs));
    }
    return view;
  }

  /** True when a recording is being written (sources then decode whole payloads). */
  get recording(): boolean {
    return this.recorder !== null;
  }

  /** Takes one event from the source. */
  handle(ev: InspectEvent): void {
    if (this.recorder !== null) this.recorder.write(this.settings.showCredentials ? ev : redactCredentials(ev));
    if (this.settings.print) this.renderer.handle(ev);
  }

  /** Resolves when stdout has room again (replays call this between chunks; live sources never wait). */
  async drain(): Promise<void> {
    if (this.target.writableLength > this.limit) await once(this.target, 'drain');
  }

  /**
   * Closes the recording, prints the summary table, warns about drops, and throws UdpTunnelError INSPECT_MALFORMED
   * under --strict when any error event was seen.
   */
  async finish(): Promise<void> {
    if (this.recorder !== null) {
      const r = this.recorder;
      this.recorder = null;
      try {
        await r.close();
      } catch (err) {
        this.out.warn(`recording ${this.settings.record}: ${(err as Error).message}`);
      }
      if (r.dropped > 0) this.out.warn(`recording ${this.settings.record}: ${r.dropped} events dropped (disk too slow or failed)`);
      this.out.debug(`recording ${this.settings.record}: ${r.written} events written`);
    }
    if (!this.settings.json && this.settings.print && this.settings.summary) {
      const table = this.renderer.summaryTable();
      if (table !== null) this.writeLine(table);
    }
    if (this.droppedLines > 0) this.out.warn(`${this.droppedLines} output lines dropped because stdout was not read fast enough`);
    if (this.settings.strict && this.renderer.errors > 0) {
      throw new UdpTunnelError(
        ErrorCodes.INSPECT_MALFORMED,
        `${this.renderer.errors} decoding error${this.renderer.errors === 1 ? '' : 's'} seen (--strict)`,
        { errors: this.renderer.errors },
      );
    }
  }

  private writeLine(line: string): void {
    if (this.live && this.target.writableLength > this.limit) {
      this.droppedLines++;
      return;
    }
    this.target.write(`${line}\n`);
  }
}
