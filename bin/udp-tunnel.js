#!/usr/bin/env node
import { main } from '../dist/src/cli/main.js';

const code = await main();
process.exitCode = code;
