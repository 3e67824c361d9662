import test from 'ava';
import { DETAILS_TAIL_LINES, errorReport, InfraError, UsageError } from '../../harness/util/errors.js';

test('bad input is one line, whatever its message holds', (t) => {
  t.is(errorReport(new UsageError('--kernel 9.9 is not in Debian')), 'dax-harness: error: --kernel 9.9 is not in Debian\n');
  t.is(errorReport(new Error('boom\n    at frame')), 'dax-harness: internal error: boom\n', 'no stack frames of an internal error');
});

test('a failed build shows its error line, then the tail of its log', (t) => {
  const log = Array.from({ length: 60 }, (_, i) => `  CC      drivers/dax/file${i}.o`);
  log.push('drivers/dax/kmem.c:42:1: error: expected ‘;’ before ‘}’ token', 'make: *** [Makefile:2000: drivers] Error 2');
  const report = errorReport(new InfraError('kernel build failed: drivers/dax/kmem.c:42:1: error: expected ‘;’', log.join('\n')));
  const lines = report.trimEnd().split('\n');
  t.is(lines[0], 'dax-harness: infrastructure error: kernel build failed: drivers/dax/kmem.c:42:1: error: expected ‘;’');
  t.is(lines[1], `--- output (last ${DETAILS_TAIL_LINES} of 62 lines) ---`);
  t.deepEqual(lines.slice(2), log.slice(-DETAILS_TAIL_LINES));
  t.is(lines.at(-1), 'make: *** [Makefile:2000: drivers] Error 2');
});

test('an infrastructure error keeps the rest of its message (a console tail); empty details add nothing', (t) => {
  t.is(
    errorReport(new InfraError('boot hung\n--- console tail ---\nlast line', '  \n')),
    'dax-harness: infrastructure error: boot hung\n--- console tail ---\nlast line\n',
  );
});
