// The only reader of the environment. Turns DB_*, STORAGE_*, BACKUP_*, CALLBACK_* and the platform's
// own variables into one typed Config, or throws a ConfigError naming every bad variable at once.
import { readFileSync } from 'node:fs';
import { bool, cleanEnv, EnvMissingError, num, str, url } from 'envalid';
import { ConfigError } from './errors.ts';
import { count, duration, list, nameList, size, stringMap } from './config-specs.ts';
import { ENGINES } from './engines/registry.ts';
import { DB_TYPES, TLS_MODES, type Compression, type DbConfig, type DbType, type DumpEngine } from './engines/types.ts';
import { STORAGE_DRIVERS, STORAGE_TYPES, type StorageType } from './storage/registry.ts';
import type { CommonStorageSettings } from './storage/types.ts';

// Secrets of the base contract; each storage target adds its own. Only these may come from X_FILE:
// a generic *_FILE reader would let anyone who sets variables read any file.
const BASE_SECRETS = ['DB_PASSWORD', 'CALLBACK_SECRET'] as const;

// Where the backup goes and how it is shaped.
export type BackupConfig = {
  prefix: string;
  compression: Compression;
  compressionLevel: number | undefined;
  timeoutMs: number | undefined;
  expectedSize: number | undefined;
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
  const base = {
    ...cleanEnv(
    env,
    {
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
      STORAGE_ENDPOINT: url({ default: undefined }),
      STORAGE_REGION: str({ default: undefined }),
      BACKUP_PATH: str({ default: '' }),
      BACKUP_COMPRESSION: str({ choices: ['zstd', 'gzip', 'none'] as const, default: 'zstd' }),
      BACKUP_COMPRESSION_LEVEL: num({ default: undefined }),
      BACKUP_TIMEOUT: duration({ default: undefined }),
      BACKUP_EXPECTED_SIZE: size({ default: undefined }),
      CALLBACK_URL: url({ default: undefined }),
      CALLBACK_SECRET: str({ default: undefined }),
      CALLBACK_TIMEOUT: duration({ default: 15_000 }),
      CALLBACK_RETRIES: count({ default: 5 }),
      CALLBACK_HEADERS: stringMap({ default: {} }),
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
    },
    { reporter: ({ errors }) => problems.push(...describe(errors)) },
    ),
  };

  const storageType = base.STORAGE_TYPE as StorageType | undefined;
  const driver = storageType ? STORAGE_DRIVERS[storageType] : undefined;
  const settings = driver ? { ...cleanEnv(env, driver.env, { reporter: ({ errors }) => problems.push(...describe(errors)) }) } : {};

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
    extraArgs: base.DB_EXTRA_ARGS,
    sqliteQuickCheck: base.DB_SQLITE_QUICK_CHECK,
  };
  const databases = databaseSelection(base, dbType, engine, problems);
  // With DB_NAMES each run gets one of the names; the engine checks the rest of DB_* once.
  const names = databases && !engine?.namesUnsupported ? (databases.names === '*' ? ['*'] : databases.names) : [db.name];
  if (engine) problems.push(...new Set(names.flatMap((name) => engine.validate({ ...db, name }))));
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

  const prefix = normalizePrefix(base.BACKUP_PATH, problems);

  if (problems.length > 0 || !storageType || !dbType) throw new ConfigError(problems);

  const secretNames = [...BASE_SECRETS, ...Object.values(STORAGE_DRIVERS).flatMap((d) => d.secrets)];
  return {
    db,
    databases,
    storage: {
      type: storageType,
      bucket: base.STORAGE_BUCKET,
      endpoint: base.STORAGE_ENDPOINT,
      region: base.STORAGE_REGION,
      settings: { ...settings },
    },
    backup: {
      prefix,
      compression: base.BACKUP_COMPRESSION,
      compressionLevel,
      timeoutMs: base.BACKUP_TIMEOUT,
      expectedSize: base.BACKUP_EXPECTED_SIZE,
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
      .flatMap((value) => [value, ...value.split(/\s+/).filter((part) => part.length >= 8)]),
  };
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

// Copies the environment, replacing each allowed X_FILE with the file's content as X.
function resolveSecretFiles(source: Env, problems: string[]): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...source };
  for (const name of secretVariables()) {
    const path = source[`${name}_FILE`];
    if (path === undefined || path === '') continue;
    if (source[name] !== undefined && source[name] !== '') {
      problems.push(`${name} and ${name}_FILE are both set; set only one`);
      continue;
    }
    try {
      env[name] = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
      problems.push(`${name}_FILE: cannot read ${path} (${code})`);
    }
  }
  return env;
}

// envalid's errors as one line per variable; never echoes the value (it may be a secret).
function describe(errors: Partial<Record<string, Error>>): string[] {
  return Object.entries(errors).map(([name, error]) =>
    error instanceof EnvMissingError || !error?.message ? `${name} is required` : `${name}: ${error.message}`,
  );
}

// BACKUP_PATH is a folder-like prefix: no leading slash, no `..`, always ending in `/` when set.
function normalizePrefix(path: string, problems: string[]): string {
  const trimmed = path.trim();
  if (trimmed === '') return '';
  if (trimmed.startsWith('/') || trimmed.split('/').some((segment) => segment === '..' || segment === '.')) {
    problems.push('BACKUP_PATH must be relative (no leading /) and contain no . or .. segments');
    return '';
  }
  return trimmed.endsWith('/') ? trimmed : `${trimmed}/`;
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
