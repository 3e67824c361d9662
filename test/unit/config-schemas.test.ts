import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { CONFIG_SCHEMA_DIR, checkConfig, fieldName } from '../../harness/config/validate.js';
import { UsageError } from '../../harness/util/errors.js';
import { projectRoot } from '../../harness/util/paths.js';

/**
 * The schemas of the declarative inputs (harness/config/schema/): each compiles under ajv's
 * strict mode (a misspelt keyword is an error, not a silently ignored rule), and every file
 * the project ships passes its schema.
 */
test('every config schema compiles in strict mode', async (t) => {
  const names = (await readdir(CONFIG_SCHEMA_DIR)).filter((f) => f.endsWith('.schema.json'));
  t.deepEqual(names.sort(), ['known-issues.schema.json', 'matrix.schema.json', 'suite.schema.json', 'topology.schema.json']);
  for (const name of names) {
    const ajv = new Ajv2020({ strict: true, allowUnionTypes: true }).addVocabulary(['mustBe']);
    const schema = JSON.parse(await readFile(path.join(CONFIG_SCHEMA_DIR, name), 'utf8')) as object;
    t.notThrows(() => ajv.compile(schema), name);
  }
});

const json = async (file: string) => JSON.parse(await readFile(path.join(projectRoot, file), 'utf8')) as unknown;

test('the shipped topologies, matrix example, known issues and suite manifests pass their schemas', async (t) => {
  for (const f of await readdir(path.join(projectRoot, 'harness/topologies'))) {
    await t.notThrowsAsync(async () => checkConfig('topology', await json(`harness/topologies/${f}`), f));
  }
  await t.notThrowsAsync(async () => checkConfig('matrix', await json('examples/matrix-nightly.json'), 'matrix'));
  await t.notThrowsAsync(async () => checkConfig('known-issues', await json('known-issues.json'), 'known issues'));
  for (const suite of await readdir(path.join(projectRoot, 'suites'))) {
    const file = `suites/${suite}/suite.json`;
    const raw = await json(file).catch(() => undefined);
    if (raw !== undefined) t.notThrows(() => checkConfig('suite', raw, file), file);
  }
});

test('a field is named by its path: keys joined with dots, list positions in brackets', (t) => {
  t.is(fieldName(''), '');
  t.is(fieldName('/jobs'), 'jobs');
  t.is(fieldName('/kernels/0/modulesOnly'), 'kernels[0].modulesOnly');
  t.is(fieldName('/env/a~1b'), 'env.a/b');
});

test('one line per problem: the file, the field, what it must be and what was found', (t) => {
  const error = t.throws(() => checkConfig('matrix', { kernels: ['7.3'], topologies: ['cxl'], suites: ['smoke'], jobs: 0 }, 'matrix m.json'), {
    instanceOf: UsageError,
  });
  t.is(error?.message, 'matrix m.json: jobs must be a positive integer (found 0)');
  const unknown = t.throws(() => checkConfig('matrix', { kernels: ['7.3'], topologies: ['cxl'], suit: ['smoke'] }, 'matrix m.json'));
  t.is(
    unknown?.message,
    'matrix m.json: unknown key "suit" (known: kernels, topologies, suites, jobs, bootArgs)',
    'a misspelt key is named before the key it leaves missing',
  );
});
