// DB_TYPE=postgresql (alias postgres): pg_dump in custom format, or pg_dumpall for every database.
import { join } from 'node:path';
import type { DbConfig, DumpCommand, DumpEngine } from './types.ts';

// libpq reads a password file: one `host:port:db:user:password` line; `:` and `\` are escaped.
export function passFileLine(password: string): string {
  return `*:*:*:*:${password.replace(/[\\:]/g, (c) => `\\${c}`)}\n`;
}

// Gives up on an unreachable server after this long instead of libpq's default of waiting forever.
const CONNECT_TIMEOUT_SECONDS = '30';

// The environment and password file every libpq tool (pg_dump, pg_restore, psql) connects with.
export function libpqCredentials(db: DbConfig, passFile: string): Pick<DumpCommand, 'env' | 'files'> {
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

export const postgresql = {
  tools: (db: DbConfig) => (db.allDatabases ? ['pg_dumpall'] : ['pg_dump']),
  restoreTool: 'pg_restore',
  defaultPort: 5432,
  // Custom format for one database (restore with pg_restore); plain SQL for all (restore with psql).
  extension: (db: DbConfig) => (db.allDatabases ? '.sql' : '.dump'),

  validate(db) {
    const problems: string[] = [];
    if (!db.allDatabases && !db.name) problems.push('DB_NAME is required for postgresql (or set DB_ALL_DATABASES=true)');
    if (db.allDatabases && db.name) problems.push('DB_NAME and DB_ALL_DATABASES=true exclude each other');
    return problems;
  },

  command(db, { secretsDir, tool, compression }) {
    const passFile = join(secretsDir, 'pgpass');
    const args = ['--no-password'];
    if (db.host) args.push(`--host=${db.host}`);
    if (db.port) args.push(`--port=${db.port}`);
    if (db.username) args.push(`--username=${db.username}`);
    if (db.allDatabases) {
      args.push('--clean', '--if-exists');
    } else {
      // The dump tool must not compress when the pipeline does: pg_dump's own zlib is ~3x slower.
      args.push('--format=custom', ...(compression === 'none' ? [] : ['--compress=0']), `--dbname=${db.name ?? ''}`);
    }
    args.push(...db.extraArgs);
    return { file: tool, args, ...libpqCredentials(db, passFile) };
  },

  classify(stderr) {
    if (/password authentication failed|no password supplied|permission denied|pg_hba\.conf|role ".*" does not exist|authentication failed/i.test(stderr)) return 'auth';
    if (/could not connect|connection refused|could not translate host name|timeout expired|Connection timed out|server closed the connection|No route to host|Network is unreachable/i.test(stderr)) return 'unreachable';
    return 'failed';
  },
} satisfies DumpEngine;
