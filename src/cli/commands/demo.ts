import Table from 'cli-table3';
import { formatHostPort } from '../../tunnel/address.js';
import { DEMO_TRAFFIC_DEFAULTS, runDemoTraffic, startDemoStack } from '../../bench/demo.js';
import { color } from '../color.js';
import { makeOutput } from '../common-options.js';
import { untilShutdown } from '../lifecycle.js';
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
  if (!args.json) {
    out.data(c.bold('udp-tunnel demo'));
    out.data(`  UDP peers -> connect ${c.cyan(`udp://${local}`)} -> serve ${c.cyan(stack.proxyUrl)} (HTTP/2 CONNECT-UDP) -> echo ${c.cyan(`udp://${target}`)}`);
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
    process.stdout.write(`${JSON.stringify({ ok, local: stack.local, proxy: stack.proxyUrl, target: stack.target, ...result })}\n`);
  } else {
    const table = new Table({
      head: ['peer', 'sent', 'echoed', 'corrupted', 'RTT p50', 'RTT p99', 'RTT max'],
      style: { head: c.level > 0 ? ['cyan'] : [], border: c.level > 0 ? ['grey'] : [] },
      chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' },
    });
    const us = (v: number) => `${Math.round(v)} µs`;
    for (const p of result.peers) table.push([p.peer, p.sent, p.received, p.corrupted, us(p.rttUs.p50), us(p.rttUs.p99), us(p.rttUs.max)]);
    out.data(table.toString());
    out.data(
      `${ok ? c.green('ok') : c.red('FAILED')}: ${received}/${sent} datagrams of ${args.size} bytes echoed intact through ` +
        `${result.client.downstream_sess_total} tunnel sessions in ${(result.elapsedMs / 1000).toFixed(2)} s`,
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
