// DB_TYPE=arangodb: arangodump, which writes a directory (one structure and one data file per
// collection), never stdout. It writes into the run's private 0700 directory; the directory is then
// streamed as a tar archive and removed with it. Restore: `tar -xf backup.tar -C dump` then
// `arangorestore --input-directory dump` (add --create-database true for a new database).
import { join } from 'node:path';
import { streamSpool, tarEndCheck } from './spooled.ts';
import type { DumpEngine } from './types.ts';
import { unsafeValues } from './values.ts';

// ArangoDB expands @NAME@ in configuration files to environment variables: such a password would change.
const CONFIG_EXPANSION = /@[A-Za-z0-9_]+@/;

export const arangodb = {
  tools: () => ['arangodump'],
  restoreTool: 'arangorestore',
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
    const tls = db.tls === 'require';
    const args = [
      // The configuration file holds the password; it must come first and replaces arangodump.conf.
      `--configuration=${config}`,
      `--server.endpoint=${tls ? 'ssl' : 'tcp'}://${db.host?.includes(':') ? `[${db.host}]` : (db.host ?? '')}:${db.port ?? 8529}`,
      ...(db.username ? [`--server.username=${db.username}`] : []),
      ...(db.allDatabases ? ['--all-databases=true'] : [`--server.database=${db.name ?? ''}`]),
      // The pipeline compresses; arangodump's own gzip per file would only cost CPU.
      '--compress-output=false',
      ...db.extraArgs,
      `--output-directory=${path}`,
      '--overwrite=true',
    ];
    // Always written, even empty: without a password arangodump would prompt for one.
    const content = `[server]\npassword = ${db.password ?? ''}\n`;
    const spool = { path, kind: 'directory', steps: [{ file: tool, args, env: {} }] } as const;
    return { ...streamSpool(spool), env: {}, files: [{ path: config, content }], spool };
  },

  // arangodump leaves no mark of its own: the archive made after it exited 0 must be whole.
  completeness: () => tarEndCheck(),

  classify(stderr) {
    if (/not authorized|unauthorized|401|wrong credentials|authentication failed|forbidden/i.test(stderr)) return 'auth';
    if (/could not connect|connection refused|Could not resolve|no such host|timeout|unreachable/i.test(stderr)) return 'unreachable';
    return 'failed';
  },
} satisfies DumpEngine;
