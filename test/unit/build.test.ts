import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { DEFAULT_FRAGMENTS, droppedOptions, fragmentFiles, parseConfig } from '../../harness/build/kconfig.js';
import { buildProgressLine, seedBuildDir } from '../../harness/build/kernel-build.js';
import { moduleDirsOf } from '../../harness/build/module-build.js';
import { parseMakefileVersion } from '../../harness/build/tree.js';
import { taintMask } from '../../harness/triage/kernel-text.js';

test('parseConfig reads =values, "is not set" and =n; later lines win', (t) => {
  const c = parseConfig('CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=m\nCONFIG_S="x y"\nCONFIG_C=y\nCONFIG_D=n\n# comment\n');
  t.deepEqual(
    [...c],
    [
      ['CONFIG_A', 'y'],
      ['CONFIG_B', 'n'],
      ['CONFIG_C', 'y'],
      ['CONFIG_S', '"x y"'],
      ['CONFIG_D', 'n'],
    ],
  );
});

test('droppedOptions names every option the final .config lost, with its fragment', (t) => {
  const fragments = [
    { file: '/k/dax.config', text: 'CONFIG_DAX=y\nCONFIG_DEV_DAX=m\n# CONFIG_FOO is not set\n' },
    { file: '/k/cxl.config', text: 'CONFIG_CXL_BUS=y\n' },
  ];
  const final = 'CONFIG_DAX=y\n# CONFIG_DEV_DAX is not set\nCONFIG_CXL_BUS=m\n';
  t.deepEqual(droppedOptions(fragments, final), [
    { option: 'CONFIG_DEV_DAX', wanted: 'm', got: 'n', fragment: 'dax.config' },
    { option: 'CONFIG_CXL_BUS', wanted: 'y', got: 'm', fragment: 'cxl.config' },
  ]);
  // An option asked to be off and absent from .config is as asked.
  t.deepEqual(droppedOptions([{ file: 'a', text: 'CONFIG_X=n\n' }], ''), []);
  t.deepEqual(droppedOptions([{ file: 'a', text: 'CONFIG_X=y\n' }], '')[0]?.got, 'n (not in .config)');
});

test('fragmentFiles: defaults, "+debug" adds, a plain list replaces, unknown names are usage errors', (t) => {
  t.is(fragmentFiles(undefined).length, DEFAULT_FRAGMENTS.length);
  t.true(fragmentFiles('+debug').at(-1)?.endsWith('kconfig/debug.config'));
  t.deepEqual(
    fragmentFiles('base,dax').map((f) => f.split('/').at(-1)),
    ['base.config', 'dax.config'],
  );
  t.throws(() => fragmentFiles('nosuch'), { message: /unknown config fragment "nosuch"/ });
});

test('moduleDirsOf sorts changed files into buildable module directories and the rest', (t) => {
  t.deepEqual(moduleDirsOf(['drivers/dax/kmem.c', 'drivers/dax/bus.h', 'drivers/cxl/core/region.c', 'mm/memory_hotplug.c']), {
    dirs: ['drivers/dax', 'drivers/cxl'],
    elsewhere: ['mm/memory_hotplug.c'],
  });
});

test('parseMakefileVersion', (t) => {
  t.is(parseMakefileVersion('# SPDX\nVERSION = 7\nPATCHLEVEL = 3\nSUBLEVEL = 0\n'), '7.3');
  t.is(parseMakefileVersion('all:\n'), undefined);
});

test('taintMask is the inverse of the letters', (t) => {
  t.is(taintMask('OE'), 4096 + 8192);
  t.is(taintMask(''), 0);
});

test('buildProgressLine: objects so far; with a build from scratch measured, the share and the minutes left', (t) => {
  t.is(buildProgressLine(10, 'mm/slub.o', 30), 'build: 10 objects compiled, now mm/slub.o');
  t.is(buildProgressLine(0, '', 5, { objects: 3000, seconds: 900 }), 'build: 0 objects compiled');
  // 1000 of 3000 in 300 s: 2000 more at the same rate is 600 s.
  t.is(
    buildProgressLine(1000, 'fs/x.o', 300, { objects: 3000, seconds: 900 }),
    'build: 1000 objects compiled (~33% of a build from scratch, ~10 min left), now fs/x.o',
  );
  // An incremental build past the estimate never claims 100% or 0 minutes.
  t.is(buildProgressLine(4000, '', 600, { objects: 3000, seconds: 900 }), 'build: 4000 objects compiled (~99% of a build from scratch, ~1 min left)');
});

test('seedBuildDir: an empty build directory starts as a copy of the seed, without its installed modules; the changed files become newer', async (t) => {
  const scratch = await mkdtemp(path.join(tmpdir(), 'dax-seed-'));
  t.teardown(() => rm(scratch, { recursive: true, force: true }));
  const [seed, out, tree] = ['base-build', 'series-build', 'tree'].map((d) => path.join(scratch, d)) as [string, string, string];
  await mkdir(path.join(seed, 'mm'), { recursive: true });
  await mkdir(path.join(seed, 'modules-install/lib'), { recursive: true });
  await mkdir(tree);
  await writeFile(path.join(seed, '.dax-harness-build.json'), '{}');
  await writeFile(path.join(seed, 'mm/slub.o'), 'object');
  await writeFile(path.join(tree, 'kmem.c'), 'source');
  const past = new Date(Date.now() - 3600_000);
  await utimes(path.join(tree, 'kmem.c'), past, past);
  await utimes(path.join(seed, 'mm/slub.o'), past, past);
  await seedBuildDir({ buildDir: seed, changed: ['kmem.c', 'deleted-by-the-series.c'], label: 'base' }, out, tree);
  t.is(await readFile(path.join(out, 'mm/slub.o'), 'utf8'), 'object');
  // Within a millisecond: cp keeps nanoseconds, a Date has milliseconds.
  t.true(Math.abs((await stat(path.join(out, 'mm/slub.o'))).mtimeMs - past.getTime()) < 1, 'times kept: make must see the copy as built');
  t.true(existsSync(path.join(out, '.dax-harness-build.json')));
  t.false(existsSync(path.join(out, 'modules-install')));
  t.true((await stat(path.join(tree, 'kmem.c'))).mtimeMs > Date.now() - 60_000, 'the changed file is newer than every copied object');
  // A directory with a build of its own is left alone.
  await writeFile(path.join(out, 'mm/slub.o'), 'its own');
  await seedBuildDir({ buildDir: seed, changed: [], label: 'base' }, out, tree);
  t.is(await readFile(path.join(out, 'mm/slub.o'), 'utf8'), 'its own');
});
