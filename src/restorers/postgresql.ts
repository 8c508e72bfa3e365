// DB_TYPE=postgresql: pg_restore for a custom-format archive (one database), psql for pg_dumpall's
// plain SQL (every database). Counts are exact row counts of every table outside the system schemas.
import { join } from 'node:path';
import { libpqCredentials } from '../engines/postgresql.ts';
import type { DbConfig, DumpCommand } from '../engines/types.ts';
import { parseCounts, requireTool } from './tools.ts';
import type { Restorer } from './types.ts';

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
export function connection(db: DbConfig, database: string | undefined): string[] {
  return [
    '--no-password',
    ...(db.host ? [`--host=${db.host}`] : []),
    ...(db.port ? [`--port=${db.port}`] : []),
    ...(db.username ? [`--username=${db.username}`] : []),
    ...(database ? [`--dbname=${database}`] : []),
  ];
}

// psql running one query and printing its bare result.
export function psqlQuery(db: DbConfig, secretsDir: string, tool: string, sql: string, database = db.name): DumpCommand {
  return { file: tool, args: ['-X', '-A', '-t', '-q', '--set=ON_ERROR_STOP=1', ...connection(db, database ?? 'postgres'), '-c', sql], ...libpqCredentials(db, join(secretsDir, 'pgpass')) };
}

export const postgresql = {
  formats: ['custom', 'sql'],
  tools: (_db, format) => (format === 'sql' ? ['psql'] : ['pg_restore']),

  command(db, { secretsDir, tool, format, force, scratch }) {
    const credentials = libpqCredentials(db, join(secretsDir, 'pgpass'));
    if (format === 'sql') {
      // pg_dumpall's script connects to each database itself (\connect); it starts from `postgres`.
      // It drops and re-creates every role, including the one restoring it, which PostgreSQL refuses:
      // so psql carries on after errors, and errorLines below decides which ones fail the restore.
      return { file: tool, args: ['-X', '-q', ...connection(db, 'postgres'), ...db.extraArgs], ...credentials };
    }
    const args = [
      ...connection(db, db.name),
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
    if (db.allDatabases) return parseCounts(await query(psqlQuery(db, secretsDir, psql, DATABASES_SQL, 'postgres')), 'database');
    return parseCounts(await query(psqlQuery(db, secretsDir, psql, COUNT_ROWS_SQL)), 'table');
  },
} satisfies Restorer;
