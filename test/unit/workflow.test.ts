import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { loadMatrixConfig } from '../../harness/matrix.js';
import { projectRoot } from '../../harness/paths.js';

const workflow = readFileSync(path.join(projectRoot, '.github/workflows/nightly-example.yml'), 'utf8');
const cli = path.join(projectRoot, 'bin/dax-harness.js');

/** Every `dax-harness.js SUBCOMMAND ... --option` line of the workflow. */
function harnessCommands(text: string): { command: string; options: string[]; words: string[] }[] {
  return text
    .split('\n')
    .filter((l) => /dax-harness\.js\s/.test(l))
    .map((l) => {
      const words = (l.split('dax-harness.js')[1] ?? '').trim().split(/\s+/);
      return { command: words[0] ?? '', options: words.filter((w) => w.startsWith('--')), words };
    });
}

test('the example workflow runs matrix shards and a merge', (t) => {
  const commands = harnessCommands(workflow);
  t.deepEqual(
    commands.map((c) => c.command),
    ['matrix', 'merge'],
  );
  t.regex(workflow, /shard: \['1\/2', '2\/2'\]/);
  t.regex(workflow, /--shard \$\{\{ matrix\.shard \}\}/);
  t.regex(workflow, /needs: shard/);
  t.regex(workflow, /actions\/upload-artifact/);
  t.regex(workflow, /actions\/download-artifact/);
});

test('every command and option the workflow uses exists in the CLI', async (t) => {
  for (const { command, options, words } of harnessCommands(workflow)) {
    const help = await execa(process.execPath, [cli, command, '--help'], { reject: false });
    t.is(help.exitCode, 0, `${command}: ${help.stderr}`);
    for (const option of options) t.true(help.stdout.includes(option), `${command} has no ${option}`);
    for (const w of words.filter((x) => /\.(json|sh)$/.test(x))) t.true(existsSync(path.join(projectRoot, w)), `${w} exists`);
  }
  t.true(existsSync(path.join(projectRoot, 'scripts/install-host.sh')));
});

test('the example nightly matrix is valid: 7.3 and 7.2 on every shipped topology, all suites', async (t) => {
  const { config, cells } = await loadMatrixConfig(path.join(projectRoot, 'examples/matrix-nightly.json'));
  t.deepEqual(config.suites, ['all']);
  t.deepEqual(
    cells.map((c) => c.id).sort(),
    ['7.2-cxl', '7.2-cxl-hb-interleave', '7.2-cxl-switch', '7.2-cxl-two-regions', '7.2-pmem', '7.3-cxl', '7.3-cxl-hb-interleave', '7.3-cxl-switch', '7.3-cxl-two-regions', '7.3-pmem'],
  );
});
