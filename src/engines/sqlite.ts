// DB_TYPE=sqlite: the sqlite3 shell's `.dump`, streamed as SQL text. It reads inside one transaction,
// so the dump is a consistent snapshot, and unlike `.backup` it needs no temporary copy on disk
// (which on Cloud Run would count against memory). Restore: `sqlite3 new.db < backup.sql`.
// The shell exits 0 even when it could not read the database (also with -bail): it writes its errors
// into the dump as comments and ends it with ROLLBACK instead of COMMIT. Those marks decide.
import { access } from 'node:fs/promises';
import { join } from 'node:path';
import { base, type Scratch, type ScratchSetup } from '../scratch.ts';
import { lines, wholeNumber } from './answers.ts';
import { parseCounts, quoteIdentifier, quoteLiteral, requireTool } from './counts.ts';
import { edges, scanner, type CompletenessCheck } from './marks.ts';
import type { DbConfig, DumpCommand, DumpEngine, Restorer } from './types.ts';
import { unsafeValues } from './values.ts';

// How long to wait for a writer's lock before giving up.
const BUSY_TIMEOUT_MS = 30_000;
// Every SQLite database file starts with these 16 bytes.
const FILE_MAGIC = Buffer.from('SQLite format 3\0', 'latin1');
// Comments the shell writes into a dump in place of what it could not read: an error it counted, and
// a damaged page it skipped without counting (the dump may still end in COMMIT).
const ERROR_COMMENTS = ['/**** ERROR:', '/****** CORRUPTION ERROR'] as const;
// The last statement of a complete dump, and of one where the shell counted errors.
const COMMIT = 'COMMIT;';
const ROLLBACK = 'ROLLBACK; -- due to errors';
// Room for the last statement and the line end after it.
const TAIL_BYTES = 64;

// Scans the whole dump for the error comments (in bounded memory) and checks how it ends.
function check(): CompletenessCheck {
  const errors = scanner(ERROR_COMMENTS);
  const seen = edges(0, TAIL_BYTES);
  return {
    scope: 'stream',
    write(chunk) {
      errors.write(chunk);
      seen.write(chunk);
    },
    verdict() {
      const last = seen.tail().toString('latin1').trimEnd();
      const error = errors.found();
      if (error !== undefined) return `sqlite3 wrote an error into the dump, so parts of the database could not be read: ${error}`;
      if (last.endsWith(ROLLBACK)) return 'the dump ends in ROLLBACK: sqlite3 counted errors while reading the database';
      if (!last.endsWith(COMMIT)) return `the dump does not end with ${COMMIT}: sqlite3 stopped before the end`;
      return undefined;
    },
  };
}

// The shell's options shared by the preflight and the dump: read-only (a missing file is an error
// instead of a new empty database) and a busy timeout for a writer's lock.
function shellArgs(extraArgs: readonly string[]): string[] {
  return ['-bail', '-readonly', '-cmd', `.timeout ${BUSY_TIMEOUT_MS}`, ...extraArgs];
}

// The shell running `sql` on `file`, stopping at the first error.
function shell(tool: string, file: string, args: readonly string[], sql: string): DumpCommand {
  return { file: tool, args: ['-bail', ...args, file, sql], env: {}, files: [] };
}

// The sqlite3 shell runs the `.dump` SQL into a new database file. The restore writes a temporary
// file beside DB_NAME and moves it into place only when the whole script ran (restore.ts).
const restorer = {
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

export const sqlite = {
  tools: () => ['sqlite3'],
  restoreTool: 'sqlite3',
  restorer,
  scratch: { binaries: ['sqlite3'], runsAsRoot: true, start: startScratchServer },
  defaultPort: undefined,
  extension: () => '.sql',

  validate(db) {
    const problems: string[] = [];
    if (!db.name) problems.push('DB_NAME is required for sqlite: the path of the database file');
    if (db.allDatabases) problems.push('DB_ALL_DATABASES does not apply to sqlite');
    return [...unsafeValues(db), ...problems];
  },

  command(db, { tool }) {
    return { file: tool, args: [...shellArgs(db.extraArgs), db.name ?? '', '.dump'], env: {}, files: [] };
  },

  // The file's size as SQLite counts it (pages × page size), read through the same read-only shell.
  size: (db) => ({
    what: 'page_count × page_size',
    tools: ['sqlite3'],
    command: ({ tool }) => ({
      file: tool,
      args: ['-bail', '-readonly', '-noheader', '-list', db.name ?? '', 'SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()'],
      env: {},
      files: [],
    }),
    parse: (stdout) => wholeNumber(lines(stdout)[0]),
  }),

  classify(stderr) {
    if (/unable to open database|no such file|not a database/i.test(stderr)) return 'unreachable';
    if (/unknown option|Error: unknown command/i.test(stderr)) return 'invalid';
    if (/permission denied|authorization denied/i.test(stderr)) return 'auth';
    return 'failed';
  },

  completeness: check,

  // The file is an SQLite database (its header), and `PRAGMA quick_check` finds no damage
  // (DB_SQLITE_QUICK_CHECK=false skips it: it reads every page, O(size of the file)).
  async preflight(db, context) {
    const path = db.name ?? '';
    const head = await context.readHead(path, FILE_MAGIC.length);
    if (typeof head === 'string') {
      return head === 'ENOENT' ? { kind: 'unreachable', message: `DB_NAME: ${path} does not exist` } : { kind: head === 'EACCES' ? 'auth' : 'unreachable', message: `DB_NAME: cannot read ${path} (${head})` };
    }
    if (!head.equals(FILE_MAGIC)) return { kind: 'failed', message: `DB_NAME: ${path} is not an SQLite database (${head.length === 0 ? 'the file is empty' : 'no SQLite header'})` };
    if (!db.sqliteQuickCheck) return undefined;
    const quickCheck: DumpCommand = { file: context.tool, args: [...shellArgs(db.extraArgs), path, 'PRAGMA quick_check;'], env: {}, files: [] };
    const answer = await context.ask(quickCheck);
    if (answer.exitCode === 0 && answer.stdout.trim() === 'ok') return undefined;
    const found = (answer.stdout.trim() || answer.stderr.trim()).split('\n').slice(0, 5).join('; ');
    return { kind: 'failed', message: `PRAGMA quick_check on ${path} failed: ${found || `exit code ${answer.exitCode}`}` };
  },
} satisfies DumpEngine;

// No server: verification restores into a new file in its private dir.
function startScratchServer(_source: DbConfig, { dir, remove }: ScratchSetup): Scratch {
  return { db: { ...base('sqlite'), name: join(dir, 'verify.db') }, dir, start: () => Promise.resolve(), stop: remove, logTail: () => Promise.resolve('') };
}
