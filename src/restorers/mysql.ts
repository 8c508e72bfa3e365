// DB_TYPE=mysql and mariadb: the mysql/mariadb client reads the SQL dump on stdin. Counts are exact
// row counts (COUNT(*)) of every base table, read in one consistent snapshot.
import { join } from 'node:path';
import { optionFile, tlsArgs } from '../engines/mysql.ts';
import type { DbConfig, DumpCommand } from '../engines/types.ts';
import { parseCounts, quoteIdentifier, quoteLiteral, requireTool } from './tools.ts';
import type { Restorer } from './types.ts';

// Schemas of the server itself, never part of a dump of "every database".
const SYSTEM_SCHEMAS = ['mysql', 'information_schema', 'performance_schema', 'sys'];

function client(db: DbConfig, secretsDir: string, tool: string, mariadbClient: boolean, extra: readonly string[]): DumpCommand {
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

function query(db: DbConfig, secretsDir: string, tool: string, mariadbClient: boolean, sql: string): DumpCommand {
  return client(db, secretsDir, tool, mariadbClient, ['--batch', '--skip-column-names', '--raw', '-e', sql]);
}

// Builds the restorer for one flavour; `clients` is what that flavour's image ships, best first.
export function mysqlFamilyRestorer(clients: readonly string[], mariadbClient: boolean): Restorer {
  return {
    formats: ['sql'],
    tools: () => clients,

    command(db, { secretsDir, tool }) {
      // --binary-mode: the dump's binary strings (and \0) go in as written. A dump of every database
      // names its databases itself; a dump of one goes into DB_NAME, which must exist.
      return client(db, secretsDir, tool, mariadbClient, ['--binary-mode', ...db.extraArgs, ...(db.allDatabases ? [] : ['--', db.name ?? ''])]);
    },

    async count(db, context) {
      const tool = requireTool(clients, context.path, 'count the rows of a mysql/mariadb database');
      const where = db.allDatabases
        ? `table_schema NOT IN (${SYSTEM_SCHEMAS.map((schema) => quoteLiteral(schema)).join(', ')})`
        : `table_schema = ${quoteLiteral(db.name ?? '', true)}`;
      const listed = await context.query(query(db, context.secretsDir, tool, mariadbClient,
        `SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' AND ${where} ORDER BY 1, 2`));
      const tables = listed.split('\n').filter((line) => line !== '').map((line) => line.split('\t') as [string, string]);
      if (tables.length === 0) return {};
      const name = ([schema, table]: [string, string]) => (db.allDatabases ? `${schema}.${table}` : table);
      const pairs = tables.map((table) => `${quoteLiteral(name(table), true)}, (SELECT COUNT(*) FROM ${quoteIdentifier(table[0], '`')}.${quoteIdentifier(table[1], '`')})`);
      // One snapshot for every count: they describe one moment of the database.
      const sql = `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY; SELECT JSON_OBJECT(${pairs.join(', ')}); COMMIT;`;
      return parseCounts(await context.query(query(db, context.secretsDir, tool, mariadbClient, sql)), 'table');
    },
  };
}

export const mysql = mysqlFamilyRestorer(['mysql'], false);
export const mariadb = mysqlFamilyRestorer(['mariadb', 'mysql'], true);
