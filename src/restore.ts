// JOB_MODE=restore, top to bottom: find the object (RESTORE_KEY, or the newest of this database) →
// refuse a target that already holds tables (unless RESTORE_FORCE) → stream storage → decompress →
// the stock restore tool → report (→ callback). restoreObject() is also how verify.ts loads a
// throw-away server. Never throws from runRestore: every outcome is a report.
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, open, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import type { Config } from './config.ts';
import { createSecretsDir, removeSecretsDir, startDump, toolVersion, writeCredentialFiles, type Scrub } from './dump.ts';
import { ENGINES } from './engines/registry.ts';
import { DUMP_FORMATS, type Compression, type Counts, type DbConfig, type DbType, type DumpCommand, type DumpFormat, type RunQuery } from './engines/types.ts';
import { ConfigError, DumpError, EncryptionError, StorageError } from './errors.ts';
import type { Logger } from './log.ts';
import { finishRun, type RunContext, type RunOptions, startRun } from './outcome.ts';
import { createAgeDecryptor, ENCRYPTED_EXTENSION } from './pipeline/encrypt.ts';
import { createMeter } from './pipeline/meter.ts';
import type { ObjectReport, RunReport } from './report.ts';
import { slug } from './run.ts';
import type { StorageTarget } from './storage/types.ts';
import { STORAGE_DRIVERS } from './storage/registry.ts';
import { TIMED_OUT, withTimeout } from './timeout.ts';
import { formatBytes } from './units.ts';
import { which } from './which.ts';

// A progress line at least this often on long restores.
const PROGRESS_INTERVAL_MS = 10_000;
// Suffix of the small object that carries an object's facts (facts.ts); never a backup itself.
export const FACTS_SUFFIX = '.facts.json';
// The end of every key the job writes: `-<run id>.<format>[.<compression>]` (run.ts newRunId).
const RUN_KEY_TAIL = new RegExp(`^\\d{8}T\\d{6}Z-[0-9a-f]{8}\\.(${Object.keys(DUMP_FORMATS).map((ending) => ending.slice(1)).join('|')})(\\.zst|\\.gz)?(\\.age)?$`);

const COMPRESSION_BY_SUFFIX = [['.zst', 'zstd'], ['.gz', 'gzip']] as const;

// What a key says about its object, read from the end: `.age` when encrypted, then the compression's
// suffix, then the dump format's.
export function describeKey(key: string): { compression: Compression; format: DumpFormat; encrypted: boolean } | undefined {
  const encrypted = key.endsWith(ENCRYPTED_EXTENSION);
  const plain = encrypted ? key.slice(0, -ENCRYPTED_EXTENSION.length) : key;
  const [suffix, compression] = COMPRESSION_BY_SUFFIX.find(([ending]) => plain.endsWith(ending)) ?? ['', 'none' as const];
  const raw = plain.slice(0, plain.length - suffix.length);
  const format = Object.entries(DUMP_FORMATS).find(([ending]) => raw.endsWith(ending))?.[1];
  return format === undefined ? undefined : { compression, format, encrypted };
}

// The key ending of a dump format (`.dump` for custom).
function extensionOf(format: DumpFormat): string {
  return Object.entries(DUMP_FORMATS).find(([, value]) => value === format)?.[0] ?? '';
}

// The configuration error of reading an encrypted object (or its facts) without RESTORE_IDENTITY_FILE.
export function identityRequired(key: string): ConfigError {
  return new ConfigError([`RESTORE_IDENTITY_FILE is required: ${key} is encrypted with age (give the file that holds one of its recipients' secret keys)`]);
}

// The newest backup of this database under BACKUP_PATH: keys end in a sortable run id.
export async function latestKey(config: Config, target: StorageTarget, signal: AbortSignal): Promise<string> {
  const source = { ...config.db, name: config.job.restoreSource ?? config.db.name };
  const prefix = `${config.backup.prefix}${config.db.type}-${slug(source)}-`;
  const keys = (await target.list(prefix, signal)).map((object) => object.key).filter((key) => RUN_KEY_TAIL.test(key.slice(prefix.length)));
  const newest = keys.sort((a, b) => (a.slice(prefix.length) < b.slice(prefix.length) ? -1 : 1)).at(-1);
  if (newest === undefined) throw new StorageError(`RESTORE_KEY=latest: no backup of ${config.db.type} ${slug(source)} under ${prefix}`, 'missing');
  return newest;
}

export type RestoreRequest = {
  target: StorageTarget;
  key: string;
  // The database to load; for sqlite DB_NAME is the file, for redis `rdbPath` is, for etcd `dataDir`.
  db: DbConfig;
  rdbPath?: string | undefined;
  dataDir?: string | undefined;
  force: boolean;
  // RESTORE_IDENTITY_FILE: decrypts a `.age` object.
  identityFile: string | undefined;
  // A throw-away server of the job's own (verify): no ownership or grants of the source.
  scratch: boolean;
  toolEnv: Readonly<Record<string, string>>;
  log: Logger;
  scrub: Scrub;
  signal: AbortSignal;
};

