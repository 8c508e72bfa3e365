// Shared by the engines' restorers: finding a tool on PATH, quoting SQL, and reading a one-line JSON
// answer of counts.
import { DumpError } from '../errors.ts';
import { which } from '../which.ts';
import type { Counts } from './types.ts';

// The first of `names` on `path`; a missing tool is an image problem, said plainly.
export function requireTool(names: readonly string[], path: string, purpose: string): string {
  const found = which(names, path);
  if (!found) throw new DumpError(`none of ${names.join(', ')} is on PATH; this image cannot ${purpose}`, { kind: 'missing-tool', stage: 'restore' });
  return found.file;
}

// A JSON object of whole numbers, as the count queries print it (one line; `{}` for no tables).
export function parseCounts(text: string, what: string): Counts {
  const line = text.trim().split('\n').at(-1) ?? '';
  let parsed: unknown;
  try {
    parsed = JSON.parse(line === '' ? '{}' : line);
  } catch {
    throw new DumpError(`could not read the ${what} counts: ${line.slice(0, 200)}`, { kind: 'failed', stage: 'restore' });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new DumpError(`the ${what} counts are not an object`, { kind: 'failed', stage: 'restore' });
  return Object.fromEntries(Object.entries(parsed).map(([name, value]) => [name, Number(value)]));
}

// Quotes an SQL identifier with the given quote character, doubling it inside.
export function quoteIdentifier(name: string, quote: '"' | '`'): string {
  return quote + name.replaceAll(quote, quote + quote) + quote;
}

// Quotes an SQL string literal; MySQL (by default) also reads backslashes as escapes.
export function quoteLiteral(text: string, backslashEscapes = false): string {
  const quoted = text.replaceAll("'", "''");
  return `'${backslashEscapes ? quoted.replaceAll('\\', '\\\\') : quoted}'`;
}
