import Table from 'cli-table3';
import { formatHostPort } from '../../tunnel/address.js';
import { runDemoTraffic, startDemoStack } from '../../bench/demo.js';
import { color } from '../color.js';
import { makeOutput } from '../common-options.js';
import { untilShutdown } from '../lifecycle.js';
import { firstThatFits, outputWidth, wrapText } from '../render/width.js';
import { Spinner } from '../spinner.js';
import type { ResolvedOptions } from '../options/resolve.js';
import type { DemoOptions } from '../schemas/demo.js';

/** `udp-tunnel demo`: a whole tunnel on loopback, exercised and explained. */
export async function runDemo(args: DemoOptions, _r: ResolvedOptions<DemoOptions>): Promise<void> {
  const out = makeOutput(args);
  const c = color();
  const spinner = new Spinner('starting UDP echo, serve and connect on loopback', { json: args.json, quiet: args.quiet });
  const stack = await startDemoStack(args.ipv6 ? '::1' : '127.0.0.1');
  spinner.stop();
  const local = formatHostPort(stack.local.address, stack.local.port);
  const target = formatHostPort(stack.target.host, stack.target.port);
  const width = outputWidth();
  if (!args.json) {
    out.data(c.bold('udp-tunnel demo'));
    const hops = [`connect ${c.cyan(`udp://${local}`)}`, `serve ${c.cyan(stack.proxyUrl)} (HTTP/2 CONNECT-UDP)`, `echo ${c.cyan(`udp://${target}`)}`];
    out.data(firstThatFits(width, [() => `  UDP peers -> ${hops.join(' -> ')}`, () => `  UDP peers -> ${hops.join(`\n${' '.repeat(12)}-> `)}`]));
  }
  const spin = new Spinner('sending', { json: args.json, quiet: args.quiet });
  const result = await runDemoTraffic(stack, {
    peers: args.peers,
    count: args.count,
    size: args.size,
    onProgress: (done, total) => {
      if (done % 50 === 0 || done === total) spin.text = `sent ${done}/${total} datagrams`;
    },
  });
  spin.stop();
  const received = result.peers.reduce((n, p) => n + p.received, 0);
  const sent = result.peers.reduce((n, p) => n + p.sent, 0);
  const corrupted = result.peers.reduce((n, p) => n + p.corrupted, 0);
  const ok = received === sent && corrupted === 0;
  if (args.json) {
    out.event('result', { ok, local: stack.local, proxy: stack.proxyUrl, target: stack.target, ...result });
  } else {
    const us = (v: number) => `${Math.round(v)} µs`;
    const columns: [string, (p: (typeof result.peers)[number]) => string | number][] = [
      ['peer', (p) => p.peer],
      ['sent', (p) => p.sent],
      ['echoed', (p) => p.received],
      ['corrupted', (p) => p.corrupted],
      ['RTT p50', (p) => us(p.rttUs.p50)],
      ['RTT p99', (p) => us(p.rttUs.p99)],
      ['RTT max', (p) => us(p.rttUs.max)],
    ];
    const table = (keep: readonly string[]): string => {
      const cols = columns.filter(([h]) => keep.includes(h));
      const t = new Table({
        head: cols.map(([h]) => h),
        style: { head: c.level > 0 ? ['cyan'] : [], border: c.level > 0 ? ['grey'] : [] },
        chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
      });
      for (const p of result.peers) t.push(cols.map(([, cell]) => cell(p)));
      return t.toString();
    };
    out.data(
      firstThatFits(width, [
        () => table(columns.map(([h]) => h)),
        () => table(['peer', 'echoed', 'corrupted', 'RTT p50', 'RTT p99']),
        () => table(['peer', 'echoed', 'RTT p50']),
      ]),
    );
    out.data(
      wrapText(
        `${ok ? c.green('ok') : c.red('FAILED')}: ${received}/${sent} datagrams of ${args.size} bytes echoed intact through ` +
          `${result.client.downstream_sess_total} tunnel sessions in ${(result.elapsedMs / 1000).toFixed(2)} s`,
        width,
      ),
    );
  }
  if (args.keep) {
    const h = stack.local.address;
    out.info(`tunnel stays up; try:  echo hello | socat -t1 - UDP${h.includes(':') ? '6' : '4'}:${local}`);
    out.info('Ctrl-C to stop');
    const { done } = untilShutdown(() => stack.close());
    await done;
  } else {
    await stack.close();
  }
  if (!ok) process.exitCode = 1;
}
