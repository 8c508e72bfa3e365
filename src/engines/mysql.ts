// DB_TYPE=mysql: mysqldump with a consistent InnoDB snapshot; mariadb.ts reuses this with its own tools.
import { basename, join } from 'node:path';
import { lines, wholeNumber } from './answers.ts';
import { edgeCheck } from './marks.ts';
import type { DbConfig, DumpEngine, PreflightContext, PreflightProblem, Probe } from './types.ts';
import { hasOption, unsafeValues } from './values.ts';

// The tool's last comment on a complete dump (`-- Dump completed on <date>`, or without the date).
const TRAILER = '-- Dump completed';
// Room for the trailer, its date and the line ends after it.
const TAIL_BYTES = 256;
// DB_EXTRA_ARGS that remove the trailer (no comments) or write it after errors (--force): with them
// a cut-off dump cannot be told from a complete one, so they are refused.
const REFUSED_OPTIONS = ['--skip-comments', '--compact', '--force', '-f'];
// The client that asks the server about privileges, best first (MariaDB ≥ 11 deprecates `mysql`).
const CLIENTS = ['mariadb', 'mysql'];
// What the user may do, globally and per database, as the server reports it for the current account.
const PRIVILEGES_QUERY = [
  "SELECT PRIVILEGE_TYPE, '*' FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = @me",
  'UNION ALL SELECT PRIVILEGE_TYPE, TABLE_SCHEMA FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = @me',
  "UNION ALL SELECT PRIVILEGE_TYPE, CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE = @me",
].join(' ');
const WHO_AM_I = "SET @me = CONCAT(\"'\", SUBSTRING_INDEX(CURRENT_USER(), '@', 1), \"'@'\", SUBSTRING_INDEX(CURRENT_USER(), '@', -1), \"'\")";

// The escapes an option file reads inside a double-quoted value: a line break must not end the value
// (and start a new option line), a quote must not end it early.
const OPTION_ESCAPES: Record<string, string> = { '\\': '\\\\', '"': '\\"', "'": "\\'", '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b' };

// Databases of the server itself, never user data: DB_NAMES=* leaves them out.
const SYSTEM_DATABASES = new Set(['information_schema', 'mysql', 'performance_schema', 'sys']);

