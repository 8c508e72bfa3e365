// Throw-away servers for verification, started by the job itself from the server binaries in its own
// image: a private temp dir (0700), no TCP listener (a unix socket inside that dir only), no password
// (nothing else can reach the socket), removed with everything in it by stop().
//
// PostgreSQL and MariaDB refuse to run as root. When the job runs as root, the servers run as
// VERIFY_RUN_AS (uid:gid), which owns the temp dir; without it the verification cannot run and says
// so. The images run the job as a non-root user, where nothing changes user.
import { spawn, type ChildProcess } from 'node:child_process';
import { chown, mkdtemp, readFile, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import type { DbConfig, DbType } from './engines/types.ts';
import { credentials } from './engines/etcd.ts';
import { VerifyUnavailableError } from './errors.ts';
import type { Logger } from './log.ts';
import { TIMED_OUT, withTimeout } from './timeout.ts';
import { which } from './which.ts';

// initdb and mariadb-install-db take seconds; allow for a loaded machine.
const INIT_TIMEOUT_MS = 120_000;
// Time for a server to accept connections (Redis loads the whole RDB first).
const READY_TIMEOUT_MS = 300_000;
const POLL_INTERVAL_MS = 100;
// A fast shutdown takes well under a second; past this the server is killed.
const STOP_TIMEOUT_MS = 15_000;
// How much of a server's log is quoted when it fails.
const LOG_TAIL_BYTES = 2_000;

export type ScratchOptions = {
  path: string;
  parentDir: string | undefined;
  runAs: { uid: number; gid: number } | undefined;
  log: Logger;
};

// A running throw-away server: `db` connects to it; `dir` is where a restore may put files (the RDB).
export type Scratch = {
  db: DbConfig;
  dir: string;
  // Starts the server once its data is in place (Redis loads the RDB written into `dir`).
  start(): Promise<void>;
  stop(): Promise<void>;
  // The server's log tail, to quote when something fails.
  logTail(): Promise<string>;
};

type Account = { uid: number; gid: number } | undefined;

function need(names: readonly string[], path: string): string {
  const found = which(names, path);
  if (!found) throw new VerifyUnavailableError(`cannot verify: none of ${names.join(', ')} is on PATH (the server binaries must be in the image)`);
  return found.file;
}

// Who runs the server: ourselves when not root, VERIFY_RUN_AS when root.
function account(options: ScratchOptions, server: string): Account {
  if (process.getuid?.() !== 0) return undefined;
  if (!options.runAs) {
    throw new VerifyUnavailableError(`cannot verify: the job runs as root and ${server} refuses to; set VERIFY_RUN_AS=uid:gid (a non-root user) or run the job as a non-root user`);
  }
  return options.runAs;
}

function base(type: DbType): DbConfig {
  return { type, host: undefined, port: undefined, name: undefined, username: undefined, password: undefined, tls: undefined, tlsCaFile: undefined, allDatabases: false, extraArgs: [], sqliteQuickCheck: false };
}

async function run(file: string, args: readonly string[], who: Account, cwd: string, what: string): Promise<void> {
  const result = await execa(file, args, { cwd, env: { PATH: process.env.PATH ?? '', LC_ALL: 'C', HOME: cwd }, extendEnv: false, reject: false, all: true, timeout: INIT_TIMEOUT_MS, ...who });
  if (result.failed) throw new VerifyUnavailableError(`cannot verify: ${what} failed: ${result.shortMessage}\n${(result.all ?? '').slice(-LOG_TAIL_BYTES)}`);
}

// A server process whose output goes to a log file in its dir.
function launch(file: string, args: readonly string[], who: Account, cwd: string, logFile: string): { child: ChildProcess; exited: Promise<number | null> } {
  const child = spawn('/bin/sh', ['-c', 'exec "$0" "$@" >>"$PLANB_LOG" 2>&1', file, ...args], {
    cwd, env: { PATH: process.env.PATH ?? '', LC_ALL: 'C', HOME: cwd, PLANB_LOG: logFile }, stdio: 'ignore', ...who,
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.once('error', () => resolve(null));
  });
  return { child, exited };
}

async function tail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.slice(-LOG_TAIL_BYTES);
}

async function waitReady(what: string, exited: Promise<number | null>, logFile: string, probe: () => Promise<boolean>): Promise<void> {
  let gone = false;
  void exited.then(() => (gone = true));
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (gone) throw new ScratchExit(`${what} exited before it was ready; its log:\n${await tail(logFile)}`);
    if (await probe()) return;
    if (Date.now() > deadline) throw new VerifyUnavailableError(`cannot verify: ${what} was not ready after ${READY_TIMEOUT_MS} ms; its log:\n${await tail(logFile)}`);
    await sleep(POLL_INTERVAL_MS);
  }
}

