import test from 'ava';
import { DEFAULT_FRAGMENTS, droppedOptions, fragmentFiles, parseConfig } from '../../harness/build/kconfig.js';
import { moduleDirsOf } from '../../harness/build/module-build.js';
import { parseMakefileVersion } from '../../harness/build/tree.js';
import { taintMask } from '../../harness/kernel-text.js';

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
