// DB_TYPE=mysql: mysqldump with a consistent InnoDB snapshot; mariadb.ts reuses this with its own tools.
// Restored with the mysql/mariadb client; verification restores into a throw-away mariadbd or mysqld.
import { basename, join } from 'node:path';
import { execa } from 'execa';
import { VerifyUnavailableError } from '../errors.ts';
import { base, launch, need, readyOrKilled, run, stopProcess, tail, type Scratch, type ScratchSetup } from '../scratch.ts';
import { lines, wholeNumber } from './answers.ts';
import { parseCounts, quoteIdentifier, quoteLiteral, requireTool } from './counts.ts';
import { edgeCheck } from './marks.ts';
import type { DbConfig, DumpCommand, DumpEngine, PreflightContext, PreflightProblem, Probe, Restorer } from './types.ts';
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

// The client reading SQL on stdin (a restore) or running `extra`'s statement (a count).
function clientCommand(db: DbConfig, secretsDir: string, tool: string, mariadbClient: boolean, extra: readonly string[]): DumpCommand {
  const defaults = join(secretsDir, 'my.cnf');
  const local = db.host?.startsWith('/') === true;
  const args = [
    // Must be the first option, or the tool ignores it.
    `--defaults-extra-file=${defaults}`,
    ...(db.host && !local ? [`--host=${db.host}`, '--protocol=TCP'] : []),
    ...(local ? [`--socket=${db.host}`] : []),
    ...(db.port && db.host && !local ? [`--port=${db.port}`] : []),
    ...(db.username ? [`--user=${db.username}`] : []),
    ...tlsArgs(db, mariadbClient || tool.includes('mariadb')),
    '--default-character-set=utf8mb4',
    ...extra,
  ];
  return { file: tool, args, env: {}, files: [{ path: defaults, content: optionFile(db) }] };
}

// One statement in batch mode: no headers, values unescaped.
function clientQuery(db: DbConfig, secretsDir: string, tool: string, mariadbClient: boolean, sql: string): DumpCommand {
  return clientCommand(db, secretsDir, tool, mariadbClient, ['--batch', '--skip-column-names', '--raw', '-e', sql]);
}

// The restorer for one flavour: the client reads the SQL dump on stdin. Counts are exact row counts
// (COUNT(*)) of every base table, read in one consistent snapshot.
function mysqlFamilyRestorer(clients: readonly string[], mariadbClient: boolean): Restorer {
  return {
    formats: ['sql'],
    tools: () => clients,

    command(db, { secretsDir, tool }) {
      // --binary-mode: the dump's binary strings (and \0) go in as written. A dump of every database
      // names its databases itself; a dump of one goes into DB_NAME, which must exist.
      return clientCommand(db, secretsDir, tool, mariadbClient, ['--binary-mode', ...db.extraArgs, ...(db.allDatabases ? [] : ['--', db.name ?? ''])]);
    },

    async count(db, context) {
      const tool = requireTool(clients, context.path, 'count the rows of a mysql/mariadb database');
      const where = db.allDatabases
        ? `table_schema NOT IN (${[...SYSTEM_DATABASES].map((schema) => quoteLiteral(schema)).join(', ')})`
        : `table_schema = ${quoteLiteral(db.name ?? '', true)}`;
      const listed = await context.query(clientQuery(db, context.secretsDir, tool, mariadbClient,
        `SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND ${where} ORDER BY 1, 2`));
      const tables = listed.split('\n').filter((line) => line !== '').map((line) => line.split('\t') as [string, string]);
      if (tables.length === 0) return {};
      const name = ([schema, table]: [string, string]) => (db.allDatabases ? `${schema}.${table}` : table);
      const pairs = tables.map((table) => `${quoteLiteral(name(table), true)}, (SELECT COUNT(*) FROM ${quoteIdentifier(table[0], '`')}.${quoteIdentifier(table[1], '`')})`);
      // One snapshot for every count: they describe one moment of the database.
      const sql = `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY; SELECT JSON_OBJECT(${pairs.join(', ')}); COMMIT;`;
      return parseCounts(await context.query(clientQuery(db, context.secretsDir, tool, mariadbClient, sql)), 'table');
    },
  };
}

// What sets the two flavours apart: the binaries each one's image ships, best first.
type MysqlFlavour = { tools: readonly string[]; clients: readonly string[]; servers: readonly string[]; mariadbClient: boolean };

// Builds the engine for one flavour: its dump tools, restore clients and servers.
export function mysqlFamily({ tools, clients, servers, mariadbClient }: MysqlFlavour): DumpEngine {
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
    restorer: mysqlFamilyRestorer(clients, mariadbClient),
    scratch: { binaries: servers, start: startScratchServer },
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

export const mysql = mysqlFamily({ tools: ['mysqldump'], clients: ['mysql'], servers: ['mysqld', 'mariadbd'], mariadbClient: false });

// A throw-away mariadbd (or mysqld) on a unix socket in `dir`, root without a password, with the database DB_NAME names.
async function startScratchServer(source: DbConfig, { server, dir, who, options, logFile, remove }: ScratchSetup): Promise<Scratch> {
  const install = need(['mariadb-install-db', 'mysql_install_db'], options.path);
  const client = need(['mariadb', 'mysql'], options.path);
  const data = join(dir, 'data');
  const socket = join(dir, 'mysqld.sock');
  // Small and fast: nothing of this server must survive a crash.
  const tuning = ['--innodb-buffer-pool-size=64M', '--innodb-log-file-size=48M', '--innodb-doublewrite=0', '--innodb-flush-log-at-trx-commit=0', '--innodb-use-native-aio=0', '--character-set-server=utf8mb4'];
  await run(install, ['--no-defaults', `--datadir=${data}`, '--auth-root-authentication-method=normal', '--skip-test-db', '--skip-name-resolve', `--tmpdir=${dir}`, ...tuning], who, dir, 'mariadb-install-db');
  const proc = launch(server, ['--no-defaults', `--datadir=${data}`, '--skip-networking', `--socket=${socket}`, `--pid-file=${join(dir, 'mysqld.pid')}`, `--tmpdir=${dir}`, '--skip-name-resolve', ...tuning], who, dir, logFile);
  const sql = (statement: string) => execa(client, ['--no-defaults', `--socket=${socket}`, '--user=root', '--batch', '-e', statement], { reject: false, env: { PATH: options.path }, extendEnv: false, timeout: 10_000 });
  await readyOrKilled('the throw-away mariadbd', proc, logFile, async () => (await sql('SELECT 1')).exitCode === 0);
  const db: DbConfig = { ...base(source.type), host: socket, username: 'root', name: source.allDatabases ? undefined : (source.name ?? 'restored'), allDatabases: source.allDatabases };
  if (!source.allDatabases) {
    const created = await sql(`CREATE DATABASE \`${(db.name ?? '').replaceAll('`', '``')}\``);
    if (created.failed) {
      await stopProcess(proc, 'SIGTERM');
      throw new VerifyUnavailableError(`cannot verify: creating the database in the throw-away mariadbd failed: ${created.stderr}`);
    }
  }
  return {
    db, dir, start: () => Promise.resolve(), logTail: () => tail(logFile),
    stop: async () => {
      await stopProcess(proc, 'SIGTERM');
      await remove();
    },
  };
}