// Waits for a server started on data already in place; a server that never gets ready is killed.
async function readyOrKilled(what: string, proc: ReturnType<typeof launch>, logFile: string, probe: () => Promise<boolean>): Promise<void> {
  try {
    await waitReady(what, proc.exited, logFile, probe);
  } catch (error) {
    await stopProcess(proc, 'SIGKILL');
    throw error;
  }
}

// The server stopped while starting: for Redis that is the RDB it was given, for others the host.
export class ScratchExit extends VerifyUnavailableError {}

async function stopProcess(proc: { child: ChildProcess; exited: Promise<number | null> } | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill(signal);
  if ((await withTimeout(proc.exited, STOP_TIMEOUT_MS)) === TIMED_OUT) proc.child.kill('SIGKILL');
  await proc.exited;
}

// The binaries each type's throw-away server needs, or why there is none.
const SERVERS = {
  postgresql: ['initdb'],
  mysql: ['mysqld', 'mariadbd'],
  mariadb: ['mariadbd', 'mysqld'],
  redis: ['redis-server'],
  sqlite: ['sqlite3'],
  etcd: ['etcd', 'etcdctl'],
  mongodb: 'mongod and mongosh are not part of this image',
  arangodb: 'the job starts no throw-away arangod',
  cassandra: 'the job starts no throw-away Cassandra node',
  mssql: 'the job starts no throw-away SQL Server',
} as const satisfies Record<DbType, readonly string[] | string>;

// Starts (or prepares) a throw-away server for `type`; DB_NAME and DB_ALL_DATABASES come from `source`.
export async function startScratch(source: DbConfig, options: ScratchOptions): Promise<Scratch> {
  const type = source.type;
  const binaries = SERVERS[type];
  if (typeof binaries === 'string') throw new VerifyUnavailableError(`cannot verify ${type}: ${binaries}`);
  need(binaries, options.path);
  // sqlite has no server; etcd runs as root too.
  const who = type === 'sqlite' || type === 'etcd' ? undefined : account(options, binaries[0] ?? type);
  const dir = await mkdtemp(join(options.parentDir ?? tmpdir(), 'planb-verify-'));
  if (who) await chown(dir, who.uid, who.gid);
  const logFile = join(dir, 'server.log');
  const remove = () => rm(dir, { recursive: true, force: true, maxRetries: 3 });
  try {
    switch (type) {
      case 'sqlite':
        return { db: { ...base(type), name: join(dir, 'verify.db') }, dir, start: () => Promise.resolve(), stop: remove, logTail: () => Promise.resolve('') };
      case 'postgresql':
        return await postgres(source, dir, who, options, logFile, remove);
      case 'mysql':
      case 'mariadb':
        return await mariadb(source, dir, who, options, logFile, remove);
      case 'redis':
        return redis(dir, who, options, logFile, remove);
      case 'etcd':
        return etcd(source, dir, options, logFile, remove);
      default:
        throw new VerifyUnavailableError(`cannot verify ${type}: no throw-away server`);
    }
  } catch (error) {
    await remove();
    throw error;
  }
}

