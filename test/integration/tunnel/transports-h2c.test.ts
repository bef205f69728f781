import { describe } from 'node:test';
import { transportMatrix } from '../../helpers/transport-matrix.js';

describe('tunnel/transport: transports over a cleartext listener (h2c prior knowledge and HTTP/1.1 side by side)', () => {
  transportMatrix(false);
});
