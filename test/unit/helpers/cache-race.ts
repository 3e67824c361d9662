// One side of a cache race (test/unit/cache.test.ts): runs an operation on a fresh cache
// `trials` times, each trial started together with the other side through barrier files, and
// prints one JSON line per trial. Usage: cache-race.ts extract|keys <work> <trials> <side>;
// `cache-race.ts hold <entry>` takes the entry's lock, prints "held" and waits to be killed.
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { extractDebs } from '../../../harness/util/apt.js';
import { lockEntry } from '../../../harness/util/cache-lock.js';
import { errorMessage } from '../../../harness/util/errors.js';
import { ensureKeys } from '../../../harness/vm/keys.js';

const [op, work = '', trialsText = '1', side = 'a'] = process.argv.slice(2);

async function barrier(trial: number): Promise<void> {
  await writeFile(path.join(work, `ready-${trial}-${side}`), '');
  while ((await readdir(work)).filter((f) => f.startsWith(`ready-${trial}-`)).length < 2) await sleep(2);
}

if (op === 'hold') {
  await lockEntry(work, 'holding it for a test');
  process.stdout.write('held\n');
  setInterval(() => undefined, 1000);
}

let failed = false;
for (let trial = 0; op !== 'hold' && trial < Number(trialsText); trial++) {
  await barrier(trial);
  const cache = path.join(work, `t${trial}`);
  try {
    if (op === 'extract') {
      await extractDebs([path.join(work, 'pkg.deb')], path.join(cache, 'root'));
      // Counted as soon as extractDebs returns: what this process would go on to use.
      const files = (await readdir(path.join(cache, 'root/usr/share/race'), { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).length;
      process.stdout.write(`${JSON.stringify({ trial, files, stamped: existsSync(path.join(cache, 'root/.extracted')) })}\n`);
    } else {
      const keys = await ensureKeys(cache, path.join(work, 'guest'));
      process.stdout.write(`${JSON.stringify({ trial, host: keys.hostPublicKey, client: keys.clientPublicKey })}\n`);
    }
  } catch (error) {
    failed = true;
    process.stdout.write(`${JSON.stringify({ trial, error: errorMessage(error) })}\n`);
  }
}
process.exitCode = failed ? 1 : 0;
