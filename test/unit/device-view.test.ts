import { spawnSync } from 'node:child_process';
import test from 'ava';
import type { DaxDevice } from '../../harness/guest/devices.js';
import type { Guest } from '../../harness/guest/guest.js';
import { viewDevice, viewScript } from '../../harness/suite-kit/device-view.js';

const DEVICE: DaxDevice = {
  name: 'dax1.0',
  backing: 'pmem',
  source: 'nvdimm0',
  driver: 'kmem',
  ranges: [{ start: '0x240000000', end: '0x27fffffff' }],
  sizeBytes: 1 << 30,
  targetNode: 1,
  blocks: [72, 73],
};

/** What the guest printed for viewScript, section by section (the attribute line as given). */
function guestOutput(attributeLine: string): string {
  const sep = '@@dax-harness@@\n';
  const iomem = '240000000-27fffffff : dax1.0\n  240000000-27fffffff : System RAM (kmem)\n';
  return ['kmem\n', `${attributeLine}\n`, '72|online|Movable\n73|online|Movable\n', iomem, 'Node 1 MemTotal:       1048576 kB\n', '0\n'].join(sep);
}

const fakeGuest = (out: string) => ({ run: async () => out }) as unknown as Guest;

test('device view: the attribute, its newline, blocks, iomem, node memory and taint from one output', async (t) => {
  const view = await viewDevice(fakeGuest(guestOutput('online_movable')), DEVICE, 'state');
  t.is(view.attribute, 'online_movable');
  t.true(view.attributeNewline);
  t.deepEqual(view.blocks[72], { state: 'online', validZones: 'Movable' });
  t.deepEqual(view.kmemRanges, [{ start: '0x240000000', end: '0x27fffffff' }]);
  t.is(view.reservedRanges, 1);
  t.is(view.nodeMemTotalKb, 1048576);
  t.is(view.taint, 0);
});

test('device view: a value without its newline is read and flagged; an absent attribute is neither', async (t) => {
  const bare = await viewDevice(fakeGuest(guestOutput('online_movable@@no-newline@@')), DEVICE, 'state');
  t.is(bare.attribute, 'online_movable');
  t.false(bare.attributeNewline);
  const absent = await viewDevice(fakeGuest(guestOutput('<absent>')), DEVICE, 'state');
  t.is(absent.attribute, undefined);
  t.is(absent.attributeNewline, undefined);
});

test("device view script: the attribute's line tells a missing newline apart, in the guest's shell", (t) => {
  // The attribute part of the script, run by a local sh on files standing in for sysfs.
  const line = viewScript(DEVICE, 'state').split('; echo @@dax-harness@@; ')[1]?.replaceAll('/sys/bus/dax/devices/dax1.0', '$D');
  const run = (content?: string) => {
    const dir = spawnSync('mktemp', ['-d']).stdout.toString().trim();
    const setup = content === undefined ? '' : `printf '${content}' > ${dir}/state; `;
    const out = spawnSync('sh', ['-c', `${setup}D=${dir}; ${line}`]).stdout.toString();
    spawnSync('rm', ['-rf', dir]);
    return out;
  };
  t.is(run('online\\n'), 'online\n');
  t.is(run('online'), 'online@@no-newline@@\n');
  t.is(run(), '<absent>\n');
});
