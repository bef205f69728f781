#!/usr/bin/env node
import { main } from '../dist/src/cli/main.js';

const code = await main();
// A command may have set a failure exit code itself (demo when an echo is missing); success must not hide it.
if (code !== 0 || process.exitCode === undefined) process.exitCode = code;
