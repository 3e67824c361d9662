import { daxSelftestTests } from './dax-tests.js';

/** dax-kmem-hotplug.sh once per kmem device; its destructive case is dax-unbind's. */
daxSelftestTests({ unbind: false });
