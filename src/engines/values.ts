// Checks the DB_* values that reach a tool's argv or option file, before any tool runs: a value that
// starts with `-` becomes an option, `=` or `://` in a host makes it a connection string, and a
// newline or NUL ends an option-file line (or the argument) early. The password reaches each tool
// through its own credential channel, which the engine encodes (an escaped option-file value, an
// environment variable); here only a NUL, which no channel carries, is refused for it. Messages name
// the variable and never quote its value (some are secrets).
import type { DbConfig } from './types.ts';

// Every value a command is built from, by the variable it came from.
function values(db: DbConfig): [variable: string, value: string | undefined][] {
  return [
    ['DB_HOST', db.host],
    ['DB_NAME', db.name],
    ['DB_USERNAME', db.username],
    ['DB_TLS_CA_FILE', db.tlsCaFile],
    ...db.extraArgs.map((arg, index): [string, string] => [`DB_EXTRA_ARGS (item ${index + 1})`, arg]),
  ];
}

// Values that are arguments in their own right (not options), which a leading `-` would turn into one.
const POSITIONAL = new Set(['DB_HOST', 'DB_NAME', 'DB_USERNAME', 'DB_TLS_CA_FILE']);

// The problems with the values of `db` (empty when every value is safe to pass on).
export function unsafeValues(db: DbConfig): string[] {
  const problems: string[] = [];
  if (db.password?.includes('\0')) problems.push('DB_PASSWORD holds a NUL character, which no tool can be given');
  for (const [variable, value] of values(db)) {
    if (value === undefined) continue;
    if (/[\n\r\0]/.test(value)) problems.push(`${variable} contains a newline, carriage return or NUL, which cannot be passed to the dump tool safely`);
    if (POSITIONAL.has(variable) && value.startsWith('-')) problems.push(`${variable} starts with "-": the dump tool would read it as an option`);
  }
  if (db.host !== undefined) {
    if (db.host.includes('=')) problems.push('DB_HOST contains "=": the client would read it as connection settings, not a host name');
    if (db.host.includes('://')) problems.push('DB_HOST is a URI: give the host name only (DB_PORT, DB_USERNAME, … hold the rest)');
    if (/\s/.test(db.host)) problems.push('DB_HOST contains white space');
  }
  return problems;
}

// True when any item of DB_EXTRA_ARGS is one of `options` (alone or as `--option=value`).
export function hasOption(extraArgs: readonly string[], options: readonly string[]): string | undefined {
  return extraArgs.find((arg) => options.some((option) => arg === option || arg.startsWith(`${option}=`)));
}
