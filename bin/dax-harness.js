#!/usr/bin/env node
// Loads the TypeScript CLI through tsx, resolved from this package, so the command works
// from any directory without a build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../harness/cli.ts');
await main(process.argv);