export type RestoreResult = { object: Pick<ObjectReport, 'bytes' | 'sha256' | 'compression'>; rawBytes: number; tool: { name: string; version: string } };

// Streams the object at `key` into the database: download → meter → decompress → restore tool (or,
// for a file-based engine, a temporary file moved into place once complete).
export async function restoreObject(request: RestoreRequest): Promise<RestoreResult> {
  const { key, db, log, signal } = request;
  const described = describeKey(key);
  const restorer = ENGINES[db.type].restorer;
  if (!described || !(restorer.formats).includes(described.format)) {
    throw new ConfigError([`RESTORE_KEY: ${key} is not a ${db.type} backup (expected ${restorer.formats.map(extensionOf).join(' or ')}, optionally .zst or .gz, then .age)`]);
  }
  const { compression, format, encrypted } = described;
  if (encrypted && request.identityFile === undefined) throw identityRequired(key);
  if (!encrypted && request.identityFile !== undefined) log.warn({ key }, 'RESTORE_IDENTITY_FILE is set but the object is not encrypted (no .age suffix): it is read as it is');
  const path = request.toolEnv.PATH ?? '';
  const names = restorer.tools(db, format);
  const tool = names.length === 0 ? undefined : which(names, path);
  if (names.length > 0 && !tool) throw new DumpError(`none of ${names.join(', ')} is on PATH; this image cannot restore ${db.type}`, { kind: 'missing-tool', stage: 'restore' });
  const version = tool ? await toolVersion(tool.file, request.toolEnv, ENGINES[db.type].versionArgs) : 'none';

  const secretsDir = await createSecretsDir(log);
  try {
    // sqlite: the script runs into a temporary file beside the target, moved into place when complete.
    const fileTarget = db.type === 'sqlite' ? db.name : request.rdbPath;
    const temporary = fileTarget === undefined ? undefined : join(dirname(fileTarget), `.${basename(fileTarget)}.partial-${randomBytes(6).toString('hex')}`);
    const loadDb = db.type === 'sqlite' ? { ...db, name: temporary } : db;
    // A tool that reads the dump from disk gets it in the private directory, written in full first.
    const dumpFile = restorer.input === 'file' ? join(secretsDir, `dump${extensionOf(format)}`) : undefined;
    const command = tool
      ? restorer.command(loadDb, { secretsDir, tool: tool.file, format, force: request.force, scratch: request.scratch, dumpFile, into: request.dataDir })
      : undefined;
    if (command) await writeCredentialFiles(command);

    const body = await request.target.download(key, signal);
    // After the stored bytes' meter (whose hash is the object's), before decompression.
    const decryptor = encrypted && request.identityFile !== undefined ? createAgeDecryptor(request.identityFile, path) : undefined;
    const stored = createMeter({ hash: true });
    const raw = createMeter({ hash: false });
    const decompress = compression === 'zstd' ? [createZstdDecompress()] : compression === 'gzip' ? [createGunzip()] : [];
    log.info({ key, format, compression, ...(decryptor && { decrypt: decryptor.describe }), tool: tool?.name ?? 'none', args: command?.args.map(request.scrub), into: fileTarget ?? db.name }, 'restore started');
    const started = performance.now();
    const progress = setInterval(() => {
      const seconds = (performance.now() - started) / 1000;
      log.info({ storedBytes: stored.bytes(), rawBytes: raw.bytes(), rawRate: `${formatBytes(raw.bytes() / seconds)}/s` }, `read ${formatBytes(stored.bytes())}, restored ${formatBytes(raw.bytes())}`);
    }, PROGRESS_INTERVAL_MS);
    try {
      const stages = [body, stored.stream, ...(decryptor ? [decryptor.stage] : []), ...decompress, raw.stream];
      if (command && dumpFile) {
        await pipeline([...stages, createWriteStream(dumpFile, { flags: 'wx', mode: 0o600 })] as unknown as NodeJS.ReadWriteStream[], { signal });
        // The tool reads the file only once all of it arrived (and age, if any, authenticated its end).
        await decryptor?.exited;
        if (raw.bytes() > 0) await queryRunner(db.type, request.toolEnv, log, request.scrub, signal)(command);
      } else if (command) {
        await intoTool(command, stages, request, format);
      } else if (temporary) {
        await pipeline([...stages, createWriteStream(temporary, { flags: 'wx', mode: 0o640, flush: true })] as unknown as NodeJS.ReadWriteStream[], { signal });
      }
      // age authenticates every chunk and the end: only its exit 0 says the whole object was read.
      await decryptor?.exited;
      if (raw.bytes() === 0) throw new DumpError(`${key} holds no dump (0 bytes after decompression)`, { kind: 'empty', stage: 'restore' });
      if (db.type === 'redis' && temporary) await checkRdbMagic(temporary);
      if (fileTarget !== undefined && temporary !== undefined) await moveIntoPlace(temporary, fileTarget, request.force);
    } catch (error) {
      if (temporary) await rm(temporary, { force: true });
      if (signal.aborted) throw signal.reason as Error;
      // A wrong key or a damaged object makes age fail first; the decompressor and the tool then see
      // a short or empty stream and fail after it: age's failure is the cause.
      const decryptFailure = decryptor && (await failureWithin(decryptor.exited, TOOL_EXIT_GRACE_MS));
      if (decryptFailure instanceof EncryptionError) throw decryptFailure;
      throw damaged(error);
    } finally {
      decryptor?.kill();
      clearInterval(progress);
    }
    return { object: { bytes: stored.bytes(), sha256: stored.sha256(), compression }, rawBytes: raw.bytes(), tool: { name: tool?.name ?? 'none', version } };
  } finally {
    await removeSecretsDir(secretsDir, log);
  }
}

