import { daxSelftestTests } from './dax-tests.js';

/**
 * dax-kmem-hotplug.sh with DAX_KMEM_TEST_UNBIND=1: its last case unbinds kmem while the memory
 * is online, which leaves it stuck online until reboot (suite.json: a guest of its own per backing).
 */
daxSelftestTests({ unbind: true });
