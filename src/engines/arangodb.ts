// DB_TYPE=arangodb: arangodump, which writes a directory (one structure and one data file per
// collection), never stdout. It writes into the run's private 0700 directory; the directory is then
// streamed as a tar archive and removed with it. Restore: `tar -xf backup.tar -C dump` then
// `arangorestore --input-directory dump` (add --create-database true for a new database).
import { join } from 'node:path';
import { backupOnly } from './backup-only.ts';
import { lines, wholeNumber } from './answers.ts';
import { streamSpool, tarEndCheck } from './spooled.ts';
import type { DbConfig, DumpCommand, DumpEngine, Probe } from './types.ts';
import { unsafeValues } from './values.ts';

// ArangoDB expands @NAME@ in configuration files to environment variables: such a password would change.
const CONFIG_EXPANSION = /@[A-Za-z0-9_]+@/;

// The server endpoint in arangodump's and arangosh's form.
function endpoint(db: DbConfig): string {
  const host = db.host?.includes(':') ? `[${db.host}]` : (db.host ?? '');
  return `${db.tls === 'require' ? 'ssl' : 'tcp'}://${host}:${db.port ?? 8529}`;
}

// The configuration file both tools read first; it holds the password. Always written, even empty:
// without a password the tools would prompt for one.
function configFile(db: DbConfig, path: string): DumpCommand['files'][number] {
  return { path, content: `[server]\npassword = ${db.password ?? ''}\n` };
}

// A short arangosh script against `database`, printing its answer.
function arangoshQuery<T>(db: DbConfig, what: string, database: string, script: string, parse: (stdout: string) => T): Probe<T> {
  return {
    what,
    tools: ['arangosh'],
    command: ({ secretsDir, tool }) => {
      const config = join(secretsDir, 'arangosh.conf');
      return {
        file: tool,
        args: [
          `--configuration=${config}`,
          `--server.endpoint=${endpoint(db)}`,
          ...(db.username ? [`--server.username=${db.username}`] : []),
          `--server.database=${database}`,
          '--quiet',
          `--javascript.execute-string=${script}`,
        ],
        env: {},
        files: [configFile(db, config)],
      };
    },
    parse,
  };
}

export const arangodb = {
  tools: () => ['arangodump'],
  restoreTool: 'arangorestore',
  // Backups only: the job cannot restore or count these (configuration refuses those modes).
  restorer: backupOnly(
    'tar',
    'arangorestore reads a directory: unpack the object with tar and run arangorestore --input-directory (docs/databases.md)',
    'the job has no throw-away arangod to restore into (a server of 1 GiB or more, not started by the job)',
  ),
  scratch: 'the job starts no throw-away arangod',
  defaultPort: 8529,
  extension: () => '.tar',

  validate(db) {
    const problems: string[] = [];
    if (!db.host) problems.push('DB_HOST is required for arangodb');
    if (!db.allDatabases && !db.name) problems.push('DB_NAME is required for arangodb (or set DB_ALL_DATABASES=true)');
    if (db.allDatabases && db.name) problems.push('DB_NAME and DB_ALL_DATABASES=true exclude each other');
    if (db.tlsCaFile) problems.push('DB_TLS_CA_FILE is not supported for arangodb: arangodump does not verify server certificates');
    if (db.tls === 'verify-ca' || db.tls === 'verify-full') problems.push(`DB_TLS=${db.tls} is not possible for arangodb: arangodump encrypts but does not verify server certificates (use require)`);
    if (db.password !== undefined && (/[\r\n]/.test(db.password) || db.password.trim() !== db.password || CONFIG_EXPANSION.test(db.password))) {
      problems.push('DB_PASSWORD for arangodb cannot hold line breaks, leading or trailing spaces, or @NAME@ (its configuration file would change it)');
    }
    return [...unsafeValues(db), ...problems];
  },

  command(db, { secretsDir, tool }) {
    const config = join(secretsDir, 'arangodump.conf');
    const path = join(secretsDir, 'dump');
    const args = [
      // The configuration file holds the password; it must come first and replaces arangodump.conf.
      `--configuration=${config}`,
      `--server.endpoint=${endpoint(db)}`,
      ...(db.username ? [`--server.username=${db.username}`] : []),
      ...(db.allDatabases ? ['--all-databases=true'] : [`--server.database=${db.name ?? ''}`]),
      // The pipeline compresses; arangodump's own gzip per file would only cost CPU.
      '--compress-output=false',
      ...db.extraArgs,
      `--output-directory=${path}`,
      '--overwrite=true',
    ];
    const spool = { path, kind: 'directory', steps: [{ file: tool, args, env: {} }] } as const;
    return { ...streamSpool(spool), env: {}, files: [configFile(db, config)], spool };
  },

  // Every database but _system, asked of _system (the user must be allowed to list them).
  discover: (db) =>
    arangoshQuery(db, 'db._databases()', '_system', "db._databases().filter((name) => name !== '_system').forEach((name) => print(name));", lines),

  // The documents' bytes of every collection (system collections included, as arangodump dumps
  // them); one database, or all of them with DB_ALL_DATABASES.
  size: (db) =>
    arangoshQuery(
      db,
      'collection figures documentsSize',
      db.allDatabases ? '_system' : (db.name ?? ''),
      db.allDatabases
        ? 'let total = 0; for (const name of db._databases()) { db._useDatabase(name); for (const c of db._collections()) total += c.figures().documentsSize || 0; } print(String(total));'
        : 'let total = 0; for (const c of db._collections()) total += c.figures().documentsSize || 0; print(String(total));',
      (stdout) => wholeNumber(lines(stdout).at(-1)),
    ),

  // arangodump leaves no mark of its own: the archive made after it exited 0 must be whole.
  completeness: () => tarEndCheck(),

  classify(stderr) {
    if (/not authorized|unauthorized|401|wrong credentials|authentication failed|forbidden/i.test(stderr)) return 'auth';
    if (/could not connect|connection refused|Could not resolve|no such host|timeout|unreachable/i.test(stderr)) return 'unreachable';
    return 'failed';
  },
} satisfies DumpEngine;
