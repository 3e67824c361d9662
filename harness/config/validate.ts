/**
 * The one checker of the declarative inputs (topologies, matrix files, known issues, suite
 * manifests): each has a JSON Schema in harness/config/schema/, checked with ajv, and one
 * problem becomes one line that names the file and the field: `<where>: <field> must be ...`.
 *
 * A schema says in words what a value must be with the annotation `mustBe` (this project's
 * keyword, ignored by other validators): ajv's own messages ("must be integer") name the JSON
 * type, not what the harness wants ("a positive integer"). Checks across fields (names used
 * twice, a region naming a device that does not exist) stay with the loader that owns them.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { AnySchemaObject, ErrorObject, ValidateFunction } from 'ajv';
import type { Ajv2020 } from 'ajv/dist/2020.js';
import { UsageError } from '../util/errors.js';
import { projectRoot } from '../util/paths.js';

export const CONFIG_SCHEMA_DIR = path.join(projectRoot, 'harness/config/schema');

export type ConfigSchema = 'topology' | 'matrix' | 'known-issues' | 'suite';

let ajv: Ajv2020 | undefined;
const compiled = new Map<ConfigSchema, ValidateFunction>();

function validatorFor(name: ConfigSchema): ValidateFunction {
  let validate = compiled.get(name);
  if (!validate) {
    // Loaded on first use: a test worker imports this module (through config/suites.ts) but
    // checks nothing, and ajv's load is about a quarter of a second of its start.
    const { Ajv2020: Ajv } = createRequire(import.meta.url)('ajv/dist/2020.js') as typeof import('ajv/dist/2020.js');
    ajv ??= new Ajv({ allErrors: true, strict: true, allowUnionTypes: true, verbose: true, useDefaults: true }).addVocabulary(['mustBe']);
    const schema = JSON.parse(readFileSync(path.join(CONFIG_SCHEMA_DIR, `${name}.schema.json`), 'utf8')) as AnySchemaObject;
    validate = ajv.getSchema(schema.$id as string) ?? ajv.compile(schema);
    compiled.set(name, validate);
  }
  return validate;
}

/**
 * Checks `raw` against the named schema (filling in the schema's defaults, in place) and
 * returns it typed; throws a UsageError `<where>: <problem>` at the first problem.
 */
export function checkConfig<T>(name: ConfigSchema, raw: unknown, where: string): T {
  const validate = validatorFor(name);
  if (validate(raw)) return raw as T;
  throw new UsageError(`${where}: ${describeError(validate.errors ?? [])}`);
}

/** `/kernels/0/modulesOnly` → `kernels[0].modulesOnly`; the root is "" (the file itself). */
export function fieldName(instancePath: string): string {
  return instancePath
    .split('/')
    .slice(1)
    .map((part) => part.replaceAll('~1', '/').replaceAll('~0', '~'))
    .reduce((field, part) => (/^\d+$/.test(part) ? `${field}[${part}]` : field ? `${field}.${part}` : part), '');
}

/** A short picture of the value found, for the message. */
function shown(value: unknown): string {
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : 'a list';
  if (value === null) return 'null';
  if (typeof value === 'object') return 'an object';
  const text = JSON.stringify(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * The problem to report, in words. An unknown key comes first (a misspelt key explains the
 * "missing" one); then the first other error. Errors inside an anyOf's branches mean nothing
 * alone (the anyOf's own error stands for them), and an `if` error only repeats its `then`'s.
 */
function describeError(errors: ErrorObject[]): string {
  const meaningful = errors.filter((e) => e.keyword !== 'if' && !/\/(anyOf|oneOf)\/\d+\//.test(e.schemaPath));
  const error = meaningful.find((e) => e.keyword === 'additionalProperties') ?? meaningful[0];
  if (!error) return 'is not valid';
  const field = fieldName(error.instancePath);
  const lead = field ? `${field}: ` : '';
  if (error.keyword === 'required') {
    const missing = (error.params as { missingProperty: string }).missingProperty;
    return field ? `${field}.${missing} is missing` : `${missing} is missing`;
  }
  if (error.keyword === 'additionalProperties') {
    const key = (error.params as { additionalProperty: string }).additionalProperty;
    const known = Object.keys((error.parentSchema?.properties as object | undefined) ?? {}).filter((k) => !k.startsWith('$'));
    return `${lead}unknown key "${key}"${known.length > 0 ? ` (known: ${known.join(', ')})` : ''}`;
  }
  if (error.keyword === 'propertyNames') {
    const key = (error.params as { propertyName: string }).propertyName;
    const mustBe = error.parentSchema?.propertyNames?.mustBe as string | undefined;
    return `${lead}unknown key "${key}"${mustBe ? ` (${mustBe})` : ''}`;
  }
  const mustBe = (error.parentSchema?.mustBe as string | undefined) ?? error.message ?? 'valid';
  return `${field ? `${field} ` : ''}must be ${mustBe.replace(/^must be /, '')} (found ${shown(error.data)})`;
}
