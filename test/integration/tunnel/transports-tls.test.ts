import { describe } from 'node:test';
import { transportMatrix } from '../../helpers/transport-matrix.js';

describe('tunnel/transport: transports over a TLS listener (ALPN chooses h2 or http/1.1)', () => {
  transportMatrix(true);
});
