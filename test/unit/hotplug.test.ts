import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import type { ExecOptions, Guest } from '../../harness/guest/guest.js';
import { classifyVariant, errnoFromMessage, VARIANTS, writeSysfs } from '../../harness/guest/hotplug.js';

test('variant from the kmem-bound device directory listing', (t) => {
  // `ls /sys/bus/dax/devices/dax1.0/` on Debian's 7.3 (merged) and 7.2 (baseline).
  const merged = 'align dev driver mapping mapping0 memmap_on_memory modalias numa_node power resource size state subsystem target_node uevent';
  const baseline = 'align dev driver mapping mapping0 memmap_on_memory modalias numa_node power resource size subsystem target_node uevent';
  t.is(classifyVariant(merged.split(' ')), 'merged');
  t.is(classifyVariant(baseline.split(' ')), 'baseline');
  t.is(classifyVariant([...baseline.split(' '), 'hotplug']), 'v3');
});

test('variant tables: names written per operation', (t) => {
  t.is(VARIANTS.merged.writes.unplug, 'unplugged');
  t.is(VARIANTS.v3.writes.unplug, 'unplug');
  t.is(VARIANTS.v3.writes.online_kernel, undefined);
  t.deepEqual(VARIANTS.merged.onlineFrom, ['unplugged']);
  t.deepEqual(VARIANTS.v3.onlineFrom, ['unplugged', 'offline']);
  t.is(VARIANTS.baseline.attribute, undefined);
});

test('errno from the shell message of a failed sysfs write', (t) => {
  t.is(errnoFromMessage('sh: write error: Invalid argument'), 'EINVAL');
  t.is(errnoFromMessage('sh: write error: Device or resource busy'), 'EBUSY');
  t.is(errnoFromMessage('sh: write error: something new'), undefined);
});

/** A guest whose commands run in a local `sh`, recording whether each came with stdin. */
function localGuest(viaStdin: boolean[]): Guest {
  return {
    async exec(command: string, options: ExecOptions = {}) {
      viaStdin.push(options.stdin !== undefined);
      const r = spawnSync('sh', ['-c', command], { input: options.stdin ?? '' });
      return { stdout: r.stdout.toString(), stderr: r.stderr.toString(), code: r.status, timedOut: false, durationMs: 0 };
    },
  } as unknown as Guest;
}

test('writeSysfs writes the exact bytes in one write, through the shell when it can carry them', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dax-write-'));
  const file = path.join(dir, 'state');
  const viaStdin: boolean[] = [];
  const guest = localGuest(viaStdin);
  for (const bytes of ['online_movable\n', "it's $HOME `x` \\n %s", '\0bin\xff\n', 'x'.repeat(5000)]) {
    writeFileSync(file, '');
    t.deepEqual(await writeSysfs(guest, file, bytes), { result: 'ok', raw: '' });
    t.is(readFileSync(file, 'latin1'), bytes);
  }
  t.deepEqual(viaStdin, [false, false, true, true], 'printable ASCII by printf in the shell; NUL, latin1 and long input over stdin');
  const full = await writeSysfs(guest, '/dev/full', 'online\n');
  t.is(full.result, 'ENOSPC');
  t.regex(full.raw, /No space left on device/);
  t.notRegex(full.raw, /records/);
  rmSync(dir, { recursive: true });
});
