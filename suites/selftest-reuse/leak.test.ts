import { guestTest } from '../../harness/suite-kit/fixture.js';

/**
 * A state leak the runner's reset must catch (test/e2e/faults.test.ts): the first session
 * leaves a tmpfs mounted, which no device reset undoes; the next session, with the same
 * command line and topology, must not get that guest. A third finds the second's guest clean
 * and reuses it. Never part of "all".
 */
const LEAK = '/mnt/dax-harness-leak';

if (process.env.DAX_HARNESS_LEAK === 'make') {
  guestTest('leak: a test leaves a tmpfs mounted', {}, async (_t, kit) => {
    const r = await kit.guest.exec(`mkdir -p ${LEAK} && mount -t tmpfs tmpfs ${LEAK}`);
    kit.check('tmpfs mounted', r.code, 0);
  });
} else {
  guestTest(`leak: session ${process.env.DAX_HARNESS_LEAK} finds nothing left behind`, {}, async (_t, kit) => {
    const mounts = await kit.guest.readFile('/proc/mounts');
    kit.check('leaked mount present', mounts.includes(LEAK), false);
  });
}
