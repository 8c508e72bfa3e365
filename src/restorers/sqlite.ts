// DB_TYPE=sqlite: the sqlite3 shell runs the `.dump` SQL into a new database file. The restore writes
// a temporary file beside DB_NAME and moves it into place only when the whole script ran (restore.ts).
import { access } from 'node:fs/promises';
import type { DbConfig, DumpCommand } from '../engines/types.ts';
import { parseCounts, quoteIdentifier, quoteLiteral, requireTool } from './tools.ts';
import type { Restorer } from './types.ts';

function shell(tool: string, file: string, args: readonly string[], sql: string): DumpCommand {
  return { file: tool, args: ['-bail', ...args, file, sql], env: {}, files: [] };
}

export const sqlite = {
  formats: ['sql'],
  tools: () => ['sqlite3'],

  command(db, { tool }) {
    // -bail: the first failing statement stops the script with a non-zero exit.
    return { file: tool, args: ['-bail', ...db.extraArgs, db.name ?? ''], env: {}, files: [] };
  },

  async count(db: DbConfig, { path, query }) {
    const file = db.name ?? '';
    // A missing file holds nothing (and sqlite3 -readonly would refuse it).
    if (!(await access(file).then(() => true, () => false))) return {};
    const tool = requireTool(['sqlite3'], path, 'count the rows of a sqlite database');
    const listed = await query(shell(tool, file, ['-readonly', '-noheader', '-list'], "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"));
    const tables = listed.split('\n').filter((line) => line !== '');
    if (tables.length === 0) return {};
    const pairs = tables.map((table) => `${quoteLiteral(table)}, (SELECT count(*) FROM ${quoteIdentifier(table, '"')})`);
    // One statement, one read transaction: every count describes the same moment.
    return parseCounts(await query(shell(tool, file, ['-readonly', '-noheader', '-list'], `SELECT json_object(${pairs.join(', ')})`)), 'table');
  },
} satisfies Restorer;
