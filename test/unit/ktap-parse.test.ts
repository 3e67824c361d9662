import test from 'ava';
import { parseKtap, scriptVerdict } from '../../harness/kselftest/ktap.js';

// What tools/testing/selftests/kselftest/ktap_helpers.sh prints (TAP version 13 header, "#" diagnostics).
const DAX_PASS = `TAP version 13
# using dax0.0 (initial state was: offline)
1..3
ok 1 online_movable: state=online_movable, MemTotal 100 -> 200 kB
ok 2 reject invalid state string
ok 3 destructive unbind-while-online test (set DAX_KMEM_TEST_UNBIND=1) # SKIP
# 1 skipped test(s) detected.  Consider enabling relevant config options to improve coverage.
# Totals: pass:2 fail:0 xfail:0 xpass:0 skip:1 error:0
`;

test('flat kselftest output: one case per result line, SKIP directive kept with its reason', (t) => {
  const doc = parseKtap(DAX_PASS);
  t.true(doc.isKtap);
  t.is(doc.planned, 3);
  t.deepEqual(
    doc.cases.map((c) => [c.number, c.name, c.status]),
    [
      [1, 'online_movable: state=online_movable, MemTotal 100 -> 200 kB', 'pass'],
      [2, 'reject invalid state string', 'pass'],
      [3, 'destructive unbind-while-online test (set DAX_KMEM_TEST_UNBIND=1)', 'skip'],
    ],
  );
  t.is(doc.cases[2]?.reason, 'destructive unbind-while-online test (set DAX_KMEM_TEST_UNBIND=1)');
  t.deepEqual(scriptVerdict(doc, 0, DAX_PASS), { status: 'pass' });
});

test('SKIP, XFAIL, TODO, XPASS and TIMEOUT directives map to kselftest verdicts', (t) => {
  const out = `KTAP version 1
1..6
ok 1 a # SKIP no device
not ok 2 b # SKIP not here either
ok 3 c # XFAIL known broken
not ok 4 d # TODO write it
ok 5 e # XPASS
not ok 6 f # TIMEOUT 45 seconds
`;
  const doc = parseKtap(out);
  t.deepEqual(
    doc.cases.map((c) => [c.name, c.status, c.directive, c.reason]),
    [
      ['a', 'skip', 'SKIP', 'no device'],
      ['b', 'skip', 'SKIP', 'not here either'],
      ['c', 'pass', 'XFAIL', 'expected failure: known broken'],
      ['d', 'skip', 'TODO', 'TODO: write it'],
      ['e', 'fail', 'XPASS', 'unexpected pass'],
      ['f', 'fail', 'TIMEOUT', 'timeout 45 seconds'],
    ],
  );
  t.is(scriptVerdict(doc, 1, out).status, 'fail');
});

test('a failed case takes the diagnostic lines printed before it as its reason', (t) => {
  const doc = parseKtap('TAP version 13\n1..2\nok 1 fine\n# rc=0 state=online\n# expected EBUSY\nnot ok 2 rejected twice\n');
  t.deepEqual(doc.cases[1], { number: 2, name: 'rejected twice', status: 'fail', reason: 'rc=0 state=online / expected EBUSY' });
  t.deepEqual(scriptVerdict(doc, 1, ''), { status: 'fail', reason: 'exited 1; 1 case(s) failed: rejected twice' });
});

test('nested subtests: children are named under their parent result, indented either way', (t) => {
  const out = `KTAP version 1
1..2
    KTAP version 1
    # Subtest: kmem
    1..2
    ok 1 bind
        # Subtest: state
        1..1
        not ok 1 write twice
    not ok 2 state
not ok 1 kmem
# Subtest: other
    KTAP version 1
    1..1
    ok 1 x # SKIP no pmem
ok 2 other
`;
  const doc = parseKtap(out);
  t.deepEqual(
    doc.cases.map((c) => [c.name, c.status]),
    [
      ['kmem', 'fail'],
      ['kmem: bind', 'pass'],
      ['kmem: state', 'fail'],
      ['kmem: state: write twice', 'fail'],
      ['other', 'pass'],
      ['other: x', 'skip'],
    ],
  );
  t.is(doc.topLevelResults, 2);
  t.deepEqual(scriptVerdict(doc, 0, out), { status: 'fail', reason: '3 case(s) failed: kmem; kmem: state; kmem: state: write twice' });
});

test('a skip-all plan (1..0, SKIP) and exit 4: the script is skipped with its reason', (t) => {
  const out = 'TAP version 13\n1..0 # SKIP set DAX_KMEM_TEST_DEV=<daxX.Y|auto> to opt in (mutates device memory)\n';
  const doc = parseKtap(out);
  t.is(doc.skipAll, 'set DAX_KMEM_TEST_DEV=<daxX.Y|auto> to opt in (mutates device memory)');
  t.deepEqual(doc.cases, []);
  t.deepEqual(scriptVerdict(doc, 4, out), { status: 'skip', reason: doc.skipAll });
});

test('a plain script (mem-on-off-test.sh): exit 4 skips with the line it printed, exit 1 fails with its last lines', (t) => {
  const skipped = 'skip all tests: no hot-pluggable memory\n';
  t.false(parseKtap(skipped).isKtap);
  t.deepEqual(scriptVerdict(parseKtap(skipped), 4, skipped), { status: 'skip', reason: 'skip all tests: no hot-pluggable memory' });
  const failed =
    'Test scope: 2% hotplug memory\n\t online all hot-pluggable memory in offline state:\noffline->online memory40\nonline_memory_expect_success 40: unexpected fail\n';
  t.deepEqual(scriptVerdict(parseKtap(failed), 1, failed), {
    status: 'fail',
    reason: 'exited 1 (last output: offline->online memory40 / online_memory_expect_success 40: unexpected fail)',
  });
  t.deepEqual(scriptVerdict(parseKtap('Test scope: 2%\n'), 0, 'Test scope: 2%\n'), { status: 'pass' });
});

test('output cut short (a crashed script or a dead guest): the cases printed count, the rest is a failure', (t) => {
  const out = 'TAP version 13\n1..10\nok 1 online_movable\nok 2 online_movable idempotent\n';
  const doc = parseKtap(out);
  t.is(doc.cases.length, 2);
  t.deepEqual(scriptVerdict(doc, null, out), {
    status: 'fail',
    reason: 'no exit status (killed, timed out or its guest stopped answering); output cut short: planned 1..10, 2 result(s) printed',
  });
  // Killed by a signal: bash's status 128+9; a subtest cut short keeps its announced name.
  const nested = parseKtap('KTAP version 1\n1..1\n    # Subtest: kmem\n    1..3\n    ok 1 bind\n');
  t.deepEqual(
    nested.cases.map((c) => c.name),
    ['kmem: bind'],
  );
  t.regex(scriptVerdict(nested, 137, '').reason ?? '', /^exited 137; output cut short: planned 1\.\.1, 0 result\(s\) printed$/);
});

test('Bail out! fails the script with its text', (t) => {
  const out = 'TAP version 13\n1..4\nok 1 a\nBail out!  no memory blocks\n# Totals: pass:1 fail:0\n';
  const doc = parseKtap(out);
  t.is(doc.bailOut, 'no memory blocks');
  t.deepEqual(scriptVerdict(doc, 1, out), { status: 'fail', reason: 'exited 1; Bail out! no memory blocks' });
});
