// A cluster worker for the metrics aggregation test: one TunnelServer on the shared port 0, its registry exposed to
// the primary; tells the primary its port.
import { exposeToClusterPrimary, serveRegistry } from '../../src/cli/metrics/index.js';
import { TargetPolicy } from '../../src/tunnel/policy.js';
import { TunnelServer } from '../../src/tunnel/server/tunnel-server.js';

const server = new TunnelServer({ host: '127.0.0.1', port: 0, policy: new TargetPolicy() });
exposeToClusterPrimary(serveRegistry(server, { command: 'serve', version: 'test', notReady: () => null, processMetrics: false }));
const addr = await server.listen();
process.send!({ port: addr.port });
process.on('disconnect', () => void server.close());
