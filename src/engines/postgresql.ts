// DB_TYPE=postgresql (alias postgres): pg_dump in custom format, or pg_dumpall for every database.
// Restored with pg_restore or psql; verification restores into a throw-away cluster (initdb, then postgres on a unix socket).
import { readFile, realpath } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { VerifyUnavailableError } from '../errors.ts';
import { base, launch, need, readyOrKilled, run, stopProcess, tail, type Scratch, type ScratchSetup } from '../scratch.ts';
import { edgeCheck, printable, type CompletenessCheck } from './marks.ts';
import { wholeNumber } from './answers.ts';
import { parseCounts, requireTool } from './counts.ts';
import type { DbConfig, DumpCommand, DumpEngine, Probe, Restorer } from './types.ts';
import { unsafeValues } from './values.ts';

// libpq reads a password file: one `host:port:db:user:password` line; `:` and `\` are escaped.
export function passFileLine(password: string): string {
  return `*:*:*:*:${password.replace(/[\\:]/g, (c) => `\\${c}`)}\n`;
}

// A custom-format archive starts with these bytes. Written to a pipe it has no trailer (the table of
// contents is rewritten only in a seekable file), so its head is the mark, and the tool's exit the rest.
const CUSTOM_MAGIC = Buffer.from('PGDMP');
// The last comment of a plain dump: pg_dump's, and pg_dumpall's after every database.
const PLAIN_TRAILER = { pg_dump: '-- PostgreSQL database dump complete', pg_dumpall: '-- PostgreSQL database cluster dump complete' } as const;
// Newer releases write `\unrestrict` lines after the trailer: look for it near the end, not at the very end.
const PLAIN_TAIL_BYTES = 1024;
// DB_EXTRA_ARGS that ask pg_dump for a plain SQL script instead of the custom format.
const PLAIN_FORMAT = /^(?:--format=p(?:lain)?|-Fp|-Fplain)$/;
// Formats that cannot stream to stdout (directory) or that no check knows (tar).
const OTHER_FORMAT = /^(?:--format=(?:d|directory|t|tar)|-F[dt].*)$/;

// The completeness check for these settings: the custom-format magic, or the plain-SQL trailer.
function check(db: DbConfig): CompletenessCheck {
  if (!db.allDatabases && !db.extraArgs.some((arg) => PLAIN_FORMAT.test(arg))) {
    return edgeCheck({
      scope: 'head',
      // More than the magic, to show in the message what came instead.
      head: 16,
      tail: 0,
      judge: (head) => (head.subarray(0, CUSTOM_MAGIC.length).equals(CUSTOM_MAGIC) ? undefined : `pg_dump's output does not start with "PGDMP" (a custom-format archive) but with ${printable(head)}`),
    });
  }
  const tool = db.allDatabases ? 'pg_dumpall' : 'pg_dump';
  return edgeCheck({
    scope: 'stream',
    head: 0,
    tail: PLAIN_TAIL_BYTES,
    judge: (_head, tail) => (tail.includes(PLAIN_TRAILER[tool]) ? undefined : `${tool}'s output lacks its final "${PLAIN_TRAILER[tool]}" comment`),
  });
}

// Gives up on an unreachable server after this long instead of libpq's default of waiting forever.
const CONNECT_TIMEOUT_SECONDS = '30';

// The environment and password file (in the run's private `secretsDir`) every libpq tool (pg_dump,
// pg_restore, psql) connects with.
export function libpqCredentials(db: DbConfig, secretsDir: string): Pick<DumpCommand, 'env' | 'files'> {
  const passFile = join(secretsDir, 'pgpass');
  return {
    env: {
      PGCONNECT_TIMEOUT: CONNECT_TIMEOUT_SECONDS,
      PGAPPNAME: 'planb-backup',
      ...(db.password !== undefined && { PGPASSFILE: passFile }),
      ...(db.tls && { PGSSLMODE: db.tls }),
      ...(db.tlsCaFile && { PGSSLROOTCERT: db.tlsCaFile }),
    },
    files: db.password === undefined ? [] : [{ path: passFile, content: passFileLine(db.password) }],
  };
}

// Where DB_NAMES=* connects to list the databases: the one every cluster has.
const MAINTENANCE_DATABASE = 'postgres';

// How pg_dump and psql reach the server: the same flags, env and password file for both.
function connection(db: DbConfig, secretsDir: string): Pick<DumpCommand, 'env' | 'files'> & { args: string[] } {
  return { args: connectionArgs(db, undefined), ...libpqCredentials(db, secretsDir) };
}

