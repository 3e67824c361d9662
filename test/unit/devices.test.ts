import test from 'ava';
import { checkCreatedRegion, memdevsBySerial, probeEnded, probeEndScript, TopologyError } from '../../harness/guest/devices.js';

// What sid's `cxl create-region` prints (shape as seen in the guest; values made up here).
const printed = (ways: number, memdevs: string[], granularity = 4096) =>
  `{\n  "region":"region2",\n  "resource":"0x390000000",\n  "size":"512.00 MiB (536.87 MB)",\n  "type":"ram",\n  "interleave_ways":${ways},\n  "interleave_granularity":${granularity},\n  "decode_state":"commit",\n  "mappings":[${memdevs
    .map((m, i) => `{"position":${i},"memdev":"${m}","decoder":"decoder${i + 5}.0"}`)
    .join(',')}]\n}\ncxl region: cmd_create_region: created 1 region\n`;

const region = { name: 'x2', devices: ['cxl-vmem0', 'cxl-vmem1'], granularity: 4096 };

test('a region made as declared is described in one line', (t) => {
  t.is(checkCreatedRegion(region, ['mem1', 'mem0'], printed(2, ['mem0', 'mem1'])), 'region2: 2 way(s) x 4096 B over mem0, mem1');
});

test('a wrong interleave is a topology error, not a test failure', (t) => {
  const error = t.throws(() => checkCreatedRegion(region, ['mem0', 'mem1'], printed(1, ['mem0'])), { instanceOf: TopologyError });
  t.is(error?.message, 'topology error: region x2: region2 interleaves 1 way(s), the topology declares 2');
  t.throws(() => checkCreatedRegion(region, ['mem0', 'mem1'], printed(2, ['mem0', 'mem1'], 256)), { message: /granularity 256, the topology declares 4096/ });
  t.throws(() => checkCreatedRegion(region, ['mem0', 'mem1'], printed(2, ['mem0', 'mem2'])), { message: /maps mem0, mem2, expected mem0, mem1/ });
});

test('no region printed (cxl-cli said something else) is a topology error naming its output', (t) => {
  t.throws(() => checkCreatedRegion(region, ['mem0', 'mem1'], 'cxl region: cmd_create_region: created 0 regions\n'), {
    instanceOf: TopologyError,
    message: /region x2: cxl create-region printed no region: cxl region: cmd_create_region: created 0 regions/,
  });
});

test('memdevs are matched to topology devices by the serial QEMU gives each', (t) => {
  const listing =
    '[{"memdev":"mem1","ram_size":268435456,"serial":1,"host":"0000:0e:00.0"},{"memdev":"mem0","ram_size":268435456,"serial":2,"host":"0000:0d:00.0"}]';
  t.deepEqual(
    [...memdevsBySerial(listing)],
    [
      [1, 'mem1'],
      [2, 'mem0'],
    ],
  );
  t.deepEqual([...memdevsBySerial('')], []);
  t.throws(() => memdevsBySerial('[{"memdev":"mem0"} oops ]'), { instanceOf: TopologyError, message: /cxl list -M printed no memdev list/ });
});

test("kmem's probe is over when the attribute is there, or, without one, when every block is as the policy leaves it", (t) => {
  const ls = 'align\ndev\ndriver\nmapping0\nsize\nsubsystem\ntarget_node\nuevent';
  // 7.3 under TCG with a slow onlining: driver and blocks there, no attribute yet.
  t.false(probeEnded(`${ls}\npolicy online_movable\nblock online\nblock offline`));
  t.true(probeEnded(`${ls}\nstate\npolicy online_movable\nblock online\nblock online`));
  t.true(probeEnded(`${ls}\nhotplug\npolicy online\nblock offline`), 'v3: the attribute is enough');
  // Baseline (no attribute): the blocks must have reached the policy's state.
  t.true(probeEnded(`${ls}\npolicy online_kernel\nblock online\nblock online`));
  t.false(probeEnded(`${ls}\npolicy online\nblock online\nblock absent`));
  t.true(probeEnded(`${ls}\npolicy offline\nblock offline`));
  t.false(probeEnded(`${ls}\npolicy offline`), 'no block read: not over');
  t.regex(probeEndScript({ name: 'dax0.0', blocks: [34, 35] }), /^ls \/sys\/bus\/dax\/devices\/dax0\.0\/; .*memory34\/state.*memory35\/state/);
});
