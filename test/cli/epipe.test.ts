import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { BIN, cliEnv } from '../helpers/cli.js';

describe('a reader that goes away', () => {
  const dir = mkdtempSync(join(tmpdir(), 'udp-tunnel-epipe-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('inspect --json | head -1: the closed pipe ends the run with exit 0 and no error', async () => {
    // 20,000 DATAGRAM capsules: far more NDJSON than a pipe buffer holds, so writing goes on after the reader left.
    const bytes: number[] = [];
    for (let i = 0; i < 20_000; i++) bytes.push(0x00, 0x03, 0x00, 0x61, 0x62);
    const file = join(dir, 'many.bin');
    writeFileSync(file, Buffer.from(bytes));
    const child = spawn(process.execPath, [BIN, 'inspect', '--raw', file, '--json'], { env: cliEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const first = await new Promise<string>((resolve) => {
      let buf = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        buf += d;
        const nl = buf.indexOf('\n');
        if (nl >= 0) {
          child.stdout.destroy();
          resolve(buf.slice(0, nl));
        }
      });
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    assert.equal((JSON.parse(first) as { event: string }).event, 'capsule');
    assert.equal(code, 0, stderr);
    assert.doesNotMatch(stderr, /EPIPE/);
  });
});
