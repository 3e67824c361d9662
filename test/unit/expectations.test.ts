import test from 'ava';
import { expectWrite, expectedZone, parseWritten } from '../../harness/suite-kit/expectations.js';
import { type HotplugState, VARIANTS } from '../../harness/guest/hotplug.js';

const merged = VARIANTS.merged;
const v3 = VARIANTS.v3;
const STARTS: HotplugState[] = ['unplugged', 'offline', 'online', 'online_kernel', 'online_movable'];
const WORDS = ['unplugged', 'online', 'online_kernel', 'online_movable', 'offline', 'bogus'];

/** The merged table, written out by hand from state_store() in 7.3's drivers/dax/kmem.c. */
const MERGED: Record<HotplugState, Record<string, string>> = {
  unplugged: {
    unplugged: 'ok>unplugged',
    online: 'ok>online',
    online_kernel: 'ok>online_kernel',
    online_movable: 'ok>online_movable',
    offline: 'EINVAL>unplugged',
    bogus: 'EINVAL>unplugged',
  },
  offline: {
    unplugged: 'ok>unplugged',
    online: 'EBUSY>offline',
    online_kernel: 'EBUSY>offline',
    online_movable: 'EBUSY>offline',
    offline: 'EINVAL>offline',
    bogus: 'EINVAL>offline',
  },
  online: {
    unplugged: 'ok>unplugged|EBUSY>online',
    online: 'ok>online',
    online_kernel: 'EBUSY>online',
    online_movable: 'EBUSY>online',
    offline: 'EINVAL>online',
    bogus: 'EINVAL>online',
  },
  online_kernel: {
    unplugged: 'ok>unplugged|EBUSY>online_kernel',
    online: 'EBUSY>online_kernel',
    online_kernel: 'ok>online_kernel',
    online_movable: 'EBUSY>online_kernel',
    offline: 'EINVAL>online_kernel',
    bogus: 'EINVAL>online_kernel',
  },
  online_movable: {
    unplugged: 'ok>unplugged',
    online: 'EBUSY>online_movable',
    online_kernel: 'EBUSY>online_movable',
    online_movable: 'ok>online_movable',
    offline: 'EINVAL>online_movable',
    bogus: 'EINVAL>online_movable',
  },
};

test('merged: every starting state x every written value', (t) => {
  for (const start of STARTS) {
    for (const word of WORDS) {
      const got = expectWrite(merged, start, word)
        .outcomes.map((o) => `${o.result}>${o.end}`)
        .join('|');
      t.is(got, MERGED[start][word] ?? 'missing', `${start} <- ${word}`);
    }
  }
});

test('v3: its own words; online_kernel rejected; offline -> online allowed', (t) => {
  const one = (start: HotplugState, word: string) =>
    expectWrite(v3, start, word)
      .outcomes.map((o) => `${o.result}>${o.end}`)
      .join('|');
  t.is(one('online_movable', 'unplug'), 'ok>unplugged');
  t.is(one('online_movable', 'unplugged'), 'EINVAL>online_movable');
  t.is(one('unplugged', 'online_kernel'), 'EINVAL>unplugged');
  t.is(one('offline', 'online'), 'ok>online');
  t.is(one('online', 'online_movable'), 'EBUSY>online');
  t.is(parseWritten(v3, 'unplug'), 'unplugged');
});

test('zones for online states', (t) => {
  t.is(expectedZone('online_movable'), 'Movable');
  t.is(expectedZone('online_kernel'), 'Normal');
  t.is(expectedZone('offline'), undefined);
});
