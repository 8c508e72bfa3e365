// A small JSON Schema (2020-12) validator for the subset payload.schema.json uses. It refuses any
// keyword it does not know, so the schema cannot grow a constraint that tests silently skip.
import { readFileSync } from 'node:fs';

type Schema = Record<string, unknown>;

const ANNOTATIONS = new Set(['$schema', '$id', 'title', 'description', '$defs']);
const KEYWORDS = new Set([
  '$ref', 'type', 'enum', 'const', 'pattern', 'format', 'minLength', 'maxLength', 'minimum', 'maximum',
  'required', 'properties', 'additionalProperties', 'allOf', 'if', 'then', 'else', 'not', 'items', 'maxItems', 'minItems',
]);
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

// The callback payload schema as shipped in src/callback.
export const PAYLOAD_SCHEMA = JSON.parse(readFileSync(new URL('../../../src/callback/payload.schema.json', import.meta.url), 'utf8')) as Schema;

// Every violation of `schema` by `value`, as `path: problem` lines; empty when valid.
export function validate(schema: Schema, value: unknown, root: Schema = schema, path = '$'): string[] {
  const problems: string[] = [];
  for (const [keyword, rule] of Object.entries(schema)) {
    if (ANNOTATIONS.has(keyword) || keyword === 'then' || keyword === 'else') continue;
    if (!KEYWORDS.has(keyword)) throw new Error(`json-schema.ts does not implement "${keyword}" (at ${path})`);
    problems.push(...check(keyword, rule, schema, value, root, path));
  }
  return problems;
}

function check(keyword: string, rule: unknown, schema: Schema, value: unknown, root: Schema, path: string): string[] {
  switch (keyword) {
    case '$ref':
      return validate(resolve(root, rule as string), value, root, path);
    case 'type': {
      const types = Array.isArray(rule) ? (rule as string[]) : [rule as string];
      return types.some((type) => isType(type, value)) ? [] : [`${path}: expected ${types.join('|')}, got ${JSON.stringify(value)}`];
    }
    case 'enum':
      return (rule as unknown[]).some((option) => option === value) ? [] : [`${path}: ${JSON.stringify(value)} not in ${JSON.stringify(rule)}`];
    case 'const':
      return rule === value ? [] : [`${path}: expected ${JSON.stringify(rule)}, got ${JSON.stringify(value)}`];
    case 'pattern':
      return typeof value !== 'string' || new RegExp(rule as string, 'u').test(value) ? [] : [`${path}: ${JSON.stringify(value)} does not match ${String(rule)}`];
    case 'format':
      if (rule !== 'date-time') throw new Error(`format ${String(rule)} not implemented`);
      return typeof value !== 'string' || (DATE_TIME.test(value) && !Number.isNaN(Date.parse(value))) ? [] : [`${path}: not a date-time`];
    case 'minLength':
      return typeof value !== 'string' || [...value].length >= (rule as number) ? [] : [`${path}: shorter than ${String(rule)}`];
    case 'maxLength':
      return typeof value !== 'string' || [...value].length <= (rule as number) ? [] : [`${path}: longer than ${String(rule)}`];
    case 'minimum':
      return typeof value !== 'number' || value >= (rule as number) ? [] : [`${path}: below ${String(rule)}`];
    case 'maximum':
      return typeof value !== 'number' || value <= (rule as number) ? [] : [`${path}: above ${String(rule)}`];
    case 'required':
      return isObject(value) ? (rule as string[]).filter((name) => !(name in value)).map((name) => `${path}: missing ${name}`) : [];
    case 'properties':
      if (!isObject(value)) return [];
      return Object.entries(rule as Record<string, Schema>).flatMap(([name, sub]) => (name in value ? validate(sub, value[name], root, `${path}.${name}`) : []));
    case 'additionalProperties': {
      if (!isObject(value)) return [];
      const known = Object.keys(schema.properties ?? {});
      const extra = Object.keys(value).filter((name) => !known.includes(name));
      if (rule === false) return extra.map((name) => `${path}: unexpected property ${name}`);
      return extra.flatMap((name) => validate(rule as Schema, value[name], root, `${path}.${name}`));
    }
    case 'items':
      return Array.isArray(value) ? value.flatMap((item, index) => validate(rule as Schema, item, root, `${path}[${index}]`)) : [];
    case 'minItems':
      return !Array.isArray(value) || value.length >= (rule as number) ? [] : [`${path}: fewer than ${String(rule)} items`];
    case 'allOf':
      return (rule as Schema[]).flatMap((sub) => validate(sub, value, root, path));
    case 'if': {
      const branch = validate(rule as Schema, value, root, path).length === 0 ? schema.then : schema.else;
      return branch === undefined ? [] : validate(branch as Schema, value, root, path);
    }
    case 'items':
      return Array.isArray(value) ? value.flatMap((item, index) => validate(rule as Schema, item, root, `${path}[${index}]`)) : [];
    case 'maxItems':
      return !Array.isArray(value) || value.length <= (rule as number) ? [] : [`${path}: more than ${String(rule)} items`];
    case 'not':
      return validate(rule as Schema, value, root, path).length === 0 ? [`${path}: must not match ${JSON.stringify(rule)}`] : [];
    default:
      throw new Error(`unreachable keyword ${keyword}`);
  }
}

function resolve(root: Schema, ref: string): Schema {
  if (!ref.startsWith('#/')) throw new Error(`only local $ref is implemented, not ${ref}`);
  return ref
    .slice(2)
    .split('/')
    .reduce<unknown>((node, part) => (node as Schema)[part], root) as Schema;
}

function isType(type: string, value: unknown): boolean {
  switch (type) {
    case 'null':
      return value === null;
    case 'integer':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'array':
      return Array.isArray(value);
    case 'object':
      return isObject(value);
    default:
      return typeof value === type;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