// One query through psql: no psqlrc, unaligned tuples only, records separated by NUL (names may hold newlines).
function psqlQuery<T>(db: DbConfig, database: string, what: string, sql: string, parse: (records: string[]) => T): Probe<T> {
  return {
    what,
    tools: ['psql'],
    command({ secretsDir, tool }) {
      const { args, env, files } = connection(db, secretsDir);
      return { file: tool, args: [...args, '--no-psqlrc', '--tuples-only', '--no-align', '--record-separator-zero', `--dbname=${database}`, `--command=${sql}`], env, files };
    },
    parse: (stdout) => parse(stdout.split('\0').map((record) => record.replace(/\n$/, '')).filter((record) => record !== '')),
  };
}

// One row per ordinary table (partitions are tables; their parents hold no rows of their own), as one
// JSON object on one line. query_to_xml counts each table in the statement's own snapshot.
export const COUNT_ROWS_SQL = `SELECT coalesce(json_object_agg(t.name, t.n ORDER BY t.name), '{}') FROM (
  SELECT format('%s.%s', n.nspname, c.relname) AS name,
    (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname), false, true, '')))[1]::text::bigint AS n
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
    AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
) t`;

// Every database of the cluster but the templates, for a pg_dumpall target.
const DATABASES_SQL = `SELECT coalesce(json_object_agg(datname, 1), '{}') FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres'`;

// The connection options of every libpq tool, with no password prompt.
export function connectionArgs(db: DbConfig, database: string | undefined): string[] {
  return [
    '--no-password',
    ...(db.host ? [`--host=${db.host}`] : []),
    ...(db.port ? [`--port=${db.port}`] : []),
    ...(db.username ? [`--username=${db.username}`] : []),
    ...(database ? [`--dbname=${database}`] : []),
  ];
}

// psql with no psqlrc, printing bare unaligned results and stopping at the first error.
export const PSQL_QUIET_FLAGS = ['-X', '-A', '-t', '-q', '--set=ON_ERROR_STOP=1'] as const;

// psql running one query and printing its bare result.
function psqlCommand(db: DbConfig, secretsDir: string, tool: string, sql: string, database = db.name): DumpCommand {
  return { file: tool, args: [...PSQL_QUIET_FLAGS, ...connectionArgs(db, database ?? 'postgres'), '-c', sql], ...libpqCredentials(db, secretsDir) };
}

// pg_restore for a custom-format archive (one database), psql for pg_dumpall's plain SQL (every database).
// Counts are exact row counts of every table outside the system schemas.
const restorer = {
  formats: ['custom', 'sql'],
  tools: (_db, format) => (format === 'sql' ? ['psql'] : ['pg_restore']),

  command(db, { secretsDir, tool, format, force, scratch }) {
    const credentials = libpqCredentials(db, secretsDir);
    if (format === 'sql') {
      // pg_dumpall's script connects to each database itself (\connect); it starts from `postgres`.
      // It drops and re-creates every role, including the one restoring it, which PostgreSQL refuses:
      // so psql carries on after errors, and errorLines below decides which ones fail the restore.
      return { file: tool, args: ['-X', '-q', ...connectionArgs(db, 'postgres'), ...db.extraArgs], ...credentials };
    }
    const args = [
      ...connectionArgs(db, db.name),
      // All or nothing: a failed restore leaves the target as it was.
      '--single-transaction',
      '--exit-on-error',
      ...(force ? ['--clean', '--if-exists'] : []),
      // The source's roles do not exist in a throw-away cluster.
      ...(scratch ? ['--no-owner', '--no-privileges'] : []),
      ...db.extraArgs,
    ];
    return { file: tool, args, ...credentials };
  },

  // The two errors a pg_dumpall script always meets on a live server: its own roles exist, and the
  // restoring role cannot drop itself. Every other ERROR fails the restore.
  errorLines: (format) => (format === 'sql' ? { match: /\b(ERROR|FATAL|PANIC):/, benign: /ERROR:\s+(current user cannot be dropped|role ".*" already exists)$/ } : undefined),

  async count(db, { secretsDir, path, query }) {
    const psql = requireTool(['psql'], path, 'count the rows of a postgresql database');
    if (db.allDatabases) return parseCounts(await query(psqlCommand(db, secretsDir, psql, DATABASES_SQL, 'postgres')), 'database');
    return parseCounts(await query(psqlCommand(db, secretsDir, psql, COUNT_ROWS_SQL)), 'table');
  },
} satisfies Restorer;

