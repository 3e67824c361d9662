#!/usr/bin/env node
// Runs the CLI from the harness transpiled to JavaScript (bin/compiled-tree.js: made again
// when a source changes), or, when that cannot be made, from its TypeScript through tsx.
// DAX_HARNESS_TSX=1 always takes tsx (to compare the two, or to debug the transpiled tree).
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ensureCompiledTree } from './compiled-tree.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const tree =
  process.env.DAX_HARNESS_TSX === '1'
    ? undefined
    : ensureCompiledTree(root, (why) => process.stderr.write(`dax-harness: warning: running through tsx: cannot transpile the harness (${why})\n`));
let main;
if (tree) {
  // Stack traces (a harness bug's report) name the TypeScript lines, through the trees' .map files.
  process.setSourceMapsEnabled(true);
  ({ main } = await import(pathToFileURL(path.join(tree, 'harness/cli.js')).href));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../harness/cli.ts'));
}
await main(process.argv);
