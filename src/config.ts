// The only reader of the environment. Turns DB_*, STORAGE_*, BACKUP_*, CALLBACK_* and the platform's
// own variables into one typed Config, or throws a ConfigError naming every bad variable at once.
import { accessSync, closeSync, constants, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { bool, cleanEnv, EnvMissingError, num, str } from 'envalid';
import { ConfigError } from './errors.ts';
import { redactValue } from './redact.ts';
import { count, duration, durationUpTo, headerMap, httpUrl, list, nameList, size } from './config-specs.ts';
import { parseRecipients } from './pipeline/encrypt.ts';
import { DB_TYPES, ENGINES } from './engines/registry.ts';
import { TLS_MODES, type Compression, type DbConfig, type DbType, type DumpEngine } from './engines/types.ts';
import { STORAGE_DRIVERS, STORAGE_TYPES, type StorageType } from './storage/registry.ts';
import type { CommonStorageSettings } from './storage/types.ts';

// Secrets of the base contract; each storage target adds its own. Only these may come from X_FILE:
// a generic *_FILE reader would let anyone who sets variables read any file.
const BASE_SECRETS = ['DB_PASSWORD', 'CALLBACK_SECRET'] as const;
// Variables that are not secret but may also come from X_FILE (a list of keys is easier to mount than
// to quote); never scrubbed from logs, since the log names them on purpose.
const PUBLIC_FILE_VARIABLES = ['BACKUP_ENCRYPTION_RECIPIENTS'] as const;
// S3 Object Lock's modes; GCS and Azure call the same two `Unlocked` and `Locked`.
export const RETAIN_MODES = ['governance', 'compliance'] as const;
// A century: longer is a typo, and a locked object cannot be deleted before its date.
const MAX_RETAIN_DAYS = 36_500;

// No byte stored for this long means the store stopped answering: fail (and release the database)
// instead of holding the dump's transaction open until BACKUP_TIMEOUT or the platform's own timeout.
const DEFAULT_STALL_TIMEOUT_MS = 5 * 60_000;
// A store that accepts no byte for hours is down; a longer setting would only hide that.
const stallTimeout = durationUpTo(6 * 3_600_000, '6h');

// Where the backup goes and how it is shaped.
export type BackupConfig = {
  prefix: string;
  compression: Compression;
  compressionLevel: number | undefined;
  timeoutMs: number | undefined;
  // Longest time with bytes waiting and none accepted by the store (BACKUP_STALL_TIMEOUT).
  stallTimeoutMs: number;
  expectedSize: number | undefined;
  // age public keys the stream is encrypted to; undefined: not encrypted.
  encryption: { recipients: readonly string[] } | undefined;
};

// What this run does: back up (and maybe verify), restore an object, or verify an object.
export const JOB_MODES = ['backup', 'restore', 'verify'] as const;
export type JobMode = (typeof JOB_MODES)[number];

// JOB_MODE and the settings of restore and verify.
export type JobConfig = {
  mode: JobMode;
  // The object to restore or verify (a full key, or `latest`: the newest of this database under BACKUP_PATH).
  restoreKey: string | undefined;
  // Whose newest backup RESTORE_KEY=latest picks: a DB_NAME as it was backed up (default: DB_NAME).
  restoreSource: string | undefined;
  // Restore into a target that already holds tables (or keys, or a file).
  restoreForce: boolean;
  // Redis: the file the restored RDB is written to (a Redis server loads it from its `dir`).
  restoreRdbPath: string | undefined;
  // The age identity file an encrypted (`.age`) object is decrypted with; `age` reads it, the job never does.
  identityFile: string | undefined;
  // etcd: the new member's data directory the snapshot is restored into (it must not exist yet).
  restoreDataDir: string | undefined;
  // Backup mode: verify the object right after storing it.
  verifyAfterBackup: boolean;
  // Backup mode: capture row/key counts at dump time (always on with verifyAfterBackup).
  captureFacts: boolean;
  // When the job runs as root: the uid:gid a throw-away server is started as (servers refuse root).
  verifyRunAs: { uid: number; gid: number } | undefined;
  // Parent of the throw-away server's private temp dir; default the system temp dir.
  verifyDir: string | undefined;
};

// The signed callback to the control plane; undefined when CALLBACK_URL is not set.
export type CallbackConfig = {
  url: string;
  secrets: readonly string[];
  timeoutMs: number;
  retries: number;
  headers: Readonly<Record<string, string>>;
};

// The scheduler's context, put on every log line and in the callback.
export type Platform = {
  cloudRun?: { job: string; execution: string | undefined; taskIndex: number | undefined; taskAttempt: number | undefined };
  kubernetes?: { namespace: string | undefined; pod: string | undefined; job: string | undefined };
};

// DB_NAMES: the databases of one server that a run backs up one by one, and this task's share.
export type DatabaseSelection = {
  // The names given (unique, as written), or '*': every database the user can dump, asked from the server.
  names: readonly string[] | '*';
  // Names left out (DB_EXCLUDE), after discovery too.
  exclude: readonly string[];
  // This task takes the databases at positions index, index + count, … of the sorted list.
  task: { index: number; count: number };
};

export type StorageConfig = CommonStorageSettings & { type: StorageType; settings: Record<string, unknown> };

// Everything a run needs, validated.
export type Config = {
  job: JobConfig;
  db: DbConfig;
  // Set with DB_NAMES: then `db.name` is unset and each database gets a run of its own.
  databases: DatabaseSelection | undefined;
  storage: StorageConfig;
  backup: BackupConfig;
  callback: CallbackConfig | undefined;
  logLevel: string;
  platform: Platform;
  // The only variables the dump tool and compressor inherit (plus their own): no secrets of ours.
  toolEnv: Readonly<Record<string, string>>;
  // Literal secret values, to scrub from any text that leaves the process.
  secrets: readonly string[];
  // Not fatal, for the log: variables with our prefixes that nothing reads (a typo, most likely).
  warnings: readonly string[];
};

// Variables the dump tool inherits from ours: enough to find binaries and speak the locale.
const TOOL_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR'] as const;

type Env = Readonly<Record<string, string | undefined>>;

const DB_TYPE_ALIASES: Record<string, DbType> = { postgres: 'postgresql', pg: 'postgresql' };

// Reads and validates the configuration from an environment (process.env in main.ts).
export function loadConfig(source: Env): Config {
  const problems: string[] = [];
  const env = resolveSecretFiles(source, problems);

  // Spread: envalid's strict proxy throws on reading a variable that failed validation; we want to
  // carry on and collect every problem, so keep a plain copy of what did validate.
  const baseSpec = {
      JOB_MODE: str({ choices: JOB_MODES, default: 'backup' }),
      RESTORE_KEY: str({ default: undefined }),
      RESTORE_FORCE: bool({ default: false }),
      RESTORE_SOURCE: str({ default: undefined }),
      RESTORE_RDB_PATH: str({ default: undefined }),
      RESTORE_IDENTITY_FILE: str({ default: undefined }),
      RESTORE_DATA_DIR: str({ default: undefined }),
      BACKUP_VERIFY: bool({ default: false }),
      BACKUP_FACTS: bool({ default: false }),
      VERIFY_RUN_AS: str({ default: undefined }),
      VERIFY_DIR: str({ default: undefined }),
      DB_TYPE: str({ choices: [...DB_TYPES, ...Object.keys(DB_TYPE_ALIASES)], desc: 'database type' }),
      DB_HOST: str({ default: undefined }),
      DB_PORT: num({ default: undefined }),
      DB_NAME: str({ default: undefined }),
      DB_NAMES: nameList({ default: undefined }),
      DB_EXCLUDE: nameList({ default: [] }),
      DB_USERNAME: str({ default: undefined }),
      DB_PASSWORD: str({ default: undefined }),
      DB_TLS: str({ choices: TLS_MODES, default: undefined }),
      DB_TLS_CA_FILE: str({ default: undefined }),
      DB_ALL_DATABASES: bool({ default: false }),
      DB_EXTRA_ARGS: list({ default: [] }),
      DB_SQLITE_QUICK_CHECK: bool({ default: true }),
      STORAGE_TYPE: str({ choices: STORAGE_TYPES }),
      STORAGE_BUCKET: str(),
      STORAGE_ENDPOINT: httpUrl({ default: undefined }),
      STORAGE_REGION: str({ default: undefined }),
      BACKUP_PATH: str({ default: '' }),
      BACKUP_COMPRESSION: str({ choices: ['zstd', 'gzip', 'none'] as const, default: 'zstd' }),
      BACKUP_COMPRESSION_LEVEL: num({ default: undefined }),
      BACKUP_TIMEOUT: duration({ default: undefined }),
      BACKUP_STALL_TIMEOUT: stallTimeout({ default: DEFAULT_STALL_TIMEOUT_MS }),
      BACKUP_EXPECTED_SIZE: size({ default: undefined }),
      BACKUP_ENCRYPTION_RECIPIENTS: str({ default: undefined }),
      STORAGE_RETAIN_DAYS: count({ default: undefined }),
      STORAGE_RETAIN_MODE: str({ choices: [...RETAIN_MODES, ...RETAIN_MODES.map((mode) => mode.toUpperCase())], default: undefined }),
      CALLBACK_URL: httpUrl({ default: undefined }),
      CALLBACK_SECRET: str({ default: undefined }),
      CALLBACK_TIMEOUT: duration({ default: 15_000 }),
      CALLBACK_RETRIES: count({ default: 5 }),
      CALLBACK_HEADERS: headerMap({ default: {} }),
      LOG_LEVEL: str({ choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], default: 'info' }),
      CLOUD_RUN_JOB: str({ default: undefined }),
      CLOUD_RUN_EXECUTION: str({ default: undefined }),
      CLOUD_RUN_TASK_INDEX: num({ default: undefined }),
      CLOUD_RUN_TASK_ATTEMPT: num({ default: undefined }),
      CLOUD_RUN_TASK_COUNT: num({ default: undefined }),
      JOB_COMPLETION_INDEX: num({ default: undefined }),
      JOB_COMPLETION_COUNT: num({ default: undefined }),
      K8S_NAMESPACE: str({ default: undefined }),
      K8S_POD_NAME: str({ default: undefined }),
      K8S_JOB_NAME: str({ default: undefined }),
  };
  const report = (errors: Partial<Record<string, Error>>) => problems.push(...describe(errors, env));
  const base = { ...cleanEnv(env, baseSpec, { reporter: ({ errors }) => report(errors) }) };
  const warnings = unknownVariables(source, [...Object.keys(baseSpec), ...Object.values(STORAGE_DRIVERS).flatMap((d) => Object.keys(d.env))]);

  const storageType = base.STORAGE_TYPE as StorageType | undefined;
  const driver = storageType ? STORAGE_DRIVERS[storageType] : undefined;
  const problemsBeforeDriver = problems.length;
  const settings = driver ? { ...cleanEnv(env, driver.env, { reporter: ({ errors }) => report(errors) }) } : {};
  const driverSettingsValid = problems.length === problemsBeforeDriver;

  const dbType = base.DB_TYPE ? (DB_TYPE_ALIASES[base.DB_TYPE] ?? (base.DB_TYPE as DbType)) : undefined;
  const engine: DumpEngine | undefined = dbType ? ENGINES[dbType] : undefined;
  const db: DbConfig = {
    type: dbType ?? 'postgresql',
    host: base.DB_HOST,
    port: base.DB_PORT ?? engine?.defaultPort,
    name: base.DB_NAME,
    username: base.DB_USERNAME,
    password: base.DB_PASSWORD,
    tls: base.DB_TLS,
    tlsCaFile: base.DB_TLS_CA_FILE,
    allDatabases: base.DB_ALL_DATABASES,
    extraArgs: base.DB_EXTRA_ARGS ?? [],
    sqliteQuickCheck: base.DB_SQLITE_QUICK_CHECK,
  };
  const databases = databaseSelection(base, dbType, engine, problems);
  // With DB_NAMES each run gets one of the names; the engine checks the rest of DB_* once.
  const names = databases && !engine?.namesUnsupported ? (databases.names === '*' ? ['*'] : databases.names) : [db.name];
  if (engine) problems.push(...new Set(names.flatMap((name) => engine.validate({ ...db, name }))));
  // A connection string would put its password in the log and in the object key, and would override
  // the DB_* settings behind their back.
  for (const name of names) {
    if (name !== undefined && (/^[a-z][a-z0-9+.-]*:\/\//i.test(name) || (dbType === 'postgresql' && name.includes('=')))) {
      problems.push(`${databases ? 'DB_NAMES' : 'DB_NAME'} looks like a connection string; give the database name only, and the server and credentials in DB_HOST, DB_PORT, DB_USERNAME and DB_PASSWORD`);
      break;
    }
  }
  if (db.port !== undefined && (!Number.isInteger(db.port) || db.port < 1 || db.port > 65_535)) {
    problems.push(`DB_PORT: ${db.port} is not a TCP port (1-65535)`);
  }

  const compressionLevel = base.BACKUP_COMPRESSION_LEVEL;
  if (compressionLevel !== undefined && !validLevel(base.BACKUP_COMPRESSION, compressionLevel)) {
    problems.push(`BACKUP_COMPRESSION_LEVEL: ${compressionLevel} is out of range for ${base.BACKUP_COMPRESSION} (zstd 1-19, gzip 1-9)`);
  }

  const callbackSecrets = (base.CALLBACK_SECRET ?? '').split(/\s+/).filter(Boolean);
  if (base.CALLBACK_URL !== undefined) {
    if (callbackSecrets.length === 0) problems.push('CALLBACK_SECRET (or CALLBACK_SECRET_FILE) is required when CALLBACK_URL is set');
    for (const [index, secret] of callbackSecrets.entries()) {
      const problem = checkWebhookSecret(secret);
      if (problem) problems.push(`CALLBACK_SECRET: secret #${index + 1} ${problem}`);
    }
  }

  // envalid takes an empty value as given; an empty bucket would be the current folder for local.
  if (base.STORAGE_BUCKET === '') problems.push('STORAGE_BUCKET is required (it is empty)');
  const prefix = normalizePrefix(base.BACKUP_PATH, problems);
  const encryption = encryptionOf(base.BACKUP_ENCRYPTION_RECIPIENTS, env.BACKUP_ENCRYPTION_RECIPIENTS_FILE, problems);
  const retention = retentionOf(base.STORAGE_RETAIN_DAYS, base.STORAGE_RETAIN_MODE, driver, storageType, problems);
  if (driver && driverSettingsValid && base.STORAGE_BUCKET) {
    // A target checks the combinations of its settings when it opens (without any request): now,
    // so that they fail with everything else, before the dump.
    try {
      driver.open({ bucket: base.STORAGE_BUCKET, endpoint: base.STORAGE_ENDPOINT, region: base.STORAGE_REGION }, settings);
    } catch (error) {
      if (!(error instanceof ConfigError)) throw error;
      problems.push(...error.problems);
    }
  }
  const job = jobConfig(base, dbType, encryption !== undefined, problems);

  if (problems.length > 0 || !storageType || !dbType) throw new ConfigError(problems, warnings);

  const secretNames = [...BASE_SECRETS, ...Object.values(STORAGE_DRIVERS).flatMap((d) => d.secrets)];
  return {
    job,
    db,
    databases,
    storage: {
      type: storageType,
      bucket: base.STORAGE_BUCKET,
      endpoint: base.STORAGE_ENDPOINT,
      region: base.STORAGE_REGION,
      retention,
      settings: { ...settings },
    },
    backup: {
      prefix,
      compression: base.BACKUP_COMPRESSION,
      compressionLevel,
      timeoutMs: base.BACKUP_TIMEOUT,
      stallTimeoutMs: base.BACKUP_STALL_TIMEOUT,
      expectedSize: base.BACKUP_EXPECTED_SIZE,
      encryption,
    },
    callback:
      base.CALLBACK_URL === undefined
        ? undefined
        : {
            url: base.CALLBACK_URL,
            secrets: callbackSecrets,
            timeoutMs: base.CALLBACK_TIMEOUT,
            retries: base.CALLBACK_RETRIES,
            headers: base.CALLBACK_HEADERS,
          },
    logLevel: base.LOG_LEVEL,
    platform: {
      ...(base.CLOUD_RUN_JOB !== undefined && {
        cloudRun: {
          job: base.CLOUD_RUN_JOB,
          execution: base.CLOUD_RUN_EXECUTION,
          taskIndex: base.CLOUD_RUN_TASK_INDEX,
          taskAttempt: base.CLOUD_RUN_TASK_ATTEMPT,
        },
      }),
      ...((base.K8S_POD_NAME ?? base.K8S_JOB_NAME) !== undefined && {
        kubernetes: { namespace: base.K8S_NAMESPACE, pod: base.K8S_POD_NAME, job: base.K8S_JOB_NAME },
      }),
    },
    toolEnv: Object.fromEntries(
      TOOL_ENV.map((name) => [name, env[name]]).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
    ),
    secrets: secretNames.map((name) => env[name]).filter((value): value is string => typeof value === 'string' && value.length > 0)
      .flatMap((value) => [value, ...value.split(/\s+/).filter((part) => part.length >= 8), ...linesOf(value)]),
    warnings,
  };
}

// The lines of a multi-line secret: a tool's stderr is read line by line, so a secret with a line
// break can only ever be matched there piece by piece.
function linesOf(value: string): string[] {
  const lines = value.split(/\r?\n/);
  return lines.length > 1 ? lines : [];
}

// JOB_MODE and its settings; each combination that cannot work is a problem named by its variables.
function jobConfig(
  base: { JOB_MODE: JobMode; RESTORE_KEY?: string | undefined; RESTORE_SOURCE?: string | undefined; RESTORE_FORCE: boolean; RESTORE_RDB_PATH?: string | undefined; RESTORE_IDENTITY_FILE?: string | undefined; RESTORE_DATA_DIR?: string | undefined; BACKUP_VERIFY: boolean; BACKUP_FACTS: boolean; VERIFY_RUN_AS?: string | undefined; VERIFY_DIR?: string | undefined },
  dbType: DbType | undefined,
  encrypted: boolean,
  problems: string[],
): JobConfig {
  const mode = base.JOB_MODE ?? 'backup';
  const key = base.RESTORE_KEY?.trim();
  if (mode !== 'backup' && !key) problems.push(`RESTORE_KEY is required with JOB_MODE=${mode} (an object key, or latest)`);
  if (mode === 'backup' && key) problems.push('RESTORE_KEY applies only to JOB_MODE=restore or verify');
  if (key && (key.startsWith('/') || key.split('/').includes('..'))) problems.push('RESTORE_KEY is an object key: no leading / and no .. segments');
  if (base.RESTORE_SOURCE !== undefined && key !== 'latest') problems.push('RESTORE_SOURCE applies only to RESTORE_KEY=latest');
  if (mode !== 'backup' && base.BACKUP_VERIFY) problems.push(`BACKUP_VERIFY applies only to JOB_MODE=backup (JOB_MODE=verify verifies an existing object)`);
  if (mode === 'restore' && dbType === 'redis' && !base.RESTORE_RDB_PATH) {
    problems.push('RESTORE_RDB_PATH is required to restore redis: the RDB file is written there for a Redis server to load (a running server cannot be loaded from outside)');
  }
  if (mode === 'restore' && dbType === 'etcd' && !base.RESTORE_DATA_DIR) {
    problems.push('RESTORE_DATA_DIR is required to restore etcd: the snapshot becomes a new member\'s data directory there (a running member cannot be loaded from outside)');
  }
  const restorer = dbType && ENGINES[dbType].restorer;
  if (restorer?.countUnsupported && (mode === 'verify' || base.BACKUP_VERIFY || base.BACKUP_FACTS)) {
    problems.push(`JOB_MODE=verify, BACKUP_VERIFY and BACKUP_FACTS are not available for ${dbType}: ${restorer.countUnsupported}`);
  }
  if (restorer?.restoreUnsupported && mode === 'restore') problems.push(`JOB_MODE=restore is not available for ${dbType}: ${restorer.restoreUnsupported}`);
  if (base.RESTORE_RDB_PATH && !(mode === 'restore' && dbType === 'redis')) problems.push('RESTORE_RDB_PATH applies only to JOB_MODE=restore with DB_TYPE=redis');
  const identityFile = base.RESTORE_IDENTITY_FILE?.trim() || undefined;
  if (identityFile !== undefined) {
    if (mode === 'backup') problems.push('RESTORE_IDENTITY_FILE applies only to JOB_MODE=restore or verify: a backup job never holds a decryption key');
    else problems.push(...identityFileProblems(identityFile));
  }
  if (mode === 'backup' && base.BACKUP_VERIFY && encrypted) {
    problems.push('BACKUP_VERIFY cannot verify an encrypted backup: the backup job never holds a decryption key; verify it in a JOB_MODE=verify run given RESTORE_IDENTITY_FILE');
  }
  if (base.RESTORE_DATA_DIR && !(mode === 'restore' && dbType === 'etcd')) problems.push('RESTORE_DATA_DIR applies only to JOB_MODE=restore with DB_TYPE=etcd');
  let verifyRunAs: JobConfig['verifyRunAs'];
  if (base.VERIFY_RUN_AS !== undefined) {
    const match = /^(\d+)(?::(\d+))?$/.exec(base.VERIFY_RUN_AS.trim());
    if (!match || Number(match[1]) === 0) problems.push('VERIFY_RUN_AS must be a non-root uid or uid:gid, e.g. 10001:10001');
    else verifyRunAs = { uid: Number(match[1]), gid: Number(match[2] ?? match[1]) };
  }
  return {
    mode,
    restoreKey: key || undefined,
    restoreSource: base.RESTORE_SOURCE,
    restoreForce: base.RESTORE_FORCE,
    restoreRdbPath: base.RESTORE_RDB_PATH,
    identityFile,
    restoreDataDir: base.RESTORE_DATA_DIR,
    verifyAfterBackup: base.BACKUP_VERIFY,
    captureFacts: base.BACKUP_FACTS || base.BACKUP_VERIFY,
    verifyRunAs,
    verifyDir: base.VERIFY_DIR,
  };
}

// RESTORE_IDENTITY_FILE must be a file age can read. Only its metadata is looked at: age reads the
// secret keys itself, so they never enter this process.
function identityFileProblems(file: string): string[] {
  try {
    if (!statSync(file).isFile()) return [`RESTORE_IDENTITY_FILE: ${file} is not a regular file (an age identity file, from age-keygen)`];
    accessSync(file, constants.R_OK);
    return [];
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return [`RESTORE_IDENTITY_FILE: ${file} ${code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'is not readable by the job' : `cannot be read (${code ?? 'error'})`}`];
  }
}

// The variables DB_NAMES and the task split read, checked against each other.
type SelectionVariables = {
  DB_NAME: string | undefined;
  DB_NAMES: string[] | undefined;
  DB_EXCLUDE: string[];
  DB_ALL_DATABASES: boolean;
  CLOUD_RUN_TASK_INDEX: number | undefined;
  CLOUD_RUN_TASK_COUNT: number | undefined;
  JOB_COMPLETION_INDEX: number | undefined;
  JOB_COMPLETION_COUNT: number | undefined;
};

// DB_NAMES and DB_EXCLUDE, and the task split, or undefined when DB_NAMES is not set.
function databaseSelection(base: SelectionVariables, dbType: DbType | undefined, engine: DumpEngine | undefined, problems: string[]): DatabaseSelection | undefined {
  const names = base.DB_NAMES;
  if (names === undefined) {
    if (base.DB_EXCLUDE.length > 0) problems.push('DB_EXCLUDE applies only with DB_NAMES');
    return undefined;
  }
  if (base.DB_NAME !== undefined) problems.push('DB_NAMES and DB_NAME exclude each other: DB_NAMES lists every database to back up');
  if (base.DB_ALL_DATABASES) problems.push('DB_NAMES and DB_ALL_DATABASES=true exclude each other: DB_NAMES stores each database as its own object');
  const everything = names.length === 1 && names[0] === '*';
  if (!everything && names.includes('*')) problems.push('DB_NAMES: * means every database and stands alone; it cannot be mixed with names');
  if (engine?.namesUnsupported) problems.push(`DB_NAMES does not apply to ${dbType}: ${engine.namesUnsupported}`);
  else if (everything && engine && !engine.discover) problems.push(`DB_NAMES=* does not apply to ${dbType}: there is no server to list the databases; list them in DB_NAMES`);
  return { names: everything ? '*' : names, exclude: base.DB_EXCLUDE, task: taskShare(base, problems) };
}

// Which share of the databases this task takes: Cloud Run's task index and count, or a Kubernetes
// Indexed Job's completion index and the count its manifest passes; one task takes everything.
function taskShare(base: SelectionVariables, problems: string[]): { index: number; count: number } {
  const sources = [
    { index: 'CLOUD_RUN_TASK_INDEX', count: 'CLOUD_RUN_TASK_COUNT' },
    { index: 'JOB_COMPLETION_INDEX', count: 'JOB_COMPLETION_COUNT' },
  ] as const;
  const given = sources.filter((source) => base[source.index] !== undefined || base[source.count] !== undefined);
  if (given.length > 1) problems.push('CLOUD_RUN_TASK_INDEX/COUNT and JOB_COMPLETION_INDEX/COUNT are both set; a task runs on one platform');
  const source = given[0];
  if (!source) return { index: 0, count: 1 };
  const index = base[source.index];
  const count = base[source.count];
  if (index === undefined) problems.push(`${source.count} is set without ${source.index}`);
  if (count === undefined) problems.push(`${source.index} is set without ${source.count} (set it to the number of tasks${source.count === 'JOB_COMPLETION_COUNT' ? ", the Job's completions" : ''})`);
  if (index === undefined || count === undefined) return { index: 0, count: 1 };
  const before = problems.length;
  if (!Number.isInteger(count) || count < 1) problems.push(`${source.count}: ${count} is not a whole number of tasks (1 or more)`);
  if (!Number.isInteger(index) || index < 0) problems.push(`${source.index}: ${index} is not a task position (0 or more)`);
  else if (Number.isInteger(count) && index >= count) problems.push(`${source.index}: ${index} is not below ${source.count} (${count}); positions count from 0`);
  return problems.length === before ? { index, count } : { index: 0, count: 1 };
}

// Every secret variable that may be given as X_FILE, from the base contract and every storage target.
export function secretVariables(): string[] {
  return [...BASE_SECRETS, ...Object.values(STORAGE_DRIVERS).flatMap((d) => d.secrets)];
}

// A secret file is a key, a password or a service account's JSON: a few KiB. Anything larger is a
// wrong path, and reading it whole would grow the job without bound (think /dev/zero).
const MAX_SECRET_FILE_BYTES = 64 * 1024;

// Every variable that may be given as X_FILE: the secrets, and the public ones listed above.
export function fileVariables(): string[] {
  return [...secretVariables(), ...PUBLIC_FILE_VARIABLES];
}

// Copies the environment, replacing each allowed X_FILE with the file's content as X.
function resolveSecretFiles(source: Env, problems: string[]): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...source };
  for (const name of fileVariables()) {
    const path = source[`${name}_FILE`];
    if (path === undefined || path === '') continue;
    if (source[name] !== undefined && source[name] !== '') {
      problems.push(`${name} and ${name}_FILE are both set; set only one`);
      continue;
    }
    const content = readSecretFile(path);
    if (typeof content === 'string') env[name] = content.replace(/\r?\n$/, '');
    else problems.push(`${name}_FILE: cannot read ${path} (${content.problem})`);
  }
  return env;
}

