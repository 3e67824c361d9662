// The harness and its suites as plain JavaScript, transpiled once by esbuild into
// <root>/.build/js-<hash>/ and used by the CLI and by every ava test worker it starts.
//
// Why: loading TypeScript through tsx costs each node process about 0.35-0.5 s of CPU (its
// loader thread and hooks), measured here: an ava run of one empty test file took 1.6-1.8 s
// wall and 2.3 s CPU with tsx, 1.0-1.1 s and 1.3 s from transpiled files. A full run starts
// about 30 test workers, all on the same two cores as its TCG guests.
//
// Plain JavaScript because it runs before anything can load TypeScript. The tree is named by
// a hash of every source's path and bytes, so an edit (the dev loop, a checkout) makes a new
// tree and a stale one is never used. Concurrent harness processes on one checkout each
// transpile into a temporary of their own and rename it into place; the first rename wins,
// the others discard theirs and use it (the trees are identical, the work is 0.3 s of CPU),
// so no lock is needed and no process ever sees a half-written tree.
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

/** What the trees hold: the directories whose TypeScript the CLI and the test workers load. */
export const SOURCE_DIRS = ['harness', 'suites'];
/** Bumped when what a tree holds changes shape, so trees made by an older builder are not used. */
const TREE_FORMAT = '1';
/** Trees of other sources older than this are removed (a harness still running one has it loaded). */
const STALE_TREE_MS = 24 * 3600 * 1000;

/** Every .ts file under the source directories, relative to `root`, sorted. */
export function sourceFiles(root) {
  const files = [];
  const walk = (rel) => {
    for (const entry of readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const child = path.join(rel, entry.name);
      if (entry.isDirectory() && entry.name !== 'node_modules') walk(child);
      else if (entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) files.push(child);
    }
  };
  for (const dir of SOURCE_DIRS) if (existsSync(path.join(root, dir))) walk(dir);
  return files.sort();
}

/** This file: the harness imports it to refresh its tree, so each tree holds a copy. */
const SELF = 'bin/compiled-tree.js';

/** The tree's name for these sources: their paths and bytes, this builder's, esbuild's version and the format. */
export function treeHash(root, files, esbuildVersion) {
  const hash = createHash('sha256').update(`${TREE_FORMAT}\0${esbuildVersion}\0`);
  if (existsSync(path.join(root, SELF))) hash.update(readFileSync(path.join(root, SELF)));
  for (const file of files)
    hash
      .update(`${file}\0`)
      .update(readFileSync(path.join(root, file)))
      .update('\0');
  return hash.digest('hex').slice(0, 16);
}

/** The package.json of a tree: ESM, and ava's settings without tsx (nothing left to transpile). */
const TREE_PACKAGE = { type: 'module', private: true, ava: { workerThreads: false, nodeArguments: ['--enable-source-maps'] } };

/**
 * The transpiled tree of `root`'s current sources, made if it is missing; undefined when it
 * cannot be made (no esbuild, a read-only checkout), and then the caller loads TypeScript.
 * `onError` hears why.
 */
export function ensureCompiledTree(root, onError = () => undefined) {
  try {
    const esbuild = createRequire(import.meta.url)('esbuild');
    const files = sourceFiles(root);
    const buildDir = path.join(root, '.build');
    const tree = path.join(buildDir, `js-${treeHash(root, files, esbuild.version)}`);
    if (existsSync(path.join(tree, 'package.json'))) {
      // In use: a long dev loop's tree is not taken for stale by another checkout's harness.
      const now = new Date();
      utimesSync(tree, now, now);
      return tree;
    }
    mkdirSync(buildDir, { recursive: true });
    const temporary = path.join(buildDir, `.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
    try {
      esbuild.buildSync({
        entryPoints: files.map((f) => path.join(root, f)),
        outdir: temporary,
        outbase: root,
        format: 'esm',
        platform: 'node',
        target: 'node20',
        sourcemap: 'linked',
        logLevel: 'silent',
      });
      mkdirSync(path.join(temporary, 'bin'), { recursive: true });
      copyFileSync(path.join(root, SELF), path.join(temporary, SELF));
      // Written last: a tree with its package.json is complete.
      writeFileSync(path.join(temporary, 'package.json'), `${JSON.stringify(TREE_PACKAGE, null, 2)}\n`);
      renameSync(temporary, tree);
    } catch (error) {
      rmSync(temporary, { recursive: true, force: true });
      // Another process put the same tree in place first: theirs is as good as ours.
      if (!existsSync(path.join(tree, 'package.json'))) throw error;
    }
    removeStaleTrees(buildDir, tree);
    return tree;
  } catch (error) {
    onError(error instanceof Error ? error.message.split('\n')[0] : String(error));
    return undefined;
  }
}

/** Removes trees (and temporaries of dead builds) other than `keep` that are older than a day. */
function removeStaleTrees(buildDir, keep) {
  const now = Date.now();
  for (const name of readdirSync(buildDir)) {
    const dir = path.join(buildDir, name);
    if (dir === keep || !/^(js-|\.tmp-)/.test(name)) continue;
    try {
      if (now - statSync(dir).mtimeMs > STALE_TREE_MS) rmSync(dir, { recursive: true, force: true });
    } catch {
      // Another harness removed it meanwhile.
    }
  }
}
