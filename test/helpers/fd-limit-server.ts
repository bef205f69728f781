import { createInterface } from 'node:readline';
import { TargetPolicy } from '../../src/tunnel/policy.js';
import { TunnelServer } from '../../src/tunnel/server/tunnel-server.js';

// Runs a TunnelServer on 127.0.0.1:0 in a process of its own, so a test can start it under a lowered descriptor
// limit (`ulimit -n 64; exec node fd-limit-server.js --serve`). Prints {"port"} once listening, then answers each
// stdin line with {"counters", "sessions", "connections"}. The server deliberately has no 'error' listener: an error
// it should have handled itself takes this process down, and the test sees it exit.
// Run without --serve (as `node --test dist/test/` does with every file under test/) it does nothing.
if (process.argv[2] === '--serve') {
  const server = new TunnelServer({
    host: '127.0.0.1',
    port: 0,
    policy: new TargetPolicy(),
    // Idle test connections must stay until the test closes them, and one HTTP/2 connection may hold every tunnel.
    headerTimeoutMs: 120_000,
    maxStreamsPerConnection: 1000,
  });
  const { port } = await server.listen();
  process.stdout.write(`${JSON.stringify({ port })}\n`);
  const lines = createInterface({ input: process.stdin });
  lines.on('line', () => {
    process.stdout.write(`${JSON.stringify({ counters: server.counters, sessions: server.activeSessions, connections: server.openConnections })}\n`);
  });
  lines.once('close', () => void server.close());
}
