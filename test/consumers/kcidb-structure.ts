/**
 * KCIDB data as KernelCI's kcidb-io would take it: its v5.3 structure for what the export
 * uses, and the links between the objects (ids prefixed by their origin, every build's
 * checkout and every test's build present). Used by the unit tests and the default run.
 */
import { Ajv2020 } from 'ajv/dist/2020.js';
import type { KcidbData } from '../../harness/results/kcidb.js';

/**
 * The kcidb-io v5.3 structure (kcidb_io/schema/v05_03.py) for the properties the export uses:
 * required fields, origin-prefixed ids, test paths, statuses, no nulls, nothing unknown.
 */
const KCIDB_STRUCTURE = {
  type: 'object',
  required: ['version'],
  additionalProperties: false,
  properties: {
    version: {
      type: 'object',
      required: ['major'],
      additionalProperties: false,
      properties: { major: { const: 5 }, minor: { type: 'integer', minimum: 0, maximum: 3 } },
    },
    checkouts: { type: 'array', items: { $ref: '#/$defs/checkout' } },
    builds: { type: 'array', items: { $ref: '#/$defs/build' } },
    tests: { type: 'array', items: { $ref: '#/$defs/test' } },
  },
  $defs: {
    id: { type: 'string', pattern: '^[a-z0-9_]+:[^\\u0000]*$' },
    origin: { type: 'string', pattern: '^[a-z0-9_]+$' },
    text: { type: 'string', pattern: '^[^\\u0000]*$' },
    time: { type: 'string', pattern: '^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d' },
    status: { enum: ['FAIL', 'ERROR', 'MISS', 'PASS', 'DONE', 'SKIP'] },
    misc: { type: 'object' },
    checkout: {
      type: 'object',
      required: ['id', 'origin'],
      additionalProperties: false,
      properties: {
        id: { $ref: '#/$defs/id' },
        origin: { $ref: '#/$defs/origin' },
        tree_name: { $ref: '#/$defs/text' },
        comment: { $ref: '#/$defs/text' },
        start_time: { $ref: '#/$defs/time' },
        valid: { type: 'boolean' },
        misc: { $ref: '#/$defs/misc' },
      },
    },
    build: {
      type: 'object',
      required: ['checkout_id', 'id', 'origin'],
      additionalProperties: false,
      properties: {
        checkout_id: { $ref: '#/$defs/id' },
        id: { $ref: '#/$defs/id' },
        origin: { $ref: '#/$defs/origin' },
        architecture: { type: 'string', pattern: '^[a-z0-9_]*$' },
        config_name: { $ref: '#/$defs/text' },
        comment: { $ref: '#/$defs/text' },
        start_time: { $ref: '#/$defs/time' },
        status: { $ref: '#/$defs/status' },
        misc: { $ref: '#/$defs/misc' },
      },
    },
    test: {
      type: 'object',
      required: ['build_id', 'id', 'origin'],
      additionalProperties: false,
      properties: {
        build_id: { $ref: '#/$defs/id' },
        id: { $ref: '#/$defs/id' },
        origin: { $ref: '#/$defs/origin' },
        path: { type: 'string', pattern: '^([a-zA-Z0-9_-]+(\\.[a-zA-Z0-9_-]+)*)?$' },
        comment: { $ref: '#/$defs/text' },
        status: { $ref: '#/$defs/status' },
        start_time: { $ref: '#/$defs/time' },
        duration: { type: 'number' },
        log_excerpt: { type: 'string', maxLength: 16384, pattern: '^[^\\u0000]*$' },
        environment: { type: 'object', additionalProperties: false, properties: { comment: { $ref: '#/$defs/text' }, misc: { $ref: '#/$defs/misc' } } },
        misc: { $ref: '#/$defs/misc' },
      },
    },
  },
};

export function kcidbProblems(data: KcidbData): string[] {
  const validate = new Ajv2020({ allErrors: true }).compile(KCIDB_STRUCTURE);
  const problems = validate(data) ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
  const ids = (objects: { id: string; origin: string }[]) => {
    for (const o of objects) if (!o.id.startsWith(`${o.origin}:`)) problems.push(`${o.id} is not prefixed by its origin ${o.origin}`);
    if (new Set(objects.map((o) => o.id)).size !== objects.length) problems.push('duplicate ids');
    return new Set(objects.map((o) => o.id));
  };
  const checkouts = ids(data.checkouts);
  const builds = ids(data.builds);
  ids(data.tests);
  for (const b of data.builds) if (!checkouts.has(b.checkout_id)) problems.push(`build ${b.id}: no checkout ${b.checkout_id}`);
  for (const x of data.tests) if (!builds.has(x.build_id)) problems.push(`test ${x.id}: no build ${x.build_id}`);
  if (JSON.stringify(data).includes('null')) problems.push('a null value');
  return problems;
}