async function postgres(source: DbConfig, dir: string, who: Account, options: ScratchOptions, logFile: string, remove: () => Promise<void>): Promise<Scratch> {
  // initdb and postgres of one major live together (Debian: /usr/lib/postgresql/<major>/bin).
  const binDir = dirname(await realpath(need(['initdb'], options.path)));
  const data = join(dir, 'data');
  await run(join(binDir, 'initdb'), [`--pgdata=${data}`, '--username=planb', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions'], who, dir, 'initdb');
  const proc = launch(join(binDir, 'postgres'), [
    '-D', data, '-p', '5432', '-c', "listen_addresses=", '-c', `unix_socket_directories=${dir}`,
    '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'shared_buffers=32MB', '-c', 'max_connections=20',
  ], who, dir, logFile);
  const ready = async () => (await readFile(join(data, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[7]?.trim() === 'ready';
  try {
    await waitReady('the throw-away postgres', proc.exited, logFile, ready);
  } catch (error) {
    await stopProcess(proc, 'SIGKILL');
    throw error;
  }
  const db: DbConfig = { ...base('postgresql'), host: dir, port: 5432, username: 'planb', name: source.allDatabases ? undefined : (source.name ?? 'restored'), allDatabases: source.allDatabases };
  if (!source.allDatabases) {
    const psql = need(['psql'], options.path);
    const created = await execa(psql, ['-X', '-q', '--no-password', `--host=${dir}`, '--port=5432', '--username=planb', '--dbname=postgres', '-c', `CREATE DATABASE "${(db.name ?? '').replaceAll('"', '""')}"`], { reject: false, env: { PATH: options.path }, extendEnv: false });
    if (created.failed) {
      await stopProcess(proc, 'SIGINT');
      throw new VerifyUnavailableError(`cannot verify: creating the database in the throw-away postgres failed: ${created.stderr}`);
    }
  }
  return {
    db, dir, start: () => Promise.resolve(), logTail: () => tail(logFile),
    stop: async () => {
      await stopProcess(proc, 'SIGINT'); // SIGINT = PostgreSQL's fast shutdown
      await remove();
    },
  };
}

async function mariadb(source: DbConfig, dir: string, who: Account, options: ScratchOptions, logFile: string, remove: () => Promise<void>): Promise<Scratch> {
  const server = need(['mariadbd', 'mysqld'], options.path);
  const install = need(['mariadb-install-db', 'mysql_install_db'], options.path);
  const client = need(['mariadb', 'mysql'], options.path);
  const data = join(dir, 'data');
  const socket = join(dir, 'mysqld.sock');
  // Small and fast: nothing of this server must survive a crash.
  const tuning = ['--innodb-buffer-pool-size=64M', '--innodb-log-file-size=48M', '--innodb-doublewrite=0', '--innodb-flush-log-at-trx-commit=0', '--innodb-use-native-aio=0', '--character-set-server=utf8mb4'];
  await run(install, ['--no-defaults', `--datadir=${data}`, '--auth-root-authentication-method=normal', '--skip-test-db', '--skip-name-resolve', `--tmpdir=${dir}`, ...tuning], who, dir, 'mariadb-install-db');
  const proc = launch(server, ['--no-defaults', `--datadir=${data}`, '--skip-networking', `--socket=${socket}`, `--pid-file=${join(dir, 'mysqld.pid')}`, `--tmpdir=${dir}`, '--skip-name-resolve', ...tuning], who, dir, logFile);
  const sql = (statement: string) => execa(client, ['--no-defaults', `--socket=${socket}`, '--user=root', '--batch', '-e', statement], { reject: false, env: { PATH: options.path }, extendEnv: false, timeout: 10_000 });
  try {
    await waitReady('the throw-away mariadbd', proc.exited, logFile, async () => (await sql('SELECT 1')).exitCode === 0);
  } catch (error) {
    await stopProcess(proc, 'SIGKILL');
    throw error;
  }
  const db: DbConfig = { ...base(source.type), host: socket, username: 'root', name: source.allDatabases ? undefined : (source.name ?? 'restored'), allDatabases: source.allDatabases };
  if (!source.allDatabases) {
    const created = await sql(`CREATE DATABASE \`${(db.name ?? '').replaceAll('`', '``')}\``);
    if (created.failed) {
      await stopProcess(proc, 'SIGTERM');
      throw new VerifyUnavailableError(`cannot verify: creating the database in the throw-away mariadbd failed: ${created.stderr}`);
    }
  }
  return {
    db, dir, start: () => Promise.resolve(), logTail: () => tail(logFile),
    stop: async () => {
      await stopProcess(proc, 'SIGTERM');
      await remove();
    },
  };
}

function redis(dir: string, who: Account, options: ScratchOptions, logFile: string, remove: () => Promise<void>): Scratch {
  const server = need(['redis-server'], options.path);
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

// etcd on the data directory the restore wrote into `dir`/data: client and peer traffic on unix
// sockets inside `dir` (etcd's unix URLs name a file in its working directory, in host:port form).
// The snapshot carries the source's users and auth setting: the source's credentials count its keys.
function etcd(source: DbConfig, dir: string, options: ScratchOptions, logFile: string, remove: () => Promise<void>): Scratch {
  const server = need(['etcd'], options.path);
  const cli = need(['etcdctl'], options.path);
  const client = 'client.sock:1';
  const db: DbConfig = { ...base('etcd'), host: join(dir, client), username: source.username, password: source.password };
  let proc: ReturnType<typeof launch> | undefined;
  return {
    db,
    dir,
    logTail: () => tail(logFile),
    start: async () => {
      // The restore names the member `default` (etcdutl's default); its peer URL is never dialled alone.
      const args = ['--name=default', `--data-dir=${join(dir, 'data')}`, `--listen-client-urls=unix://${client}`, `--advertise-client-urls=unix://${client}`, '--listen-peer-urls=unix://peer.sock:2'];
      proc = launch(server, args, undefined, dir, logFile);
      await readyOrKilled('the throw-away etcd', proc, logFile, async () => {
        const health = [`--endpoints=unix://${db.host ?? ''}`, '--dial-timeout=2s', 'endpoint', 'health'];
        const answer = await execa(cli, health, { reject: false, env: { PATH: options.path, ...credentials(db) }, extendEnv: false, timeout: 10_000 });
        return answer.exitCode === 0;
      });
    },
    stop: async () => {
      await stopProcess(proc, 'SIGTERM');
      await remove();
    },
  };
}
