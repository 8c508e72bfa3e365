// DB_TYPE=redis: redis-cli --rdb streams the server's RDB snapshot (all databases) to stdout.
import { rdbCheck } from './rdb.ts';
import { lines, wholeNumber } from './answers.ts';
import type { DbConfig, DumpEngine } from './types.ts';
import { unsafeValues } from './values.ts';

// How redis-cli reaches the server, for the dump and for INFO alike.
function connectionArgs(db: DbConfig): string[] {
  const tls = db.tls && db.tls !== 'disable' && db.tls !== 'prefer';
  return [
    '-h', db.host ?? '',
    '-p', String(db.port ?? 6379),
    ...(db.username ? ['--user', db.username] : []),
    ...(tls ? ['--tls'] : []),
    ...(tls && db.tls === 'require' ? ['--insecure'] : []),
    ...(db.tlsCaFile ? ['--cacert', db.tlsCaFile] : []),
  ];
}

// redis-cli reads the password from REDISCLI_AUTH, so it never appears in argv.
function authEnv(db: DbConfig): Record<string, string> {
  return db.password === undefined ? {} : { REDISCLI_AUTH: db.password };
}

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
    const args = [...connectionArgs(db), ...(db.name ? ['-n', db.name] : []), ...db.extraArgs, '--rdb', '-'];
    return { file: tool, args, env: authEnv(db), files: [] };
  },

  namesUnsupported: 'an RDB snapshot always holds every database, so DB_NAMES would store the same snapshot once per name; leave DB_NAME unset to back them all up',

  // The dataset's bytes in memory (used_memory without the server's own overhead); an RDB is
  // usually smaller, being compact and compressed.
  size: (db) => ({
    what: 'INFO memory',
    tools: ['redis-cli'],
    command: ({ tool }) => ({ file: tool, args: [...connectionArgs(db), 'INFO', 'memory'], env: authEnv(db), files: [] }),
    parse(stdout) {
      const fields = new Map(lines(stdout).map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1)]));
      return wholeNumber(fields.get('used_memory_dataset') ?? fields.get('used_memory'));
    },
  }),

  classify(stderr) {
    if (/NOAUTH|WRONGPASS|invalid (username-)?password|NOPERM|AUTH failed/i.test(stderr)) return 'auth';
    if (/Unrecognized option|Invalid option|wrong number of arguments/i.test(stderr)) return 'invalid';
    if (/Could not connect|Connection refused|Name or service not known|Connection timed out|Connection reset/i.test(stderr)) return 'unreachable';
    return 'failed';
  },

  completeness: rdbCheck,
} satisfies DumpEngine;