export const postgresql = {
  tools: (db: DbConfig) => (db.allDatabases ? ['pg_dumpall'] : ['pg_dump']),
  restoreTool: 'pg_restore',
  restorer,
  scratch: { binaries: ['initdb'], start: startScratchServer },
  defaultPort: 5432,
  // Custom format for one database (restore with pg_restore); plain SQL for all (restore with psql).
  extension: (db: DbConfig) => (db.allDatabases ? '.sql' : '.dump'),

  validate(db) {
    const problems: string[] = [];
    if (!db.allDatabases && !db.name) problems.push('DB_NAME is required for postgresql (or set DB_ALL_DATABASES=true)');
    if (db.allDatabases && db.name) problems.push('DB_NAME and DB_ALL_DATABASES=true exclude each other');
    // libpq reads a database name with `=` or a URI prefix as connection settings, host included.
    if (db.name !== undefined && (db.name.includes('=') || /^postgres(?:ql)?:/i.test(db.name))) {
      problems.push('DB_NAME looks like a connection string (contains "=" or starts with postgresql:): give the database name only');
    }
    // A password file holds one password per line: a line break cannot be part of one.
    if (db.password !== undefined && /[\n\r]/.test(db.password)) problems.push('DB_PASSWORD contains a line break, which a PostgreSQL password file cannot carry');
    if (db.extraArgs.some((arg) => OTHER_FORMAT.test(arg))) problems.push('DB_EXTRA_ARGS: only the custom (default) and plain formats can be streamed and checked for completeness');
    return [...unsafeValues(db), ...problems];
  },

  command(db, { secretsDir, tool, compression }) {
    const { args, env, files } = connection(db, secretsDir);
    if (db.allDatabases) {
      args.push('--clean', '--if-exists');
    } else {
      // The dump tool must not compress when the pipeline does: pg_dump's own zlib is ~3x slower.
      args.push('--format=custom', ...(compression === 'none' ? [] : ['--compress=0']), `--dbname=${db.name ?? ''}`);
    }
    args.push(...db.extraArgs);
    return { file: tool, args, env, files };
  },

  // Templates and databases this user may not connect to cannot be dumped by it.
  discover: (db) =>
    psqlQuery(
      db,
      MAINTENANCE_DATABASE,
      'pg_database',
      "SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn AND has_database_privilege(datname, 'CONNECT') ORDER BY datname",
      (records) => records,
    ),

  // On disk, indexes and TOAST included: more than a dump of it holds, rarely less.
  size: (db) =>
    db.allDatabases
      ? psqlQuery(db, MAINTENANCE_DATABASE, 'pg_database_size', 'SELECT COALESCE(sum(pg_database_size(datname)), 0) FROM pg_database WHERE datallowconn', (records) => wholeNumber(records[0]))
      : psqlQuery(db, db.name ?? MAINTENANCE_DATABASE, 'pg_database_size', 'SELECT pg_database_size(current_database())', (records) => wholeNumber(records[0])),

  classify(stderr) {
    if (/password authentication failed|no password supplied|permission denied|pg_hba\.conf|role ".*" does not exist|authentication failed/i.test(stderr)) return 'auth';
    if (/database ".*" does not exist|invalid option|unrecognized option|too many command-line arguments|option requires an argument|invalid argument/i.test(stderr)) return 'invalid';
    if (/could not connect|connection refused|could not translate host name|timeout expired|Connection timed out|server closed the connection|No route to host|Network is unreachable/i.test(stderr)) return 'unreachable';
    return 'failed';
  },

  completeness: check,
} satisfies DumpEngine;

// A throw-away cluster: initdb, then postgres on a unix socket in `dir`, with the database DB_NAME names.
async function startScratchServer(source: DbConfig, { server, dir, who, options, logFile, remove }: ScratchSetup): Promise<Scratch> {
  // initdb (the binary found) and postgres of one major live together (Debian: /usr/lib/postgresql/<major>/bin).
  const binDir = dirname(await realpath(server));
  const data = join(dir, 'data');
  await run(join(binDir, 'initdb'), [`--pgdata=${data}`, '--username=planb', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions'], who, dir, 'initdb');
  const proc = launch(join(binDir, 'postgres'), [
    '-D', data, '-p', '5432', '-c', "listen_addresses=", '-c', `unix_socket_directories=${dir}`,
    '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'shared_buffers=32MB', '-c', 'max_connections=20',
  ], who, dir, logFile);
  const ready = async () => (await readFile(join(data, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[7]?.trim() === 'ready';
  await readyOrKilled('the throw-away postgres', proc, logFile, ready);
  const db: DbConfig = { ...base('postgresql'), host: dir, port: 5432, username: 'planb', name: source.allDatabases ? undefined : (source.name ?? 'restored'), allDatabases: source.allDatabases };
  if (!source.allDatabases) {
    const psql = need(['psql'], options.path);
    const created = await execa(psql, ['-X', '-q', '--no-password', `--host=${dir}`, '--port=5432', '--username=planb', '--dbname=postgres', '-c', `CREATE DATABASE "${(db.name ?? '').replaceAll('"', '""')}"`], { reject: false, env: { PATH: options.path }, extendEnv: false });
    if (created.failed) {
      await stopProcess(proc, 'SIGINT');
      throw new VerifyUnavailableError(`cannot verify: creating the database in the throw-away postgres failed: ${created.stderr}`);
    }
  }
  return {
    db, dir, start: () => Promise.resolve(), logTail: () => tail(logFile),
    stop: async () => {
      await stopProcess(proc, 'SIGINT'); // SIGINT = PostgreSQL's fast shutdown
      await remove();
    },
  };
}
