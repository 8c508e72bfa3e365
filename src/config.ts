// The only reader of the environment. Turns DB_*, STORAGE_*, BACKUP_*, CALLBACK_* and the platform's
// own variables into one typed Config, or throws a ConfigError naming every bad variable at once.
import { readFileSync } from 'node:fs';
import { bool, cleanEnv, EnvMissingError, num, str, url } from 'envalid';
import { ConfigError } from './errors.ts';
import { count, duration, list, size, stringMap } from './config-specs.ts';
import { parseRecipients } from './pipeline/encrypt.ts';
import { ENGINES } from './engines/registry.ts';
import { DB_TYPES, TLS_MODES, type Compression, type DbConfig, type DbType } from './engines/types.ts';
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

// Where the backup goes and how it is shaped.
export type BackupConfig = {
  prefix: string;
  compression: Compression;
  compressionLevel: number | undefined;
  timeoutMs: number | undefined;
  expectedSize: number | undefined;
  // age public keys the stream is encrypted to; undefined: not encrypted.
  encryption: { recipients: readonly string[] } | undefined;
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

export type StorageConfig = CommonStorageSettings & { type: StorageType; settings: Record<string, unknown> };

// Everything a run needs, validated.
export type Config = {
  db: DbConfig;
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
      DB_USERNAME: str({ default: undefined }),
      DB_PASSWORD: str({ default: undefined }),
      DB_TLS: str({ choices: TLS_MODES, default: undefined }),
      DB_TLS_CA_FILE: str({ default: undefined }),
      DB_ALL_DATABASES: bool({ default: false }),
      DB_EXTRA_ARGS: list({ default: [] }),
      STORAGE_TYPE: str({ choices: STORAGE_TYPES }),
      STORAGE_BUCKET: str(),
      STORAGE_ENDPOINT: url({ default: undefined }),
      STORAGE_REGION: str({ default: undefined }),
      BACKUP_PATH: str({ default: '' }),
      BACKUP_COMPRESSION: str({ choices: ['zstd', 'gzip', 'none'] as const, default: 'zstd' }),
      BACKUP_COMPRESSION_LEVEL: num({ default: undefined }),
      BACKUP_TIMEOUT: duration({ default: undefined }),
      BACKUP_EXPECTED_SIZE: size({ default: undefined }),
      BACKUP_ENCRYPTION_RECIPIENTS: str({ default: undefined }),
      STORAGE_RETAIN_DAYS: count({ default: undefined }),
      STORAGE_RETAIN_MODE: str({ choices: [...RETAIN_MODES, ...RETAIN_MODES.map((mode) => mode.toUpperCase())], default: undefined }),
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
  const engine = dbType ? ENGINES[dbType] : undefined;
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
  };
  if (engine) problems.push(...engine.validate(db));
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
  const encryption = encryptionOf(base.BACKUP_ENCRYPTION_RECIPIENTS, env.BACKUP_ENCRYPTION_RECIPIENTS_FILE, problems);
  const retention = retentionOf(base.STORAGE_RETAIN_DAYS, base.STORAGE_RETAIN_MODE, driver, storageType, problems);

  if (problems.length > 0 || !storageType || !dbType) throw new ConfigError(problems);

  const secretNames = [...BASE_SECRETS, ...Object.values(STORAGE_DRIVERS).flatMap((d) => d.secrets)];
  return {
    db,
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
      .flatMap((value) => [value, ...value.split(/\s+/).filter((part) => part.length >= 8)]),
  };
}

// Every secret variable that may be given as X_FILE, from the base contract and every storage target.
export function secretVariables(): string[] {
  return [...BASE_SECRETS, ...Object.values(STORAGE_DRIVERS).flatMap((d) => d.secrets)];
}

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
