import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { execa } from 'execa';
import { loadMatrixConfig } from '../../harness/commands/matrix.js';
import { projectRoot } from '../../harness/util/paths.js';

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

test('the workflow has what GitHub needs to run it: a name, a nightly schedule and a manual trigger', (t) => {
  // Top-level keys only (no indentation): without `on:` GitHub never starts the workflow.
  const topLevel = workflow
    .split('\n')
    .filter((l) => /^[a-z][\w-]*:/.test(l))
    .map((l) => l.split(':')[0]);
  t.deepEqual(topLevel, ['name', 'on', 'jobs']);
  t.regex(workflow, /^on:\n {2}schedule:\n {4}- cron: '[\d*/ ,-]+'\n {2}workflow_dispatch:$/m);
});

/** The lines of one job: from `  NAME:` up to the next job at the same indentation. */
function jobText(text: string, name: string): string {
  const lines = text.split('\n');
  const start = lines.indexOf(`  ${name}:`);
  if (start < 0) return '';
  const end = lines.findIndex((l, i) => i > start && /^ {2}[a-z][\w-]*:\s*$/.test(l));
  return lines.slice(start, end < 0 ? undefined : end).join('\n');
}

test('the shard jobs run on GitHub-hosted runners in the Debian release install-host.sh is written for', (t) => {
  const shard = jobText(workflow, 'shard');
  const installer = readFileSync(path.join(projectRoot, 'scripts/install-host.sh'), 'utf8');
  t.regex(shard, /runs-on: ubuntu-latest/);
  const image = /\n {4}container:\n {6}image: debian:(\w+)\n/.exec(shard)?.[1];
  t.is(image, 'bookworm', 'a debian:bookworm container');
  t.regex(installer, new RegExp(`on a Debian ${image} host`), 'install-host.sh names the same release');
  t.regex(installer, new RegExp(`${image}-backports`));
  // /dev/kvm when the runner has one, without failing when it has none (--device would).
  t.regex(shard, /\n {6}options: --privileged\n/);
  t.notRegex(shard, /--device/);
  t.regex(shard, /run: \.\/scripts\/install-host\.sh\n/);
  t.notRegex(shard, /run: .*\bsudo\b/, 'the bookworm image has no sudo; the container runs as root');
  // github.workspace is the runner's path inside a container job: the cache is given relative.
  t.notRegex(shard, /\$\{\{\s*github\.workspace/);
  t.regex(shard, /dax-harness\.js matrix .* --cache-dir \.dax-harness-cache/);
  t.regex(shard, /path: \.dax-harness-cache/);
  t.true(shard.indexOf('install -y -qq --no-install-recommends git') < shard.indexOf('actions/checkout'), 'git before checkout');
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
  t.deepEqual(cells.map((c) => c.id).sort(), [
    '7.2-cxl',
    '7.2-cxl-hb-interleave',
    '7.2-cxl-switch',
    '7.2-cxl-two-regions',
    '7.2-pmem',
    '7.3-cxl',
    '7.3-cxl-hb-interleave',
    '7.3-cxl-switch',
    '7.3-cxl-two-regions',
    '7.3-pmem',
  ]);
});