// Reads a regular file of at most MAX_SECRET_FILE_BYTES. Opened without blocking, so a FIFO or a
// device never holds up the start (a FIFO with no writer would wait forever, signals or not).
function readSecretFile(path: string): string | { problem: string } {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
    const stat = fstatSync(fd);
    if (!stat.isFile()) return { problem: 'not a regular file' };
    if (stat.size > MAX_SECRET_FILE_BYTES) return { problem: `larger than ${MAX_SECRET_FILE_BYTES / 1024} KiB` };
    const buffer = Buffer.alloc(MAX_SECRET_FILE_BYTES + 1);
    let length = 0;
    while (length < buffer.length) {
      const read = readSync(fd, buffer, length, buffer.length - length, null);
      if (read === 0) break;
      length += read;
    }
    if (length > MAX_SECRET_FILE_BYTES) return { problem: `larger than ${MAX_SECRET_FILE_BYTES / 1024} KiB` };
    return buffer.subarray(0, length).toString('utf8');
  } catch (error) {
    return { problem: (error as NodeJS.ErrnoException).code ?? 'unreadable' };
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

// envalid's errors as one line per variable. A value is echoed only through redactValue: never a
// secret's, and a URL without its credentials and query.
function describe(errors: Partial<Record<string, Error>>, env: Env): string[] {
  return Object.entries(errors).map(([name, error]) => {
    if (error instanceof EnvMissingError || !error?.message) return `${name} is required`;
    const value = env[name];
    const message = value ? error.message.split(value).join(redactValue(name, value, secretVariables())) : error.message;
    return `${name}: ${message}`;
  });
}

// Variables the platform sets that share our prefixes but are not ours to read.
const PLATFORM_VARIABLES = ['JOB_COMPLETION_INDEX'];
// Prefixes of the variables this job reads: an unknown one with these is most likely a typo.
const PREFIXES = ['DB_', 'STORAGE_', 'BACKUP_', 'CALLBACK_', 'LOG_', 'RESTORE_', 'JOB_', 'GCS_', 'AZURE_STORAGE_'];

// One warning per variable that has our prefixes but that nothing reads, naming the closest known one.
function unknownVariables(source: Env, read: readonly string[]): string[] {
  const known = new Set([...read, ...secretVariables().map((name) => `${name}_FILE`), ...PLATFORM_VARIABLES]);
  return Object.keys(source)
    .filter((name) => PREFIXES.some((prefix) => name.startsWith(prefix)) && !known.has(name))
    .sort()
    .map((name) => {
      const closest = [...known].reduce((best, candidate) => (editDistance(name, candidate) < editDistance(name, best) ? candidate : best));
      return `${name} is not a variable Plan B reads (ignored); did you mean ${closest}?`;
    });
}

// Optimal string alignment distance: insertions, deletions, substitutions and swaps of neighbours.
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i += 1) {
    for (let j = 1; j <= b.length; j += 1) {
      const row = rows[i]!;
      const previous = rows[i - 1]!;
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(previous[j]! + 1, row[j - 1]! + 1, previous[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, rows[i - 2]![j - 2]! + 1);
    }
  }
  return rows[a.length]![b.length]!;
}

