// Throw-away servers for verification, started by the job itself from the server binaries in its own
// image: a private temp dir (0700), no TCP listener (a unix socket inside that dir only), no password
// (nothing else can reach the socket), removed with everything in it by stop(). Each engine file says
// how its own server starts (its `scratch`); this module is what they share, and knows no engine.
//
// PostgreSQL and MariaDB refuse to run as root. When the job runs as root, the servers run as
// VERIFY_RUN_AS (uid:gid), which owns the temp dir; without it the verification cannot run and says
// so. The images run the job as a non-root user, where nothing changes user.
import { spawn, type ChildProcess } from 'node:child_process';
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import type { DbConfig, DbType } from './engines/types.ts';
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

// Where and as whom the servers run: the tools' PATH, VERIFY_DIR, VERIFY_RUN_AS; and the run's logger.
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

// The user a server runs as: undefined for the job's own.
export type Account = { uid: number; gid: number } | undefined;

// What startScratch gives an engine's starter: the server binary it found (the first of `binaries` on
// PATH), the private dir, who runs the server there, its log file.
export type ScratchSetup = { server: string; dir: string; who: Account; options: ScratchOptions; logFile: string; remove: () => Promise<void> };

// How an engine's throw-away server starts; startScratch checks its binaries and makes its dir first.
export type ScratchServer = {
  // The server binary, best first: the first found on PATH is started (ScratchSetup.server); the first
  // listed names the server when it refuses to run as root.
  binaries: readonly string[];
  // Nothing in it refuses root (sqlite has no server; etcd runs as root too): VERIFY_RUN_AS is not needed.
  runsAsRoot?: true;
  start(source: DbConfig, setup: ScratchSetup): Promise<Scratch> | Scratch;
};

// The first of `names` on `path`; a missing one means this image cannot verify.
export function need(names: readonly string[], path: string): string {
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

// Settings with nothing set, for a throw-away server to fill in.
export function base(type: DbType): DbConfig {
  return { type, host: undefined, port: undefined, name: undefined, username: undefined, password: undefined, tls: undefined, tlsCaFile: undefined, allDatabases: false, extraArgs: [], sqliteQuickCheck: false };
}

// Runs a setup command (initdb, mariadb-install-db) to its end; a failure means the host cannot verify.
export async function run(file: string, args: readonly string[], who: Account, cwd: string, what: string): Promise<void> {
  const result = await execa(file, args, { cwd, env: { PATH: process.env.PATH ?? '', LC_ALL: 'C', HOME: cwd }, extendEnv: false, reject: false, all: true, timeout: INIT_TIMEOUT_MS, ...who });
  if (result.failed) throw new VerifyUnavailableError(`cannot verify: ${what} failed: ${result.shortMessage}\n${(result.all ?? '').slice(-LOG_TAIL_BYTES)}`);
}

// A server process whose output goes to a log file in its dir.
export function launch(file: string, args: readonly string[], who: Account, cwd: string, logFile: string): { child: ChildProcess; exited: Promise<number | null> } {
  const child = spawn('/bin/sh', ['-c', 'exec "$0" "$@" >>"$PLANB_LOG" 2>&1', file, ...args], {
    cwd, env: { PATH: process.env.PATH ?? '', LC_ALL: 'C', HOME: cwd, PLANB_LOG: logFile }, stdio: 'ignore', ...who,
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.once('error', () => resolve(null));
  });
  return { child, exited };
}

// The end of a server's log, to quote when it fails.
export async function tail(file: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text.slice(-LOG_TAIL_BYTES);
}

// Polls `probe` until the server answers; fails when it exits first or takes too long.
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

// Waits until a started server answers `probe`; one that never gets ready is killed.
export async function readyOrKilled(what: string, proc: ReturnType<typeof launch>, logFile: string, probe: () => Promise<boolean>): Promise<void> {
  try {
    await waitReady(what, proc.exited, logFile, probe);
  } catch (error) {
    await stopProcess(proc, 'SIGKILL');
    throw error;
  }
}

// The server stopped while starting: for Redis that is the RDB it was given, for others the host.
export class ScratchExit extends VerifyUnavailableError {}

// Signals a server to stop and waits for it; past STOP_TIMEOUT_MS it is killed.
export async function stopProcess(proc: { child: ChildProcess; exited: Promise<number | null> } | undefined, signal: NodeJS.Signals): Promise<void> {
  if (!proc || proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill(signal);
  if ((await withTimeout(proc.exited, STOP_TIMEOUT_MS)) === TIMED_OUT) proc.child.kill('SIGKILL');
  await proc.exited;
}

// Starts (or prepares) `server` for `source`'s type; DB_NAME and DB_ALL_DATABASES come from `source`.
export async function startScratch(source: DbConfig, server: ScratchServer | string, options: ScratchOptions): Promise<Scratch> {
  const type = source.type;
  if (typeof server === 'string') throw new VerifyUnavailableError(`cannot verify ${type}: ${server}`);
  const binary = need(server.binaries, options.path);
  const who = server.runsAsRoot ? undefined : account(options, server.binaries[0] ?? type);
  const dir = await mkdtemp(join(options.parentDir ?? tmpdir(), 'planb-verify-'));
  if (who) await chown(dir, who.uid, who.gid);
  const logFile = join(dir, 'server.log');
  const remove = () => rm(dir, { recursive: true, force: true, maxRetries: 3 });
  try {
    return await server.start(source, { server: binary, dir, who, options, logFile, remove });
  } catch (error) {
    await remove();
    throw error;
  }
}
