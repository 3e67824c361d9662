/**
 * The boot watchdog for a console that goes silent (a TCG vCPU whose timer stopped cannot
 * even report its stall): silence past the limit is a hang; output keeps it alive; a stop
 * ends the watch at once, so a good boot never waits for the watchdog.
 */
import test from 'ava';
import type { Machine } from '../../harness/vm/machine.js';
import { consoleSilence } from '../../harness/vm/boot.js';

const fakeMachine = () => ({ console: { lineCount: 0 } }) as unknown as Pick<Machine, 'console'>;

test('a console silent past the limit is reported as stuck', async (t) => {
  const started = Date.now();
  t.true(await consoleSilence(fakeMachine(), 300, new AbortController().signal));
  t.true(Date.now() - started >= 300);
});

test('a console that keeps printing is not stuck; a stop ends the watch at once', async (t) => {
  const machine = fakeMachine();
  const printing = setInterval(() => machine.console.lineCount++, 100);
  const stop = new AbortController();
  const watch = consoleSilence(machine, 400, stop.signal);
  await new Promise((r) => setTimeout(r, 1200));
  const stopped = Date.now();
  stop.abort();
  t.false(await watch);
  t.true(Date.now() - stopped < 50);
  clearInterval(printing);
});
