import test from 'ava';
import { guestCmdline, overrideWarnings } from '../../harness/vm/cmdline.js';

const BASE = 'console=ttyS0 panic=-1';

test("the user's --boot-args come last and replace the session's value of the same parameter", (t) => {
  const { cmdline, overridden } = guestCmdline(BASE, 'memhp_default_state=offline', 'memhp_default_state=online_movable');
  // One value on the line, the user's: the kernel would take the last anyway, and suites read the first.
  t.is(cmdline, 'console=ttyS0 panic=-1 memhp_default_state=online_movable');
  t.deepEqual(overridden, [{ session: 'memhp_default_state=offline', user: 'memhp_default_state=online_movable' }]);
});

test('arguments that do not collide are all kept, session before user; the same value is no override', (t) => {
  const a = guestCmdline(BASE, 'memhp_default_state=offline', 'loglevel=7 quiet');
  t.is(a.cmdline, 'console=ttyS0 panic=-1 memhp_default_state=offline loglevel=7 quiet');
  t.deepEqual(a.overridden, []);
  const b = guestCmdline(BASE, 'memhp_default_state=offline', 'memhp_default_state=offline');
  t.is(b.cmdline, 'console=ttyS0 panic=-1 memhp_default_state=offline');
  t.deepEqual(b.overridden, []);
  t.is(guestCmdline(BASE, '', '').cmdline, BASE);
});

test('the base is never dropped: console= may appear twice', (t) => {
  t.is(guestCmdline(BASE, '', 'console=tty0').cmdline, 'console=ttyS0 panic=-1 console=tty0');
});

test('one warning per replacement, naming every session it changed', (t) => {
  const o = [{ session: 'memhp_default_state=offline', user: 'memhp_default_state=online' }];
  const lines = overrideWarnings([
    { session: 1, overridden: o },
    { session: 3, overridden: o },
    { session: 4, overridden: [] },
  ]);
  t.is(lines.length, 1);
  t.regex(lines[0] ?? '', /--boot-args memhp_default_state=online replaces the suite's memhp_default_state=offline \(session 1, 3\)/);
});