// Feeds the stages into the restore tool's stdin. The first failure explains the rest: a damaged
// object (the decompressor's error) makes the tool fail; the tool failing breaks the pipe.
async function intoTool(command: DumpCommand, stages: (Readable | Writable)[], request: RestoreRequest, format: DumpFormat): Promise<void> {
  const { signal } = request;
  const tool = startDump(command, ENGINES[request.db.type], {
    baseEnv: request.toolEnv, signal, log: request.log, scrub: request.scrub, stdin: 'pipe', stdout: 'ignore', stage: 'restore',
    errorLines: ENGINES[request.db.type].restorer.errorLines?.(format),
  });
  const exited = tool.exited.then(() => undefined, (error: unknown) => error as Error);
  try {
    await pipeline([...stages, tool.stdin] as unknown as NodeJS.ReadWriteStream[], { signal });
  } catch (error) {
    if (signal.aborted || !BROKEN_PIPE.has((error as NodeJS.ErrnoException).code ?? '')) {
      tool.stop();
      await exited;
      throw damaged(error);
    }
    const toolFailure = await failureWithin(tool.exited, TOOL_EXIT_GRACE_MS);
    tool.stop();
    throw toolFailure ?? error;
  }
  const failure = await exited;
  if (failure !== undefined) throw failure;
}

// What `exited` rejected with, if it settles within `ms`; undefined when it resolved or is still running.
async function failureWithin(exited: Promise<unknown>, ms: number): Promise<Error | undefined> {
  const outcome = await withTimeout(exited.then(() => undefined, (error: unknown) => error as Error), ms);
  return outcome === TIMED_OUT ? undefined : outcome;
}

