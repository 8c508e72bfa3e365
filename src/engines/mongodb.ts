// DB_TYPE=mongodb: mongodump --archive to stdout; the password goes in a --config YAML file
// (MongoDB Database Tools ≥ 100.3.0). Restore: `mongorestore --archive < backup.archive`.
import { join } from 'node:path';
import type { DbConfig, DumpCommand, DumpEngine } from './types.ts';

// The connection options shared by mongodump and mongorestore; the password goes in the --config YAML.
export function mongoConnection(db: DbConfig, config: string): Pick<DumpCommand, 'args' | 'files'> {
  const tls = db.tls && db.tls !== 'disable' && db.tls !== 'prefer';
  const args = [
    `--config=${config}`,
    `--host=${db.host ?? ''}`,
    `--port=${db.port ?? 27017}`,
    ...(db.username ? [`--username=${db.username}`] : []),
    ...(tls ? ['--ssl'] : []),
    ...(tls && db.tls === 'require' ? ['--tlsInsecure'] : []),
    ...(db.tlsCaFile ? [`--sslCAFile=${db.tlsCaFile}`] : []),
  ];
  // JSON strings are valid YAML scalars, so any password survives quoting.
  const content = db.password === undefined ? '' : `password: ${JSON.stringify(db.password)}\n`;
  return { args, files: [{ path: config, content }] };
}

export const mongodb = {
  tools: () => ['mongodump'],
  restoreTool: 'mongorestore',
  defaultPort: 27017,
  extension: () => '.archive',

  validate(db) {
    const problems: string[] = [];
    if (!db.host) problems.push('DB_HOST is required for mongodb');
    if (db.allDatabases && db.name) problems.push('DB_NAME and DB_ALL_DATABASES=true exclude each other');
    return problems;
  },

  command(db, { secretsDir, tool }) {
    const { args, files } = mongoConnection(db, join(secretsDir, 'mongodump.yaml'));
    return { file: tool, args: [...args, ...(db.name && !db.allDatabases ? [`--db=${db.name}`] : []), ...db.extraArgs, '--archive'], env: {}, files };
  },

  classify(stderr) {
    if (/Authentication failed|not authorized|auth error|SCRAM/i.test(stderr)) return 'auth';
    if (/server selection error|connection refused|no reachable servers|context deadline exceeded|i\/o timeout|no such host/i.test(stderr)) return 'unreachable';
    return 'failed';
  },
} satisfies DumpEngine;
