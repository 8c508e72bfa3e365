// DB_TYPE=redis: redis-cli --rdb streams the server's RDB snapshot (all databases) to stdout.
import { chown } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { base, launch, need, readyOrKilled, stopProcess, tail, type Scratch, type ScratchSetup } from '../scratch.ts';
import { rdbCheck } from './rdb.ts';
import { lines, wholeNumber } from './answers.ts';
import { requireTool } from './counts.ts';
import { encrypts, type Counts, type DbConfig, type DumpCommand, type DumpEngine, type Restorer } from './types.ts';
import { unsafeValues } from './values.ts';

// How redis-cli reaches the server `db` names, for the dump, INFO and the counts alike: TCP, or a
// unix socket when DB_HOST is a path.
function connectionArgs(db: DbConfig): string[] {
  const tls = encrypts(db);
  return [
    ...(db.host?.startsWith('/') ? ['-s', db.host] : ['-h', db.host ?? '', '-p', String(db.port ?? 6379)]),
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

// redis-cli against the server `db` names, running `args`.
export function redisCli(db: DbConfig, tool: string, args: readonly string[]): DumpCommand {
  return { file: tool, args: [...connectionArgs(db), ...args], env: authEnv(db), files: [] };
}

// `db0:keys=3,expires=0,avg_ttl=0` lines of INFO keyspace → { db0: 3 }.
export function parseKeyspace(info: string): Counts {
  const counts: Counts = {};
  for (const match of info.matchAll(/^(db\d+):keys=(\d+)/gm)) counts[match[1] ?? ''] = Number(match[2]);
  return counts;
}

// An RDB snapshot is restored by placing it where a Redis server loads it at start-up (its
// `dir`/`dbfilename`): a running server cannot be loaded from outside. restore.ts writes it to
// RESTORE_RDB_PATH; verify starts a throw-away redis-server on it. Counts are keys per database.
const restorer = {
  formats: ['rdb'],
  tools: () => [],
  command: () => undefined,

  async count(db, { path, query }) {
    const tool = requireTool(['redis-cli'], path, 'count the keys of a redis server');
    return parseKeyspace(await query(redisCli(db, tool, ['INFO', 'keyspace'])));
  },
} satisfies Restorer;

export const redis = {
  tools: () => ['redis-cli'],
  restoreTool: 'redis-server',
  restorer,
  scratch: { binaries: ['redis-server'], start: startScratchServer },
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
    return redisCli(db, tool, [...(db.name ? ['-n', db.name] : []), ...db.extraArgs, '--rdb', '-']);
  },

  namesUnsupported: 'an RDB snapshot always holds every database, so DB_NAMES would store the same snapshot once per name; leave DB_NAME unset to back them all up',

  // The dataset's bytes in memory (used_memory without the server's own overhead); an RDB is
  // usually smaller, being compact and compressed.
  size: (db) => ({
    what: 'INFO memory',
    tools: ['redis-cli'],
    command: ({ tool }) => redisCli(db, tool, ['INFO', 'memory']),
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

// A throw-away redis-server on a unix socket in `dir`, started once the restore wrote dump.rdb there.
function startScratchServer(_source: DbConfig, { server, dir, who, options, logFile, remove }: ScratchSetup): Scratch {
  const cli = need(['redis-cli'], options.path);
  const socket = join(dir, 'redis.sock');
  let proc: ReturnType<typeof launch> | undefined;
  return {
    db: { ...base('redis'), host: socket },
    dir,
    logTail: () => tail(logFile),
    start: async () => {
      if (who) await chown(join(dir, 'dump.rdb'), who.uid, who.gid);
      // port 0: no TCP at all; it loads dump.rdb from `dir` and never writes it back.
      const args = ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--dir', dir, '--dbfilename', 'dump.rdb', '--save', '', '--appendonly', 'no'];
      proc = launch(server, args, who, dir, logFile);
      await readyOrKilled('the throw-away redis-server', proc, logFile, async () => {
        const answer = await execa(cli, ['-s', socket, 'PING'], { reject: false, env: { PATH: options.path }, extendEnv: false, timeout: 10_000 });
        return answer.exitCode === 0 && answer.stdout.trim() === 'PONG';
      });
    },
    stop: async () => {
      await stopProcess(proc, 'SIGTERM');
      await remove();
    },
  };
}
