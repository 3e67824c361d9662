import test from 'ava';
import { moduleClosure, moduleName, parseModulesBuiltin, parseModulesDep } from '../../harness/guest/modules.js';

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
