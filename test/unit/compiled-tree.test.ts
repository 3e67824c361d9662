import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import test from 'ava';
import { ensureCompiledTree, sourceFiles } from '../../bin/compiled-tree.js';
import { sourceOf } from '../../harness/util/paths.js';

const BUILDER = path.resolve('bin/compiled-tree.js');

/** A checkout in miniature: a harness module, a suite file that imports it, and the builder. */
function fakeRoot(t: { teardown(fn: () => void): void }): string {
  const root = mkdtempSync(path.join(os.tmpdir(), 'dax-tree-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(path.join(root, 'harness/util'), { recursive: true });
  mkdirSync(path.join(root, 'suites/demo'), { recursive: true });
  mkdirSync(path.join(root, 'bin'));
  writeFileSync(path.join(root, 'bin/compiled-tree.js'), readFileSync(BUILDER));
  writeFileSync(path.join(root, 'harness/util/answer.ts'), 'export const answer: number = 42;\nexport type Unused = { a: string };\n');
  writeFileSync(path.join(root, 'harness/util/types.d.ts'), 'export type Only = string;\n');
  writeFileSync(
    path.join(root, 'suites/demo/demo.test.ts'),
    "import { answer } from '../../harness/util/answer.js';\nexport const doubled: number = answer * 2;\n",
  );
  return root;
}

test('a tree holds every source as JavaScript that runs, and is reused while the sources stay the same', async (t) => {
  const root = fakeRoot(t);
  t.deepEqual(sourceFiles(root), ['harness/util/answer.ts', 'suites/demo/demo.test.ts']);
  const tree = ensureCompiledTree(root);
  if (!tree) return t.fail('no tree');
  t.regex(path.relative(root, tree), /^\.build\/js-[0-9a-f]{16}$/);
  const { doubled } = (await import(pathToFileURL(path.join(tree, 'suites/demo/demo.test.js')).href)) as { doubled: number };
  t.is(doubled, 84);
  t.is(JSON.parse(readFileSync(path.join(tree, 'package.json'), 'utf8')).type, 'module');
  t.true(existsSync(path.join(tree, 'bin/compiled-tree.js')), 'the tree carries its builder');
  t.is(ensureCompiledTree(root), tree);
  t.deepEqual(readdirSync(path.join(root, '.build')), [path.basename(tree)]);
});

test('an edited source gets a new tree; the old one stays for a harness still running it', (t) => {
  const root = fakeRoot(t);
  const before = ensureCompiledTree(root);
  writeFileSync(path.join(root, 'harness/util/answer.ts'), 'export const answer: number = 43;\n');
  const after = ensureCompiledTree(root);
  t.not(after, before);
  t.regex(readFileSync(path.join(after ?? '', 'harness/util/answer.js'), 'utf8'), /answer = 43/);
  t.true(existsSync(before ?? ''));
});

test('a source esbuild cannot read gives no tree, says why and leaves no temporary', (t) => {
  const root = fakeRoot(t);
  writeFileSync(path.join(root, 'harness/util/broken.ts'), 'export const = ;\n');
  const why: string[] = [];
  t.is(
    ensureCompiledTree(root, (w) => why.push(w)),
    undefined,
  );
  t.is(why.length, 1);
  t.regex(why[0] ?? '', /Build failed|error/i);
  t.deepEqual(readdirSync(path.join(root, '.build')), []);
});

test('four processes making the same tree at once all get it whole, and leave no temporary', async (t) => {
  const root = fakeRoot(t);
  const script = `import { ensureCompiledTree } from ${JSON.stringify(pathToFileURL(BUILDER).href)}; process.stdout.write(String(ensureCompiledTree(${JSON.stringify(root)})));`;
  const run = () =>
    new Promise<string>((resolve) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c));
      child.on('close', () => resolve(out));
    });
  const trees = await Promise.all([run(), run(), run(), run()]);
  t.is(new Set(trees).size, 1);
  t.regex(trees[0] ?? '', /\.build\/js-[0-9a-f]{16}$/);
  t.deepEqual(readdirSync(path.join(root, '.build')), [path.basename(trees[0] ?? '')]);
  t.true(existsSync(path.join(trees[0] ?? '', 'suites/demo/demo.test.js')));
});

test('sourceOf maps a transpiled module back to its TypeScript source, and leaves sources alone', (t) => {
  t.is(sourceOf('/w/main/.build/js-0123456789abcdef/suites/hotplug/races.test.js'), '/w/main/suites/hotplug/races.test.ts');
  t.is(sourceOf('/w/main/suites/hotplug/races.test.ts'), '/w/main/suites/hotplug/races.test.ts');
  t.is(sourceOf('/w/main/.build/other/x.js'), '/w/main/.build/other/x.js');
});
