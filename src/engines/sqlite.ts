// DB_TYPE=sqlite: the sqlite3 shell's `.dump`, streamed as SQL text. It reads inside one transaction,
// so the dump is a consistent snapshot, and unlike `.backup` it needs no temporary copy on disk
// (which on Cloud Run would count against memory). Restore: `sqlite3 new.db < backup.sql`.
import type { DumpEngine } from './types.ts';

// How long to wait for a writer's lock before giving up.
const BUSY_TIMEOUT_MS = 30_000;

export const sqlite = {
  tools: () => ['sqlite3'],
  restoreTool: 'sqlite3',
  defaultPort: undefined,
  extension: () => '.sql',

  validate(db) {
    const problems: string[] = [];
    if (!db.name) problems.push('DB_NAME is required for sqlite: the path of the database file');
    if (db.allDatabases) problems.push('DB_ALL_DATABASES does not apply to sqlite');
    return problems;
  },

  command(db, { tool }) {
    // -readonly: a missing file is an error instead of a new empty database.
    return {
      file: tool,
      args: ['-bail', '-readonly', '-cmd', `.timeout ${BUSY_TIMEOUT_MS}`, ...db.extraArgs, db.name ?? '', '.dump'],
      env: {},
      files: [],
    };
  },

  classify(stderr) {
    if (/unable to open database|no such file|not a database/i.test(stderr)) return 'unreachable';
    if (/unknown option|Error: unknown command/i.test(stderr)) return 'invalid';
    if (/permission denied|authorization denied/i.test(stderr)) return 'auth';
    return 'failed';
  },
} satisfies DumpEngine;