// Object keys may be 1024 bytes on every store; the file name we add to the prefix takes up to 128.
const MAX_PREFIX_BYTES = 1024 - 128;
// A path segment (a folder of the local target) may be 255 bytes on common filesystems.
const MAX_SEGMENT_BYTES = 255;

// BACKUP_PATH is a folder-like prefix: no leading slash, no `..`, always ending in `/` when set.
function normalizePrefix(path: string, problems: string[]): string {
  const trimmed = path.trim();
  if (trimmed === '') return '';
  if (trimmed.startsWith('/') || trimmed.split('/').some((segment) => segment === '..' || segment === '.')) {
    problems.push('BACKUP_PATH must be relative (no leading /) and contain no . or .. segments');
    return '';
  }
  if (Buffer.byteLength(trimmed) > MAX_PREFIX_BYTES || trimmed.split('/').some((segment) => Buffer.byteLength(segment) > MAX_SEGMENT_BYTES)) {
    problems.push(`BACKUP_PATH is too long (at most ${MAX_PREFIX_BYTES} bytes, ${MAX_SEGMENT_BYTES} per folder name)`);
    return '';
  }
  return trimmed.endsWith('/') ? trimmed : `${trimmed}/`;
}

// BACKUP_ENCRYPTION_RECIPIENTS as a list of age public keys; a value that is set but names none is an
// error (an empty file must not silently turn encryption off).
function encryptionOf(text: string | undefined, file: string | undefined, problems: string[]): BackupConfig['encryption'] {
  if (text === undefined) return undefined;
  const name = file === undefined || file === '' ? 'BACKUP_ENCRYPTION_RECIPIENTS' : 'BACKUP_ENCRYPTION_RECIPIENTS_FILE';
  const parsed = parseRecipients(text);
  problems.push(...parsed.problems.map((problem) => `${name}: ${problem}`));
  if (parsed.recipients.length === 0) problems.push(`${name} is set but names no age public key (age1…)`);
  return { recipients: parsed.recipients };
}

