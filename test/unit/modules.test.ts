import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { moduleClosure, moduleName, parseModulesBuiltin, parseModulesDep } from '../../harness/guest/modules.js';
import { moduleDeps, moduleFileIndex, walkModuleDeps } from '../../harness/kernel/module-deps.js';

// Lines as depmod wrote them for Debian's 7.3-amd64 kernel (modules.dep, trimmed).
const DEP = `kernel/drivers/dax/kmem.ko.xz: kernel/drivers/dax/device_dax.ko.xz
kernel/drivers/dax/device_dax.ko.xz:
kernel/drivers/dax/dax_cxl.ko.xz: kernel/drivers/cxl/cxl_acpi.ko.xz
kernel/drivers/cxl/cxl_acpi.ko.xz:
kernel/drivers/nvdimm/nd_pmem.ko.xz: kernel/drivers/nvdimm/nd_btt.ko.xz kernel/drivers/nvdimm/libnvdimm.ko.xz
kernel/drivers/nvdimm/nd_btt.ko.xz: kernel/drivers/nvdimm/libnvdimm.ko.xz
kernel/drivers/nvdimm/libnvdimm.ko.xz:
kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz kernel/net/core/failover.ko.xz
kernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz
kernel/net/core/failover.ko.xz:
`;

test('module names fold dashes and drop compression suffixes', (t) => {
  t.is(moduleName('kernel/drivers/dax/hmem/dax_hmem.ko.xz'), 'dax_hmem');
  t.is(moduleName('kernel/foo/bar-baz.ko.zst'), 'bar_baz');
  t.is(moduleName('kernel/foo/plain.ko'), 'plain');
});

test('closure follows dependencies transitively and keeps each file once', (t) => {
  const closure = moduleClosure(['kmem', 'nd_pmem', 'virtio_net'], parseModulesDep(DEP), new Set());
  t.deepEqual(closure.files, [
    'kernel/drivers/dax/device_dax.ko.xz',
    'kernel/drivers/dax/kmem.ko.xz',
    'kernel/drivers/net/net_failover.ko.xz',
    'kernel/drivers/net/virtio_net.ko.xz',
    'kernel/drivers/nvdimm/libnvdimm.ko.xz',
    'kernel/drivers/nvdimm/nd_btt.ko.xz',
    'kernel/drivers/nvdimm/nd_pmem.ko.xz',
    'kernel/net/core/failover.ko.xz',
  ]);
  t.deepEqual(closure.loadable, ['kmem', 'nd_pmem', 'virtio_net']);
});

test('built-in modules need no file; unknown ones are reported missing', (t) => {
  const builtin = parseModulesBuiltin('kernel/drivers/cxl/core/cxl_core.ko\nkernel/drivers/dax/dax.ko\n');
  const closure = moduleClosure(['cxl_core', 'dax', 'kmem', 'no_such'], parseModulesDep(DEP), builtin);
  t.deepEqual(closure.builtin, ['cxl_core', 'dax']);
  t.deepEqual(closure.missing, ['no_such']);
  t.deepEqual(closure.loadable, ['kmem']);
});

test("without a modules.dep, the modules asked for and what they need are walked from each one's depends=, to the same closure", async (t) => {
  // The direct dependencies modpost wrote into each module (modinfo -F depends), for the DEP above.
  const depends: Record<string, string[]> = {
    'kernel/drivers/dax/kmem.ko.xz': ['device_dax'],
    'kernel/drivers/dax/device_dax.ko.xz': [],
    'kernel/drivers/nvdimm/nd_pmem.ko.xz': ['nd_btt', 'libnvdimm'],
    'kernel/drivers/nvdimm/nd_btt.ko.xz': ['libnvdimm'],
    'kernel/drivers/nvdimm/libnvdimm.ko.xz': [],
    'kernel/drivers/net/virtio_net.ko.xz': ['net_failover'],
    'kernel/drivers/net/net_failover.ko.xz': ['failover'],
    'kernel/net/core/failover.ko.xz': [],
  };
  const index = new Map([...parseModulesDep(DEP)].map(([name, d]) => [name, d.path]));
  const read: string[] = [];
  const walked = await walkModuleDeps(['kmem', 'nd-pmem', 'virtio_net', 'not_here'], index, async (rel) => {
    read.push(rel);
    return depends[rel] ?? [];
  });
  const asked = ['kmem', 'nd_pmem', 'virtio_net', 'not_here'];
  t.deepEqual(moduleClosure(asked, walked, new Set()), moduleClosure(asked, parseModulesDep(DEP), new Set()));
  t.is(new Set(read).size, read.length, 'each module read once, libnvdimm too (two modules need it)');
  t.false(
    read.some((r) => r.includes('cxl')),
    'nothing read that nobody asked for',
  );
});

test('the module file index names every module file under the tree, compressed or not', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'modindex-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await mkdir(path.join(dir, 'kernel/drivers/dax'), { recursive: true });
  for (const f of ['kernel/drivers/dax/kmem.ko.xz', 'kernel/drivers/dax/dax-pmem.ko', 'kernel/drivers/dax/notes.txt', 'modules.order']) {
    await writeFile(path.join(dir, f), '');
  }
  t.deepEqual([...(await moduleFileIndex(dir))].sort(), [
    ['dax_pmem', 'kernel/drivers/dax/dax-pmem.ko'],
    ['kmem', 'kernel/drivers/dax/kmem.ko.xz'],
  ]);
});

test('a tree without modules.dep answers a set of modules walked before from its memo, without reading a module again', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'modmemo-'));
  t.teardown(() => rm(root, { recursive: true, force: true }));
  const dir = path.join(root, 'lib/modules/7.3-amd64');
  await mkdir(path.join(dir, 'kernel/drivers/dax'), { recursive: true });
  // Not modules at all: modinfo fails on them, so any walk would throw.
  await writeFile(path.join(dir, 'kernel/drivers/dax/kmem.ko.xz'), '');
  await writeFile(path.join(dir, 'kernel/drivers/dax/device_dax.ko.xz'), '');
  const kmem = { path: 'kernel/drivers/dax/kmem.ko.xz', deps: ['kernel/drivers/dax/device_dax.ko.xz'] };
  const deviceDax = { path: 'kernel/drivers/dax/device_dax.ko.xz', deps: [] };
  await writeFile(
    path.join(dir, '.dax-harness-module-deps.json'),
    JSON.stringify({
      'device_dax kmem': [
        ['device_dax', deviceDax],
        ['kmem', kmem],
      ],
    }),
  );
  const { deps, source } = await moduleDeps(root, '7.3-amd64', ['kmem', 'device_dax', 'kmem']);
  t.deepEqual(
    [...deps],
    [
      ['device_dax', deviceDax],
      ['kmem', kmem],
    ],
  );
  t.regex(source, /^device_dax:.*\nkmem:kernel\/drivers\/dax\/kmem\.ko\.xz:kernel\/drivers\/dax\/device_dax\.ko\.xz$/);
  await t.throwsAsync(moduleDeps(root, '7.3-amd64', ['kmem']), undefined, 'another set is walked (and these files are no modules)');
});
