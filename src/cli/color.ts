import { Chalk, type ChalkInstance } from 'chalk';

/** Decides whether colour is on: --no-color and a non-empty NO_COLOR turn it off (chalk does not read NO_COLOR). */
export function colorLevel(opts: { noColor?: boolean; json?: boolean; stream?: NodeJS.WriteStream }): 0 | 1 | 2 | 3 {
  if (opts.noColor || opts.json) return 0;
  if (process.env['NO_COLOR'] !== undefined && process.env['NO_COLOR'] !== '') return 0;
  const force = process.env['FORCE_COLOR'];
  if (force !== undefined) {
    if (force === '0' || force === 'false') return 0;
    const n = Number(force);
    return (n >= 1 && n <= 3 ? n : 1) as 1 | 2 | 3;
  }
  const stream = opts.stream ?? process.stderr;
  if (!stream.isTTY) return 0;
  const depth = stream.getColorDepth?.() ?? 1;
  return depth >= 24 ? 3 : depth >= 8 ? 2 : depth > 1 ? 1 : 0;
}

let instance: ChalkInstance = new Chalk({ level: 0 });

/** Configures the one chalk instance of the process. */
export function setupColor(level: 0 | 1 | 2 | 3): ChalkInstance {
  instance = new Chalk({ level });
  return instance;
}

/** The process's chalk instance. */
export function color(): ChalkInstance {
  return instance;
}