// The tool stopped reading: its own exit tells why.
const BROKEN_PIPE = new Set(['EPIPE', 'ECONNRESET', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_STREAM_DESTROYED']);
// How long a tool that closed its input may take to exit and say why.
const TOOL_EXIT_GRACE_MS = 5_000;

// A decompressor's error means the stored object is damaged (truncated, altered): say so.
function damaged(error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException | undefined)?.code ?? '';
  if (!code.startsWith('Z_') && !code.startsWith('ERR_ZLIB') && !code.startsWith('ERR__ZSTD')) return error;
  return new DumpError(`the object does not decompress (truncated or altered): ${(error as Error).message}`, { kind: 'failed', stage: 'restore' }, { cause: error });
}

// An RDB file starts with `REDIS` and four version digits.
async function checkRdbMagic(file: string): Promise<void> {
  const handle = await open(file, 'r');
  try {
    const head = Buffer.alloc(9);
    await handle.read(head, 0, 9, 0);
    if (!/^REDIS\d{4}$/.test(head.toString('latin1'))) throw new DumpError('the object is not a Redis RDB file (no REDIS magic at its start)', { kind: 'failed', stage: 'restore' });
  } finally {
    await handle.close();
  }
}

// link() never replaces an existing file; with RESTORE_FORCE (or an empty target) rename() does.
async function moveIntoPlace(temporary: string, destination: string, replace: boolean): Promise<void> {
  try {
    await link(temporary, destination);
    await rm(temporary, { force: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST' || !replace) throw error;
    await rename(temporary, destination);
  }
}

// Whether the target holds anything a restore could clash with: tables, keys, a file.
async function targetContents(config: Config, log: Logger, scrub: Scrub, signal: AbortSignal): Promise<Counts | 'file' | 'unknown'> {
  const { db } = config;
  if (db.type === 'etcd') {
    const entries = await readdir(config.job.restoreDataDir ?? '').catch(() => []);
    return entries.length > 0 ? 'file' : {};
  }
  if (db.type === 'redis') {
    const existing = await open(config.job.restoreRdbPath ?? '', 'r').then(async (handle) => (await handle.stat().finally(() => handle.close())).size, () => 0);
    return existing > 0 ? 'file' : {};
  }
  const secretsDir = await createSecretsDir(log);
  try {
    return await ENGINES[db.type].restorer.count(db, { secretsDir, path: config.toolEnv.PATH ?? '', query: queryRunner(db.type, config.toolEnv, log, scrub, signal) });
  } catch (error) {
    if (error instanceof DumpError && error.kind === 'missing-tool') return 'unknown';
    throw error;
  } finally {
    await removeSecretsDir(secretsDir, log);
  }
}

// Runs a query command of the `type` engine's tools to completion and returns its stdout.
export function queryRunner(type: DbType, toolEnv: Readonly<Record<string, string>>, log: Logger, scrub: Scrub, signal: AbortSignal): RunQuery {
  return async (command) => {
    // Successive queries share the credentials directory and write the same files.
    await writeCredentialFiles(command).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    });
    const running = startDump(command, ENGINES[type], { baseEnv: toolEnv, signal, log, scrub, stage: 'restore' });
    const chunks: Buffer[] = [];
    running.stdout?.on('data', (chunk: Buffer) => chunks.push(chunk));
    await running.exited;
    return Buffer.concat(chunks).toString('utf8');
  };
}

// Runs one restore and returns its report; the exit code is in the report.
export async function runRestore(config: Config, options: RunOptions): Promise<RunReport> {
  const run = startRun(config, 'restore', options);
  let result: (RestoreResult & { key: string; url: string }) | undefined;
  let failure: unknown;
  try {
    result = await restore(config, run);
  } catch (error) {
    failure = run.signal.aborted ? run.signal.reason : error;
  }
  return finishRun(config, run, {
    failure,
    object: result && { storageType: config.storage.type, bucket: config.storage.bucket, key: result.key, url: result.url, ...result.object },
    rawBytes: result?.rawBytes ?? 0,
    tool: result?.tool ?? { name: 'unknown', version: 'unknown' },
    successMessage: 'restore finished',
  });
}

async function restore(config: Config, run: RunContext): Promise<RestoreResult & { key: string; url: string }> {
  const { log, signal } = run;
  const target = STORAGE_DRIVERS[config.storage.type].open(config.storage, config.storage.settings);
  const key = config.job.restoreKey === 'latest' ? await latestKey(config, target, signal) : (config.job.restoreKey ?? '');
  const contents = await targetContents(config, log, run.scrub, signal);
  const into = config.db.type === 'redis' ? `RESTORE_RDB_PATH ${config.job.restoreRdbPath ?? ''}` : `${config.db.type} database ${config.db.name ?? '(all)'}`;
  // etcdutl writes only a new data directory: RESTORE_FORCE cannot replace one.
  if (contents === 'file' && config.db.type === 'etcd') {
    throw new ConfigError([`RESTORE_DATA_DIR: ${config.job.restoreDataDir ?? ''} already holds files; nothing was changed (an etcd snapshot is restored into a new directory)`]);
  }
  if (!config.job.restoreForce) {
    if (contents === 'file') throw new ConfigError([`RESTORE_RDB_PATH: ${config.job.restoreRdbPath ?? ''} already exists; nothing was changed (set RESTORE_FORCE=true to replace it)`]);
    if (contents === 'unknown') throw new ConfigError([`RESTORE_FORCE: this image cannot tell whether ${into} is empty; nothing was changed (set RESTORE_FORCE=true to restore anyway)`]);
    const names = Object.keys(contents);
    if (names.length > 0) {
      throw new ConfigError([`DB_NAME: ${into} already holds ${names.length} ${db(config)} (${names.slice(0, 5).join(', ')}${names.length > 5 ? ', …' : ''}); nothing was changed (restore into an empty one, or set RESTORE_FORCE=true)`]);
    }
  }
  run.prepared();
  const restored = await restoreObject({
    target, key, db: config.db, rdbPath: config.job.restoreRdbPath, dataDir: config.job.restoreDataDir, force: config.job.restoreForce, identityFile: config.job.identityFile, scratch: false,
    toolEnv: config.toolEnv, log, scrub: run.scrub, signal,
  });
  const where = config.storage.type === 'local' ? `file://${join(config.storage.bucket, key)}` : `${config.storage.type}://${config.storage.bucket}/${key}`;
  return { ...restored, key, url: where };
}

function db(config: Config): string {
  return config.db.allDatabases ? 'databases' : 'tables';
}
