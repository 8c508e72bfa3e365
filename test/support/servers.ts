import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, closeSync, existsSync, openSync, readFileSync, readSync, fstatSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { freePort } from './ports.ts';
import { findBinary } from './require-binary.ts';

// Throw-away PostgreSQL, MariaDB and Redis servers for integration tests: each on a free 127.0.0.1
// port, in its own mkdtemp dir, password required over TCP, gone after stop() or when the test
// process dies (a process 'exit' hook, and setpriv --pdeathsig for deaths no hook sees).

const HOST = '127.0.0.1' as const;
// Generous: three test files may be starting servers at once on a 2-core machine.
const READY_TIMEOUT_MS = 30_000;
// initdb / mariadb-install-db take under a second alone; allow for a loaded machine.
const INIT_TIMEOUT_MS = 60_000;
// A fast shutdown takes well under a second; past this the server is SIGKILLed.
const STOP_TIMEOUT_MS = 15_000;
// A helper query against a local server; bounded so a wedged server fails the test instead of hanging it.
const QUERY_TIMEOUT_MS = 60_000;
// A readiness probe of a local server answers in milliseconds; a foreign listener on a stolen port may never answer.
const PROBE_TIMEOUT_MS = 5_000;
// How often readiness is probed while a server starts.
const POLL_INTERVAL_MS = 50;
// How much of a server's log is quoted when it fails to start.
const LOG_TAIL_BYTES = 4_000;
// Another process can take the port between freePort() and the server's bind: try a new one.
const PORT_ATTEMPTS = 3;
// Dedicated OS user created when the distribution's service user is absent and we are root.
const FALLBACK_ACCOUNT = 'planb-test';
// Randomly generated passwords use base64url: no quote, colon, backslash or space to escape anywhere.
const PASSWORD_BYTES = 18;

// What every throw-away server gives a test.
export type TestServer = {
  readonly host: typeof HOST;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  // The server's data directory (inside tempDir, except a Redis started from a caller's dir).
  readonly dataDir: string;
  // The fresh mkdtemp dir holding data, sockets, configuration and the log; removed by stop().
  readonly tempDir: string;
  readonly logFile: string;
  readonly pid: number;
  // Fast shutdown, wait for exit, remove tempDir. Safe to call twice and after kill().
  stop(): Promise<void>;
  // SIGKILL the server and everything it started, as if it died mid-dump; stop() still cleans up.
  kill(): Promise<void>;
};

// A PostgreSQL superuser `postgres` with a password; host connections use scram-sha-256, no unix socket.
export type PostgresServer = TestServer & {
  // The directory of this server's own tools (pg_dump, pg_restore, psql of the same major).
  readonly binDir: string;
  // A 0600 passfile with this server's password, for clients a test runs itself.
  readonly passFile: string;
  // Runs psql -XAtq with ON_ERROR_STOP; returns stdout (tuples only, unaligned).
  sql(query: string, database?: string): Promise<string>;
  createDatabase(name: string): Promise<void>;
};

// The job's variables for this server, its own client tools first on PATH; DB_NAME and the storage
// are the test's.
export function postgresJobEnv(pg: PostgresServer): Record<string, string> {
  return { PATH: `${pg.binDir}:${process.env.PATH ?? ''}`, DB_TYPE: 'postgresql', DB_HOST: pg.host, DB_PORT: String(pg.port), DB_USERNAME: pg.user, DB_PASSWORD: pg.password };
}

// A MariaDB with user `planb` (all privileges) reachable over TCP; `root` has the same password.
export type MariadbServer = TestServer & {
  // Runs the mariadb client in batch mode without column names; returns stdout.
  sql(query: string, database?: string): Promise<string>;
  createDatabase(name: string): Promise<void>;
};

// A Redis with requirepass and no persistence of its own.
export type RedisServer = TestServer & {
  // Its unix socket (mode 0700, in tempDir), besides TCP on `port`.
  readonly socket: string;
  // Runs redis-cli -e with the password in its env; returns stdout, rejects on an error reply.
  cli(...args: string[]): Promise<string>;
};

// Start Redis from an existing RDB: it loads `dir`/`dbfilename` and never writes it back.
export type RedisOptions = { dir?: string; dbfilename?: string };