// Option files take double-quoted values with backslash escapes.
export function optionFile(db: DbConfig): string {
  const password = (db.password ?? '').replace(/[\\"'\n\r\t\b]/g, (c) => OPTION_ESCAPES[c] ?? c);
  return `[client]\npassword="${password}"\n`;
}

// MariaDB's client tools spell TLS options differently from Oracle MySQL's.
export function tlsArgs(db: DbConfig, mariadbClient: boolean): string[] {
  const ca = db.tlsCaFile ? [`--ssl-ca=${db.tlsCaFile}`] : [];
  if (!db.tls) return ca;
  if (mariadbClient) {
    const modes = {
      disable: ['--skip-ssl'],
      prefer: [],
      require: ['--ssl', '--skip-ssl-verify-server-cert'],
      'verify-ca': ['--ssl', '--ssl-verify-server-cert'],
      'verify-full': ['--ssl', '--ssl-verify-server-cert'],
    } as const;
    return [...modes[db.tls], ...ca];
  }
  const modes = { disable: 'DISABLED', prefer: 'PREFERRED', require: 'REQUIRED', 'verify-ca': 'VERIFY_CA', 'verify-full': 'VERIFY_IDENTITY' } as const;
  return [`--ssl-mode=${modes[db.tls]}`, ...ca];
}

// Builds the engine for one flavour; `tools` is what that flavour's image ships, best first.
export function mysqlFamily(tools: readonly string[], mariadbClient: boolean): DumpEngine {
  // One query through the command-line client, in batch mode: no headers, values unescaped.
  const query = <T>(db: DbConfig, what: string, sql: string, parse: (stdout: string) => T): Probe<T> => ({
    what,
    tools: CLIENTS,
    command({ secretsDir, tool }) {
      const defaults = join(secretsDir, 'my.cnf');
      const args = [
        ...connectionArgs(db, defaults, mariadbClient || basename(tool).startsWith('mariadb')),
        '--batch',
        '--skip-column-names',
        '--raw',
        ...(db.name ? [`--database=${db.name}`] : []),
        `--execute=${sql}`,
      ];
      return { file: tool, args, env: {}, files: [{ path: defaults, content: optionFile(db) }] };
    },
    parse,
  });
  return {
    tools: () => tools,
    restoreTool: mariadbClient ? 'mariadb' : 'mysql',
    defaultPort: 3306,
    extension: () => '.sql',

    validate(db) {
      const problems: string[] = [];
      if (!db.allDatabases && !db.name) problems.push('DB_NAME is required for mysql/mariadb (or set DB_ALL_DATABASES=true)');
      if (db.allDatabases && db.name) problems.push('DB_NAME and DB_ALL_DATABASES=true exclude each other');
      const refused = hasOption(db.extraArgs, REFUSED_OPTIONS);
      if (refused) problems.push(`DB_EXTRA_ARGS: ${refused} is refused: without the dump's "${TRAILER}" trailer (or with it written after errors) a cut-off dump cannot be told from a complete one`);
      return [...unsafeValues(db), ...problems];
    },

    command(db, { secretsDir, tool }) {
      const defaults = join(secretsDir, 'my.cnf');
      const args = [
        ...connectionArgs(db, defaults, mariadbClient || basename(tool).startsWith('mariadb')),
        '--single-transaction',
        '--quick',
        '--routines',
        '--triggers',
        '--events',
        '--hex-blob',
        '--default-character-set=utf8mb4',
        ...db.extraArgs,
        ...(db.allDatabases ? ['--all-databases'] : ['--', db.name ?? '']),
      ];
      return { file: tool, args, env: {}, files: [{ path: defaults, content: optionFile(db) }] };
    },

    classify: mysqlFamilyClassify,

    completeness: () =>
      edgeCheck({
        scope: 'stream',
        head: 0,
        tail: TAIL_BYTES,
        judge: (_head, tail) => (tail.includes(TRAILER) ? undefined : `the dump lacks its final "${TRAILER}" comment: the tool stopped before the end`),
      }),

    preflight: (db, context) => privilegesPreflight(db, context, mariadbClient),

    // SHOW DATABASES lists only the databases this user has a privilege on.
    discover: (db) =>
      query({ ...db, name: undefined }, 'SHOW DATABASES', 'SHOW DATABASES', (stdout) => lines(stdout).filter((name) => !SYSTEM_DATABASES.has(name.toLowerCase()))),

    // Data and indexes as InnoDB counts them (an estimate for InnoDB; a text dump is usually close).
    size: (db) =>
      query(db, 'information_schema data_length + index_length', `SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables WHERE ${db.allDatabases ? `table_schema NOT IN (${[...SYSTEM_DATABASES].map((name) => `'${name}'`).join(', ')})` : 'table_schema = DATABASE()'}`, (stdout) => wholeNumber(lines(stdout)[0])),
  };
}

// Connection options shared by the dump and the preflight client: the option file with the password
// first (the tools ignore it anywhere else), then where to connect. `--protocol=TCP` whenever a host
// is given: the clients otherwise take `localhost` to mean the local socket, another server.
function connectionArgs(db: DbConfig, defaults: string, mariadbClient: boolean): string[] {
  return [
    `--defaults-extra-file=${defaults}`,
    ...(db.host ? [`--host=${db.host}`, '--protocol=TCP'] : []),
    ...(db.port && db.host ? [`--port=${db.port}`] : []),
    ...(db.username ? [`--user=${db.username}`] : []),
    ...tlsArgs(db, mariadbClient),
  ];
}

// What each object kind the dump asks for needs: any one of these privileges, each on `*` (every
// database), on a named schema or table, or on the database dumped ('dumped'). Routine bodies: MariaDB
// reads them from mysql.proc, MariaDB ≥ 11.3 also grants SHOW CREATE ROUTINE, MySQL ≥ 8.0.20 SHOW_ROUTINE.
const NEEDS = [
  {
    flag: 'routines',
    anyOf: [['SELECT', '*'], ['SELECT', 'mysql'], ['SELECT', 'mysql.proc'], ['SHOW CREATE ROUTINE', 'dumped'], ['SHOW_ROUTINE', '*']],
    privilege: 'SELECT on mysql.proc (MariaDB), SHOW CREATE ROUTINE (MariaDB ≥ 11.3) or SHOW_ROUTINE (MySQL ≥ 8.0.20)',
  },
  { flag: 'triggers', anyOf: [['TRIGGER', 'dumped']], privilege: 'TRIGGER' },
  { flag: 'events', anyOf: [['EVENT', 'dumped']], privilege: 'EVENT' },
] as const;

// Asks the server which privileges the account holds and names any the dump needs but lacks: without
// them mysqldump leaves routines and triggers out silently and still exits 0.
async function privilegesPreflight(db: DbConfig, context: PreflightContext, mariadbClient: boolean): Promise<PreflightProblem | undefined> {
  const client = context.which(CLIENTS);
  if (!client) {
    context.skipped(`no ${CLIENTS.join(' or ')} client on PATH to check the account's privileges`);
    return undefined;
  }
  const defaults = join(context.secretsDir, 'preflight.cnf');
  const answer = await context.ask({
    file: client,
    args: [...connectionArgs(db, defaults, mariadbClient || basename(client).startsWith('mariadb')), '--batch', '--skip-column-names', '-e', `${WHO_AM_I}; ${PRIVILEGES_QUERY}`],
    env: {},
    files: [{ path: defaults, content: optionFile(db) }],
  });
  if (answer.exitCode !== 0) {
    const kind = mysqlFamilyClassify(answer.stderr);
    return { kind, message: `${basename(client)} could not read the account's privileges: ${answer.stderr.trim() || `exit code ${answer.exitCode}`}` };
  }
  const held = answer.stdout.split('\n').map((line) => line.split('\t')).filter((row): row is [string, string] => row.length === 2);
  const where = db.allDatabases ? ['*'] : ['*', db.name ?? ''];
  const holds = ([privilege, scope]: readonly [string, string]) =>
    held.some(([p, on]) => p === privilege && (on === '*' || (scope === 'dumped' ? where.includes(on) : on === scope)));
  const missing = NEEDS.filter((need) => !db.extraArgs.includes(`--skip-${need.flag}`)).filter((need) => !need.anyOf.some(holds));
  if (missing.length === 0) return undefined;
  const target = db.allDatabases ? 'on *.*' : `on ${db.name ?? ''}`;
  return {
    kind: 'auth',
    message: `the account lacks ${missing.map((need) => `${need.privilege} (for --${need.flag})`).join(', ')} ${target}: the dump would silently leave those objects out. Grant it, or add ${missing.map((need) => `--skip-${need.flag}`).join(' ')} to DB_EXTRA_ARGS to dump without them`,
  };
}

// Sorts a client's stderr into unreachable / refused / other, as the dump's own failures are.
function mysqlFamilyClassify(stderr: string): 'unreachable' | 'auth' | 'invalid' | 'failed' {
  if (/Access denied|\b(1044|1045|1227)\b|authentication plugin/i.test(stderr)) return 'auth';
  if (/Unknown database|\b1049\b|unknown (option|variable)|option '.*' requires an argument|ambiguous option|Got error: 1102|Incorrect database name/i.test(stderr)) return 'invalid';
  if (/Can't connect|Unknown (MySQL|MariaDB) server host|Lost connection|\b(2002|2003|2005|2013)\b|Connection refused/i.test(stderr)) return 'unreachable';
  return 'failed';
}

export const mysql = mysqlFamily(['mysqldump'], false);
