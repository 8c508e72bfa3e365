// DB_TYPE=redis: redis-cli --rdb streams the server's RDB snapshot (all databases) to stdout.
import { rdbCheck } from './rdb.ts';
import type { DumpEngine } from './types.ts';
import { unsafeValues } from './values.ts';

export const redis = {
  tools: () => ['redis-cli'],
  restoreTool: 'redis-server',
  defaultPort: 6379,
  extension: () => '.rdb',

  validate(db) {
    const problems: string[] = [];
    if (!db.host) problems.push('DB_HOST is required for redis');
    if (db.name !== undefined && !/^\d+$/.test(db.name)) problems.push('DB_NAME for redis is a database index (0, 1, …) or unset');
    if (db.allDatabases) problems.push('DB_ALL_DATABASES does not apply to redis: an RDB snapshot always holds every database');
    return [...unsafeValues(db), ...problems];
  },

  command(db, { tool }) {
    const tls = db.tls && db.tls !== 'disable' && db.tls !== 'prefer';
    const args = [
      '-h', db.host ?? '',
      '-p', String(db.port ?? 6379),
      ...(db.username ? ['--user', db.username] : []),
      ...(tls ? ['--tls'] : []),
      ...(tls && db.tls === 'require' ? ['--insecure'] : []),
      ...(db.tlsCaFile ? ['--cacert', db.tlsCaFile] : []),
      ...(db.name ? ['-n', db.name] : []),
      ...db.extraArgs,
      '--rdb', '-',
    ];
    // redis-cli reads the password from REDISCLI_AUTH, so it never appears in argv.
    const env: Record<string, string> = db.password === undefined ? {} : { REDISCLI_AUTH: db.password };
    return { file: tool, args, env, files: [] };
  },

  classify(stderr) {
    if (/NOAUTH|WRONGPASS|invalid (username-)?password|NOPERM|AUTH failed/i.test(stderr)) return 'auth';
    if (/Unrecognized option|Invalid option|wrong number of arguments/i.test(stderr)) return 'invalid';
    if (/Could not connect|Connection refused|Name or service not known|Connection timed out|Connection reset/i.test(stderr)) return 'unreachable';
    return 'failed';
  },

  completeness: rdbCheck,
} satisfies DumpEngine;