// STORAGE_RETAIN_DAYS (+ STORAGE_RETAIN_MODE) as the store's own write-once lock on every object.
function retentionOf(
  days: number | undefined,
  mode: string | undefined,
  driver: (typeof STORAGE_DRIVERS)[StorageType] | undefined,
  storageType: StorageType | undefined,
  problems: string[],
): StorageConfig['retention'] {
  if (days === undefined) {
    if (mode !== undefined) problems.push('STORAGE_RETAIN_MODE needs STORAGE_RETAIN_DAYS');
    return undefined;
  }
  if (days < 1 || days > MAX_RETAIN_DAYS) problems.push(`STORAGE_RETAIN_DAYS: ${days} is outside 1-${MAX_RETAIN_DAYS}`);
  if (driver && !driver.retention) problems.push(`STORAGE_RETAIN_DAYS: STORAGE_TYPE=${storageType} has no write-once retention (s3, gcs and azure have)`);
  return { days, mode: (mode?.toLowerCase() ?? 'governance') as (typeof RETAIN_MODES)[number] };
}

function validLevel(compression: Compression, level: number): boolean {
  if (compression === 'zstd') return Number.isInteger(level) && level >= 1 && level <= 19;
  if (compression === 'gzip') return Number.isInteger(level) && level >= 1 && level <= 9;
  return false;
}

// Standard Webhooks secrets: `whsec_` + base64 of at least 24 bytes.
function checkWebhookSecret(secret: string): string | undefined {
  if (!secret.startsWith('whsec_')) return 'must start with whsec_ (Standard Webhooks format)';
  const body = secret.slice('whsec_'.length);
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(body)) return 'is not base64 after whsec_';
  if (Buffer.from(body, 'base64').length < 24) return 'must decode to at least 24 bytes';
  return undefined;
}
