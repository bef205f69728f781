import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-width-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const ANSI = /\u001b\[[0-9;?]*[A-Za-z]/g;

/** Columns of the widest line, escape sequences stripped. */
function widest(text: string): { width: number; line: string } {
  let best = { width: 0, line: '' };
  for (const line of text.split('\n')) {
    const plain = line.replace(ANSI, '');
    const width = [...plain].length;
    if (width > best.width) best = { width, line: plain };
  }
  return best;
}

function assertFits(what: string, text: string): void {
  const w = widest(text);
  assert.ok(w.width <= 100, `${what}: a line of ${w.width} columns:\n${w.line}`);
}

// Piped stdout: the rule is 100 columns. FORCE_COLOR checks that escape sequences do not count.
const ENV = { FORCE_COLOR: '1', CI: '1' };

describe('human output fits 100 columns when stdout is piped', () => {
  it('bench: header, headline, histogram, tables and notes; --csv writes one row per path', async () => {
    const csv = join(dir, 'bench.csv');
    const r = await runCli(['bench', '--duration', '200ms', '--warmup', '0', '--runs', '1', '--idle-sessions', '0', '--csv', csv], {
      env: ENV,
      timeoutMs: 120_000,
    });
    assert.equal(r.code, 0, r.stderr);
    assertFits('bench stdout', r.stdout);
    assertFits('bench stderr', r.stderr);
    const plain = r.stdout.replace(ANSI, '');
    assert.match(plain, /tunnel \/ direct, over 1 run:\n.*throughput/);
    assert.match(plain, /round-trip latency, share of each path's replies/);
    const lines = readFileSync(csv, 'utf8').trimEnd().split('\n');
    assert.equal(lines.length, 3);
    const head = lines[0]!.split(',');
    const rows = lines.slice(1).map((l) => Object.fromEntries(l.split(',').map((v, i) => [head[i]!, v])));
    assert.deepEqual(rows.map((x) => [x['path'], x['runs']]), [
      ['direct', '1'],
      ['tunnel', '1'],
    ]);
    for (const row of rows) {
      assert.ok(Number(row['throughput_dps_mean']) > 0, 'throughput');
      assert.ok(Number(row['latency_p99_us']) >= Number(row['latency_p50_us']), 'p99 >= p50');
      assert.ok(Number(row['latency_p50_us']) > 0, 'p50');
    }
    assert.ok(Number(rows[1]!['relative_throughput']) > 0);
    assert.match(rows[1]!['connect_cpu']!, /^\d+(\.\d+)?$/);
  });

  it('demo: the path line, the peer table and the result line', async () => {
    const r = await runCli(['demo', '--peers', '2', '--count', '10', '--ipv6'], { env: ENV });
    assert.equal(r.code, 0, r.stderr);
    assertFits('demo', r.stdout);
    assert.match(r.stdout, /echoed intact/);
  });

  it('inspect: capsule lines with a 16-byte preview, an error line and the summary table', async () => {
    const long = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKLMN');
    const stream = Buffer.concat([Buffer.from('000500' + '70696e67' + '404002abcd' + '002900', 'hex'), long, Buffer.from('000a006162', 'hex')]);
    const file = join(dir, 'stream.bin');
    writeFileSync(file, stream);
    for (const extra of [[], ['-v'], ['--full']]) {
      const r = await runCli(['inspect', '--raw', file, ...extra], { env: ENV });
      assert.equal(r.code, 0, r.stderr);
      assertFits(`inspect ${extra.join(' ')}`, r.stdout);
      assert.match(r.stdout.replace(ANSI, ''), /ERROR at byte/);
      assert.match(r.stdout.replace(ANSI, ''), /│ raw /, 'the summary table');
    }
  });
});
