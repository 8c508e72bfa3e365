// DB_TYPE=redis: an RDB snapshot is restored by placing it where a Redis server loads it at start-up
// (its `dir`/`dbfilename`): a running server cannot be loaded from outside. restore.ts writes it to
// RESTORE_RDB_PATH; verify starts a throw-away redis-server on it. Counts are keys per database.
import type { DbConfig, DumpCommand } from '../engines/types.ts';
import { requireTool } from './tools.ts';
import type { Counts, Restorer } from './types.ts';

// redis-cli against the server `db` names: TCP, or a unix socket when DB_HOST is a path.
export function redisCli(db: DbConfig, tool: string, args: readonly string[]): DumpCommand {
  const tls = db.tls && db.tls !== 'disable' && db.tls !== 'prefer';
  const where = db.host?.startsWith('/') ? ['-s', db.host] : ['-h', db.host ?? '', '-p', String(db.port ?? 6379)];
  return {
    file: tool,
    args: [
      ...where,
      ...(db.username ? ['--user', db.username] : []),
      ...(tls ? ['--tls'] : []),
      ...(tls && db.tls === 'require' ? ['--insecure'] : []),
      ...(db.tlsCaFile ? ['--cacert', db.tlsCaFile] : []),
      ...args,
    ],
    // redis-cli reads the password from REDISCLI_AUTH, so it never appears in argv.
    env: db.password === undefined ? {} : { REDISCLI_AUTH: db.password },
    files: [],
  };
}

// `db0:keys=3,expires=0,avg_ttl=0` lines of INFO keyspace → { db0: 3 }.
export function parseKeyspace(info: string): Counts {
  const counts: Counts = {};
  for (const match of info.matchAll(/^(db\d+):keys=(\d+)/gm)) counts[match[1] ?? ''] = Number(match[2]);
  return counts;
}

export const redis = {
  formats: ['rdb'],
  tools: () => [],
  command: () => undefined,

  async count(db, { path, query }) {
    const tool = requireTool(['redis-cli'], path, 'count the keys of a redis server');
    return parseKeyspace(await query(redisCli(db, tool, ['INFO', 'keyspace'])));
  },
} satisfies Restorer;