type Account = { uid: number; gid: number };
type Exit = { code: number | null; signal: NodeJS.Signals | null; error?: Error };
type Proc = { child: ChildProcess; pid: number; exit: Exit | undefined; exited: Promise<Exit> };
type Live = { tempDir: string; pid?: number; release?: () => void };

// Everything this process started and has not cleaned up yet, for the 'exit' hook.
const live = new Set<Live>();
let exitHookInstalled = false;

function track(entry: Live): Live {
  if (!exitHookInstalled) {
    process.on('exit', cleanUpEverything);
    exitHookInstalled = true;
  }
  live.add(entry);
  return entry;
}

// Synchronous by necessity: it runs in process 'exit', after a test forgot stop() or the run crashed.
function cleanUpEverything(): void {
  for (const entry of live) {
    if (entry.pid !== undefined) killGroup(entry.pid, 'SIGKILL');
    entry.release?.();
    rmSync(entry.tempDir, { recursive: true, force: true, maxRetries: 5 });
  }
  live.clear();
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  // 0, 1 or -1 would signal our own group, init or everything: only a real server pid may pass.
  if (!Number.isInteger(pid) || pid <= 1) return;
  try {
    process.kill(-pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

function newPassword(): string {
  return randomBytes(PASSWORD_BYTES).toString('base64url');
}

function required(name: string): string {
  const path = findBinary(name);
  if (path === undefined) throw new Error(`${name} not found; install it with: sudo bash test/support/ensure-system-packages.sh`);
  return path;
}

// Server binaries refuse to run as root: use the distribution's service user, or a dedicated one.
async function serviceAccount(preferred: string): Promise<Account | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const found = (await lookupAccount(preferred)) ?? (await lookupAccount(FALLBACK_ACCOUNT));
  if (found) return found;
  const created = await execa('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', FALLBACK_ACCOUNT], { reject: false });
  // A parallel test file may have created it first; only a still-missing user is an error.
  const account = await lookupAccount(FALLBACK_ACCOUNT);
  if (!account) throw new Error(`no ${preferred} user and useradd ${FALLBACK_ACCOUNT} failed: ${created.stderr}`);
  return account;
}

async function lookupAccount(name: string): Promise<Account | undefined> {
  const result = await execa('getent', ['passwd', name], { reject: false });
  if (result.exitCode === 2) return undefined; // getent: key not found
  if (result.failed) throw new Error(`getent passwd ${name} failed: ${result.shortMessage}`);
  const [, , uid, gid] = result.stdout.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

async function makeTempDir(engine: string, account: Account | undefined): Promise<Live> {
  const tempDir = await mkdtemp(join(tmpdir(), `planb-${engine}-`));
  if (account) chownSync(tempDir, account.uid, account.gid);
  return track({ tempDir });
}

// A 0600 file, owned by the server's account when it is the server that reads it.
function writePrivate(path: string, content: string, account?: Account): void {
  writeFileSync(path, content, { mode: 0o600 });
  if (account) chownSync(path, account.uid, account.gid);
}

// setpriv drops to the account and asks the kernel to SIGKILL the server when this process dies.
function wrap(file: string, args: readonly string[], account: Account | undefined): [string, string[]] {
  const setpriv = findBinary('setpriv');
  if (setpriv === undefined) {
    if (account) throw new Error('setpriv (util-linux) is needed to run a server as another user');
    return [file, [...args]];
  }
  const credentials = account ? [`--reuid=${account.uid}`, `--regid=${account.gid}`, '--clear-groups'] : [];
  return [setpriv, [...credentials, '--pdeathsig=KILL', '--', file, ...args]];
}

function serverEnv(home: string): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', HOME: home, LC_ALL: 'C' };
}

function clientEnv(extra: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin', ...extra };
}

async function runOnce(what: string, file: string, args: readonly string[], cwd: string, account: Account | undefined): Promise<void> {
  const [command, argv] = wrap(file, args, account);
  const result = await execa(command, argv, { cwd, env: serverEnv(cwd), extendEnv: false, reject: false, all: true, timeout: INIT_TIMEOUT_MS });
  if (result.failed) throw new Error(`${what} failed: ${result.shortMessage}\n${result.all.slice(-LOG_TAIL_BYTES)}`);
}

// The server runs in its own process group (so kill() reaches its children), logs to logFile and
// does not keep the test process alive: a forgotten server is reaped by the exit hook instead of hanging the run.
function spawnServer(file: string, args: readonly string[], cwd: string, logFile: string, account: Account | undefined): Proc {
  const [command, argv] = wrap(file, args, account);
  const log = openSync(logFile, 'a', 0o600);
  let child: ChildProcess;
  try {
    child = spawn(command, argv, { cwd, env: serverEnv(cwd), detached: true, stdio: ['ignore', log, log] });
  } finally {
    closeSync(log);
  }
  child.unref();
  const proc: Proc = {
    child,
    pid: child.pid ?? 0, // 0 only when the spawn failed; 'error' follows and killGroup ignores 0
    exit: undefined,
    exited: new Promise<Exit>((resolve) => {
      child.once('exit', (code, signal) => resolve((proc.exit = { code, signal })));
      child.once('error', (error) => resolve((proc.exit = { code: null, signal: null, error })));
    }),
  };
  return proc;
}

function readLog(logFile: string, from: number): string {
  let fd: number;
  try {
    fd = openSync(logFile, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw error;
  }
  try {
    const size = fstatSync(fd).size;
    const start = Math.max(from, size - LOG_TAIL_BYTES);
    const buffer = Buffer.alloc(Math.max(0, size - start));
    readSync(fd, buffer, 0, buffer.length, start);
    return buffer.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

function logSize(logFile: string): number {
  try {
    const fd = openSync(logFile, 'r');
    try {
      return fstatSync(fd).size;
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
}

async function exitedWithin(proc: Proc, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<boolean>((resolve) => {
    timer = setTimeout(resolve, ms, false);
  });
  try {
    return await Promise.race([proc.exited.then(() => true), timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

function describeExit(exit: Exit): string {
  if (exit.error) return `could not be started (${exit.error.message})`;
  return exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

// Raised while starting; `portTaken` tells the caller a retry on another port may succeed.
class ServerStartError extends Error {
  readonly portTaken: boolean;
  constructor(message: string, portTaken: boolean) {
    super(message);
    this.name = 'ServerStartError';
    this.portTaken = portTaken;
  }
}

// What one readiness probe found; `refused` fails the start at once (our own password was refused).
type ProbeResult = { ready: boolean; refused?: string };
type Probe = (port: number, signal: AbortSignal) => Promise<ProbeResult>;

// Probes until ready. Each probe races the server's exit: when the server died (its port was taken),
// the probe may be talking to whoever took the port, so the exit is the news, not the probe's answer.
async function waitUntilReady(what: string, proc: Proc, logFile: string, logStart: number, probe: (signal: AbortSignal) => Promise<ProbeResult>): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    const controller = new AbortController();
    const found = proc.exit ? { ready: false } : await Promise.race([probe(controller.signal), proc.exited.then(() => ({ ready: false }))]);
    controller.abort(); // ends a probe that lost the race
    if (proc.exit) {
      const log = readLog(logFile, logStart);
      throw new ServerStartError(`${what} ${describeExit(proc.exit)} before it was ready; log tail:\n${log}`, /address already in use/i.test(log));
    }
    if (found.refused !== undefined) throw new ServerStartError(`${what} refused the test credentials: ${found.refused}`, false);
    if (found.ready) return;
    if (Date.now() > deadline) {
      throw new ServerStartError(`${what} was not ready after ${READY_TIMEOUT_MS} ms; log tail:\n${readLog(logFile, logStart)}`, false);
    }
    await sleep(POLL_INTERVAL_MS);
  }
}

async function forceStop(proc: Proc): Promise<void> {
  killGroup(proc.pid, 'SIGKILL');
  if (!(await exitedWithin(proc, STOP_TIMEOUT_MS))) throw new Error(`pid ${proc.pid} survived SIGKILL for ${STOP_TIMEOUT_MS} ms`);
}

type Launched = { proc: Proc; port: number };

// Picks a free port, starts, waits; retries on a port someone else took meanwhile.
async function launchOnFreePort(
  what: string,
  entry: Live,
  logFile: string,
  start: (port: number) => Proc,
  probe: Probe,
): Promise<Launched> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const logStart = logSize(logFile);
    const proc = start(port);
    entry.pid = proc.pid;
    try {
      await waitUntilReady(`${what} on ${HOST}:${port}`, proc, logFile, logStart, (signal) => probe(port, signal));
      return { proc, port };
    } catch (error) {
      await forceStop(proc);
      entry.release?.();
      entry.pid = undefined;
      if (!(error instanceof ServerStartError && error.portTaken && attempt < PORT_ATTEMPTS)) throw error;
    }
  }
}

// stop() and kill() shared by every server; `release` frees what a SIGKILLed server leaves behind.
function lifecycle(entry: Live, proc: Proc, stopSignal: NodeJS.Signals): Pick<TestServer, 'stop' | 'kill'> {
  let stopping: Promise<void> | undefined;
  return {
    kill: async () => {
      if (proc.exit) return;
      await forceStop(proc);
    },
    stop: () => {
      stopping ??= (async () => {
        if (!proc.exit) {
          proc.child.kill(stopSignal); // the leader only: it shuts its own children down
          if (!(await exitedWithin(proc, STOP_TIMEOUT_MS))) await forceStop(proc);
        }
        killGroup(proc.pid, 'SIGKILL'); // stragglers of a server that died abruptly
        entry.release?.();
        live.delete(entry);
        await rm(entry.tempDir, { recursive: true, force: true, maxRetries: 5 });
      })();
      return stopping;
    },
  };
}

async function startSafely<T>(entry: Live, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    if (entry.pid !== undefined) killGroup(entry.pid, 'SIGKILL');
    entry.release?.();
    live.delete(entry);
    await rm(entry.tempDir, { recursive: true, force: true, maxRetries: 5 });
    throw error;
  }
}

function quoteIdentifier(name: string, quote: '"' | '`'): string {
  return quote + name.replaceAll(quote, quote + quote) + quote;
}

// PostgreSQL keeps a small SysV segment that a SIGKILLed postmaster cannot remove; its id is on line 7 of postmaster.pid.
function releasePostgresSharedMemory(dataDir: string): void {
  let lines: string[];
  try {
    lines = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // clean shutdown removed it
    throw error;
  }
  const shmId = lines[6]?.trim().split(/\s+/)[1];
  if (shmId === undefined || !/^\d+$/.test(shmId)) return;
  // A non-zero status means the segment is already gone: nothing is left to free.
  spawnSync('ipcrm', ['-m', shmId], { stdio: 'ignore' });
}

function postmasterReady(dataDir: string): boolean {
  try {
    return readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[7]?.trim() === 'ready';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false; // not written yet
    throw error;
  }
}

// A fresh PostgreSQL cluster: initdb --no-sync, fsync off, listening only on 127.0.0.1 with scram-sha-256.
export async function startPostgres(): Promise<PostgresServer> {
  // initdb, postgres and psql of one major: Debian keeps them together under /usr/lib/postgresql/<major>/bin.
  const binDir = dirname(realpathSync(required('initdb')));
  const postgres = join(binDir, 'postgres');
  const psql = existsSync(join(binDir, 'psql')) ? join(binDir, 'psql') : required('psql');
  const account = await serviceAccount('postgres');
  const entry = await makeTempDir('postgres', account);
  const { tempDir } = entry;
  return startSafely(entry, async () => {
    const user = 'postgres';
    const password = newPassword();
    const dataDir = join(tempDir, 'data');
    const logFile = join(tempDir, 'postgres.log');
    const passFile = join(tempDir, 'pgpass');
    const pwFile = join(tempDir, 'initdb-password');
    writePrivate(pwFile, `${password}\n`, account);
    writePrivate(passFile, `*:*:*:${user}:${password}\n`);
    await runOnce('initdb', join(binDir, 'initdb'), [
      `--pgdata=${dataDir}`, `--username=${user}`, `--pwfile=${pwFile}`,
      '--auth-host=scram-sha-256', '--auth-local=scram-sha-256',
      '--encoding=UTF8', '--locale=C', '--no-sync', '--no-instructions',
    ], tempDir, account);
    rmSync(pwFile);
    entry.release = () => releasePostgresSharedMemory(dataDir);
    const { proc, port } = await launchOnFreePort('postgres', entry, logFile, (port) => spawnServer(postgres, [
      '-D', dataDir, '-p', String(port),
      '-c', `listen_addresses=${HOST}`, '-c', 'unix_socket_directories=',
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
    ], tempDir, logFile, account), () => Promise.resolve({ ready: postmasterReady(dataDir) }));
    const sql = async (query: string, database = 'postgres'): Promise<string> => {
      const result = await execa(psql, [
        '-X', '-A', '-t', '-q', '-w', '-v', 'ON_ERROR_STOP=1',
        '-h', HOST, '-p', String(port), '-U', user, '-d', database, '-c', query,
      ], { env: clientEnv({ PGPASSFILE: passFile, PGCONNECT_TIMEOUT: '10' }), extendEnv: false, timeout: QUERY_TIMEOUT_MS });
      return result.stdout;
    };
    return {
      host: HOST, port, user, password, dataDir, tempDir, logFile, pid: proc.pid, binDir, passFile,
      sql,
      createDatabase: async (name) => {
        await sql(`CREATE DATABASE ${quoteIdentifier(name, '"')}`);
      },
      ...lifecycle(entry, proc, 'SIGINT'), // SIGINT = PostgreSQL's fast shutdown
    };
  });
}

// Options that make a throw-away MariaDB start fast and behave the same on every machine.
const MARIADB_OPTIONS = [
  '--innodb-buffer-pool-size=32M', '--innodb-log-file-size=16M', '--innodb-doublewrite=0',
  '--innodb-flush-log-at-trx-commit=0', '--innodb-use-native-aio=0', // io_uring/libaio fail in some sandboxes
  '--character-set-server=utf8mb4', '--collation-server=utf8mb4_general_ci',
] as const;

function mariadbInitSql(password: string): string {
  // Runs in bootstrap, where grant statements work only after FLUSH PRIVILEGES. install-db creates
  // password-less root accounts for 127.0.0.1, ::1 and the host name: drop them, then add ours.
  return [
    'FLUSH PRIVILEGES;',
    "DELETE FROM mysql.global_priv WHERE Host <> 'localhost';",
    "DELETE FROM mysql.proxies_priv WHERE Host <> 'localhost';",
    'FLUSH PRIVILEGES;',
    `ALTER USER 'root'@'localhost' IDENTIFIED BY '${password}';`,
    `CREATE USER 'root'@'${HOST}' IDENTIFIED BY '${password}';`,
    `GRANT ALL PRIVILEGES ON *.* TO 'root'@'${HOST}' WITH GRANT OPTION;`,
    `CREATE USER 'planb'@'${HOST}' IDENTIFIED BY '${password}';`,
    `GRANT ALL PRIVILEGES ON *.* TO 'planb'@'${HOST}' WITH GRANT OPTION;`,
    '',
  ].join('\n');
}

// A fresh MariaDB: mariadb-install-db, then mariadbd on 127.0.0.1 with a socket in the temp dir.
export async function startMariadb(): Promise<MariadbServer> {
  const mariadbd = required('mariadbd');
  const installDb = required('mariadb-install-db');
  const client = required('mariadb');
  const account = await serviceAccount('mysql');
  const entry = await makeTempDir('mariadb', account);
  const { tempDir } = entry;
  return startSafely(entry, async () => {
    const user = 'planb';
    const password = newPassword();
    const dataDir = join(tempDir, 'data');
    const logFile = join(tempDir, 'mariadb.log');
    const initFile = join(tempDir, 'init.sql');
    const clientConfig = join(tempDir, 'client.cnf');
    writePrivate(initFile, mariadbInitSql(password), account);
    await runOnce('mariadb-install-db', installDb, [
      '--no-defaults', `--datadir=${dataDir}`, '--auth-root-authentication-method=normal',
      '--skip-test-db', '--skip-name-resolve', `--extra-file=${initFile}`, `--tmpdir=${tempDir}`, ...MARIADB_OPTIONS,
    ], tempDir, account);
    rmSync(initFile);
    const writeClientConfig = (port: number): void =>
      writePrivate(clientConfig, `[client]\nuser=${user}\npassword=${password}\nhost=${HOST}\nport=${port}\nprotocol=TCP\nconnect-timeout=5\n`);
    const probe: Probe = async (port, signal) => {
      writeClientConfig(port);
      const result = await execa(client, [`--defaults-file=${clientConfig}`, '--batch', '-e', 'SELECT 1'], {
        reject: false, timeout: PROBE_TIMEOUT_MS, cancelSignal: signal, extendEnv: false, env: clientEnv({}),
      });
      return { ready: result.exitCode === 0, ...(/Access denied/.test(result.stderr) ? { refused: result.stderr } : {}) };
    };
    const { proc, port } = await launchOnFreePort('mariadbd', entry, logFile, (port) => spawnServer(mariadbd, [
      '--no-defaults', `--datadir=${dataDir}`, `--port=${port}`, `--bind-address=${HOST}`,
      `--socket=${join(tempDir, 'mariadbd.sock')}`, `--pid-file=${join(tempDir, 'mariadbd.pid')}`,
      `--tmpdir=${tempDir}`, '--skip-name-resolve', ...MARIADB_OPTIONS,
    ], tempDir, logFile, account), probe);
    writeClientConfig(port);
    const sql = async (query: string, database?: string): Promise<string> => {
      const result = await execa(client, [
        `--defaults-file=${clientConfig}`, '--batch', '--skip-column-names',
        ...(database === undefined ? [] : [`--database=${database}`]), '-e', query,
      ], { timeout: QUERY_TIMEOUT_MS, extendEnv: false, env: clientEnv({}) });
      return result.stdout;
    };
    return {
      host: HOST, port, user, password, dataDir, tempDir, logFile, pid: proc.pid,
      sql,
      createDatabase: async (name) => {
        await sql(`CREATE DATABASE ${quoteIdentifier(name, '`')}`);
      },
      ...lifecycle(entry, proc, 'SIGTERM'),
    };
  });
}

// Quotes a value for redis.conf (its parser understands the escapes JSON.stringify emits for paths).
function redisConfValue(value: string): string {
  return JSON.stringify(value);
}

// A fresh Redis with requirepass and `save ""`; optionally loading an existing RDB (restore tests).
export async function startRedis(options: RedisOptions = {}): Promise<RedisServer> {
  const redisServer = required('redis-server');
  const redisCli = required('redis-cli');
  const entry = await makeTempDir('redis', undefined);
  const { tempDir } = entry;
  return startSafely(entry, async () => {
    const user = 'default';
    const password = newPassword();
    const dataDir = options.dir ?? tempDir;
    const dbfilename = options.dbfilename ?? 'dump.rdb';
    const logFile = join(tempDir, 'redis.log');
    const configFile = join(tempDir, 'redis.conf');
    const socket = join(tempDir, 'redis.sock');
    const cli = async (...args: string[]): Promise<string> => {
      const result = await execa(redisCli, ['-e', '-h', HOST, '-p', String(port), ...args], {
        env: clientEnv({ REDISCLI_AUTH: password }), extendEnv: false, timeout: QUERY_TIMEOUT_MS,
      });
      return result.stdout;
    };
    const probe: Probe = async (port, signal) => {
      const result = await execa(redisCli, ['-e', '-h', HOST, '-p', String(port), 'PING'], {
        env: clientEnv({ REDISCLI_AUTH: password }), extendEnv: false, reject: false, timeout: PROBE_TIMEOUT_MS, cancelSignal: signal,
      });
      const refused = /WRONGPASS|NOAUTH/.test(result.stderr + result.stdout);
      // LOADING instead of PONG while a large RDB is read
      return { ready: result.exitCode === 0 && result.stdout.trim() === 'PONG', ...(refused ? { refused: result.stderr } : {}) };
    };
    const { proc, port } = await launchOnFreePort('redis-server', entry, logFile, (port) => {
      writePrivate(configFile, [
        `bind ${HOST}`, `port ${port}`, `unixsocket ${redisConfValue(socket)}`, 'unixsocketperm 700', 'protected-mode yes', `requirepass ${password}`,
        `dir ${redisConfValue(dataDir)}`, `dbfilename ${redisConfValue(dbfilename)}`,
        'save ""', 'appendonly no', 'daemonize no', 'logfile ""', '',
      ].join('\n'));
      return spawnServer(redisServer, [configFile], tempDir, logFile, undefined);
    }, probe);
    return {
      host: HOST, port, user, password, dataDir, tempDir, logFile, pid: proc.pid,
      socket, cli,
      ...lifecycle(entry, proc, 'SIGTERM'),
    };
  });
}

// An etcd member with authentication on: user `root` (role root) with a password, client and peer
// URLs on free loopback ports.
export type EtcdServer = TestServer & {
  readonly endpoint: string;
  // Runs etcdctl as root (the password in its env); returns stdout.
  ctl(args: readonly string[], input?: string): Promise<string>;
  // Every key and value, sorted by key.
  pairs(): Promise<[string, string][]>;
};

// Start on an existing data directory (a restored snapshot) instead of a fresh one; `password` is the
// root password that directory already holds.
export type EtcdOptions = { dataDir?: string; name?: string; password?: string };

// The member name and cluster token every test etcd uses: a restore must name the same member.
export const ETCD_MEMBER = 'planb';

// A throw-away etcd: a fresh member with auth enabled, or one started on a restored data directory.
export async function startEtcd(options: EtcdOptions = {}): Promise<EtcdServer> {
  const etcdBin = required('etcd');
  const etcdctl = required('etcdctl');
  const entry = await makeTempDir('etcd', undefined);
  const { tempDir } = entry;
  return startSafely(entry, async () => {
    const user = 'root';
    const password = options.password ?? newPassword();
    const dataDir = options.dataDir ?? join(tempDir, 'data');
    const logFile = join(tempDir, 'etcd.log');
    let authOn = options.dataDir !== undefined;
    const run = async (port: number, args: readonly string[], input?: string, signal?: AbortSignal) =>
      execa(etcdctl, [`--endpoints=http://${HOST}:${port}`, '--dial-timeout=5s', ...args], {
        env: clientEnv(authOn ? { ETCDCTL_USER: user, ETCDCTL_PASSWORD: password } : {}),
        extendEnv: false, reject: false, timeout: QUERY_TIMEOUT_MS, input: input ?? '', ...(signal && { cancelSignal: signal }),
      });
    const probe: Probe = async (port, signal) => {
      const result = await run(port, ['endpoint', 'health'], undefined, signal);
      const refused = /authentication failed|invalid auth/i.test(result.stderr);
      return { ready: result.exitCode === 0, ...(refused ? { refused: result.stderr } : {}) };
    };
    // The peer URL is only bound, never used: a single-member cluster.
    const peer = `http://${HOST}:${await freePort()}`;
    const { proc, port } = await launchOnFreePort('etcd', entry, logFile, (port) => {
      return spawnServer(etcdBin, [
        `--name=${options.name ?? ETCD_MEMBER}`, `--data-dir=${dataDir}`,
        `--listen-client-urls=http://${HOST}:${port}`, `--advertise-client-urls=http://${HOST}:${port}`,
        `--listen-peer-urls=${peer}`, `--initial-advertise-peer-urls=${peer}`, `--initial-cluster=${options.name ?? ETCD_MEMBER}=${peer}`,
        '--logger=zap', '--log-outputs=stderr',
      ], tempDir, logFile, undefined);
    }, probe);
    const ctl = async (args: readonly string[], input?: string): Promise<string> => {
      const result = await run(port, args, input);
      if (result.exitCode !== 0) throw new Error(`etcdctl ${args[0] ?? ''} ${args[1] ?? ''} failed: ${result.stderr}`);
      return result.stdout;
    };
    if (!authOn) {
      await ctl(['user', 'add', user, '--interactive=false'], `${password}\n`);
      await ctl(['user', 'grant-role', user, 'root']);
      await ctl(['auth', 'enable']);
      authOn = true;
    }
    const pairs = async (): Promise<[string, string][]> => {
      const out = JSON.parse(await ctl(['get', '', '--prefix', '--write-out=json'])) as { kvs?: { key: string; value: string }[] };
      const decode = (text: string) => Buffer.from(text, 'base64').toString('latin1');
      return (out.kvs ?? []).map((kv): [string, string] => [decode(kv.key), decode(kv.value)]).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    };
    return {
      host: HOST, port, user, password, dataDir, tempDir, logFile, pid: proc.pid,
      endpoint: `http://${HOST}:${port}`,
      ctl, pairs,
      ...lifecycle(entry, proc, 'SIGTERM'),
    };
  });
}
