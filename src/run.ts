// The recipe of one backup, top to bottom: prepare the dump command → stream dump → compress → encrypt →
// meter → hold until the tool exited 0 → upload → report (→ callback). Never throws: every outcome is a report.
import { randomBytes } from 'node:crypto';
import { basename, extname } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { sendCallback } from './callback/send.ts';
import type { Config } from './config.ts';
import { createSecretsDir, removeSecretsDir, startDump, toolVersion, writeCredentialFiles, type Scrub } from './dump.ts';
import { ENGINES } from './engines/registry.ts';
import type { DbConfig } from './engines/types.ts';
import { CallbackError, DeadlineError, DumpError, EncryptionError, PlanBError, StorageError } from './errors.ts';
import { EXIT_CODES, exitNameFor } from './exit-codes.ts';
import type { Logger } from './log.ts';
import { CONTENT_TYPE, EXTENSION, startCompressor } from './pipeline/compress.ts';
import { ENCRYPTED_EXTENSION, startEncryptor } from './pipeline/encrypt.ts';
import { holdUntilExit } from './pipeline/hold-until-exit.ts';
import { createMeter } from './pipeline/meter.ts';
import type { ObjectReport, RunReport } from './report.ts';
import { STORAGE_DRIVERS } from './storage/registry.ts';
import { formatBytes } from './units.ts';
import { which } from './which.ts';

const DAY_MS = 86_400_000;
// An age file is no longer the compressed format its inner extension names.
const AGE_CONTENT_TYPE = 'application/octet-stream';
// A progress line at least this often on long dumps.
const PROGRESS_INTERVAL_MS = 10_000;
// After SIGTERM or the deadline, the failure callback gets this long: inside Cloud Run's 10 s grace
// and before main.ts's forced exit.
const CALLBACK_AFTER_ABORT_MS = 5_000;

export type RunOptions = {
  log: Logger;
  // Aborted by main.ts on SIGTERM/SIGINT, with an InterruptedError as the reason.
  signal: AbortSignal;
  now?: () => Date;
};

// Runs one backup and returns its report; the exit code is in the report.
export async function runBackup(config: Config, options: RunOptions): Promise<RunReport> {
  const now = options.now ?? (() => new Date());
  const startedAt = now();
  const runId = newRunId(startedAt);
  const log = options.log.child({ runId });
  const scrub = scrubber(config.secrets);
  const engine = ENGINES[config.db.type];
  const deadline = startDeadline(config.backup.timeoutMs);
  const signal = AbortSignal.any([options.signal, deadline.signal]);

  const facts = { tool: { name: engine.tools(config.db)[0] ?? 'unknown', version: 'unknown' }, rawBytes: 0, prepareMs: 0, streamMs: 0 };
  let object: ObjectReport | undefined;
  let failure: unknown;
  try {
    object = await backup(config, { runId, log, scrub, signal, facts, now });
  } catch (error) {
    failure = signal.aborted ? signal.reason : error;
  }

  let report = buildReport(config, { runId, startedAt, finishedAt: now(), facts, object, failure, scrub });
  if (failure === undefined) {
    log.info({ object, rawBytes: report.rawBytes, durations: report.durations }, 'backup stored');
  } else {
    log.error(
      { exitCode: report.exitCode, exitName: report.exitName, stage: report.error?.stage, err: failure instanceof PlanBError ? undefined : failure },
      `backup failed: ${report.error?.message}`,
    );
  }

  if (config.callback) {
    // A stored backup's callback runs within what is left of the deadline; a failure's, when the run
    // was aborted, within a short budget of its own.
    const callbackSignal = signal.aborted ? AbortSignal.timeout(CALLBACK_AFTER_ABORT_MS) : signal;
    try {
      await sendCallback(config.callback, report, { signal: callbackSignal, log, secrets: config.secrets });
    } catch (error) {
      if (report.status === 'failed') {
        log.warn({ err: error }, 'the failure callback could not be delivered; the backup failure decides the exit code');
      } else {
        const callbackFailure = error instanceof CallbackError ? error : new CallbackError(messageOf(error), { attempts: 0 }, { cause: error });
        report = buildReport(config, { runId, startedAt, finishedAt: now(), facts, object, failure: callbackFailure, scrub });
        log.error({ exitCode: report.exitCode, exitName: report.exitName, object }, `backup stored, but the callback failed: ${report.error?.message}`);
      }
    }
  }
  deadline.clear();
  return report;
}

function buildReport(
  config: Config,
  run: { runId: string; startedAt: Date; finishedAt: Date; facts: BackupContext['facts']; object: ObjectReport | undefined; failure: unknown; scrub: Scrub },
): RunReport {
  const { failure, facts } = run;
  const exitName = exitNameFor(failure);
  return {
    runId: run.runId,
    status: failure === undefined || failure instanceof CallbackError ? 'succeeded' : 'failed',
    exitCode: EXIT_CODES[exitName].code,
    exitName,
    database: { type: config.db.type, host: config.db.host, name: config.db.name },
    dumpTool: facts.tool,
    object: run.object,
    rawBytes: facts.rawBytes,
    startedAt: run.startedAt,
    finishedAt: run.finishedAt,
    durations: { totalMs: run.finishedAt.getTime() - run.startedAt.getTime(), prepareMs: facts.prepareMs, streamMs: facts.streamMs },
    error:
      failure === undefined
        ? undefined
        : { stage: failure instanceof PlanBError ? failure.stage : 'internal', code: exitName, message: run.scrub(messageOf(failure)) },
    platform: config.platform,
  };
}

type BackupContext = {
  runId: string;
  log: Logger;
  scrub: Scrub;
  signal: AbortSignal;
  facts: { tool: { name: string; version: string }; rawBytes: number; prepareMs: number; streamMs: number };
  now: () => Date;
};

async function backup(config: Config, context: BackupContext): Promise<ObjectReport> {
  const { log, signal, facts } = context;
  const prepareStart = performance.now();
  const engine = ENGINES[config.db.type];
  const path = config.toolEnv.PATH ?? '';
  const tool = which(engine.tools(config.db), path);
  if (!tool) {
    throw new DumpError(`none of ${engine.tools(config.db).join(', ')} is on PATH; this image cannot dump ${config.db.type}`, { kind: 'missing-tool' });
  }
  facts.tool = { name: tool.name, version: await toolVersion(tool.file, config.toolEnv) };

  const compression = config.backup.compression;
  const encryption = config.backup.encryption;
  const key =
    `${config.backup.prefix}${config.db.type}-${slug(config.db)}-${context.runId}${engine.extension(config.db)}${EXTENSION[compression]}` +
    (encryption ? ENCRYPTED_EXTENSION : '');
  const retention = config.storage.retention;
  const retainUntil = retention && { date: new Date(context.now().getTime() + retention.days * DAY_MS), mode: retention.mode };
  const target = STORAGE_DRIVERS[config.storage.type].open(config.storage, config.storage.settings);
  const secretsDir = await createSecretsDir();
  try {
    const command = engine.command(config.db, { secretsDir, tool: tool.file, compression });
    await writeCredentialFiles(command);
    facts.prepareMs = Math.round(performance.now() - prepareStart);
    signal.throwIfAborted();

    // Started before the dump: an image without age fails here, before any byte is read.
    const encryptor = encryption && startEncryptor(encryption.recipients, path);
    const compressor = startCompressor(compression, config.backup.compressionLevel, path);
    log.info(
      {
        tool: facts.tool,
        args: command.args.map(context.scrub),
        compressor: compressor?.describe ?? 'none',
        ...(encryption && { encryption: { format: 'age', recipients: encryption.recipients } }),
        ...(retainUntil && { retainUntil: { date: retainUntil.date.toISOString(), mode: retainUntil.mode } }),
        storage: config.storage.type,
        bucket: config.storage.bucket,
        key,
      },
      'backup started',
    );
    const streamStart = performance.now();
    // A compressor with an `input` reads the dump's stdout itself: the raw bytes stay out of JavaScript.
    const dump = startDump(command, engine, { baseEnv: config.toolEnv, signal, log, scrub: context.scrub, stdout: compressor?.input });
    compressor?.releaseInput();
    const raw = createMeter({ hash: false });
    const rawBytes = () => compressor?.rawBytes() ?? raw.bytes();
    const stored = createMeter({ hash: true });
    const finished = Promise.all([dump.exited, compressor?.exited, encryptor?.exited]).then(() => {
      if (rawBytes() === 0) throw new DumpError(`${tool.name} exited 0 but wrote nothing`, { kind: 'empty' });
    });
    const progress = setInterval(() => {
      const seconds = (performance.now() - streamStart) / 1000;
      log.info(
        { rawBytes: rawBytes(), storedBytes: stored.bytes(), rawRate: `${formatBytes(rawBytes() / seconds)}/s` },
        `dumped ${formatBytes(rawBytes())}, stored ${formatBytes(stored.bytes())}`,
      );
    }, PROGRESS_INTERVAL_MS);
    let storageFailure: StorageError | undefined;
    try {
      let url = '';
      // The last stage gets the hold stage itself as `body` (pipeline passes Node streams on as they are).
      const upload = async (body: Readable): Promise<void> => {
        ({ url } = await target.upload({
          key,
          body,
          signal,
          contentType: encryption ? AGE_CONTENT_TYPE : CONTENT_TYPE[compression],
          metadata: { 'planb-run-id': context.runId, 'planb-db-type': config.db.type, 'planb-dump-tool': facts.tool.version },
          lateMetadata: () => ({ 'planb-sha256': stored.sha256() }),
          sizeHint: config.backup.expectedSize,
          retainUntil,
          log,
        }).catch((error: unknown) => {
          // A target rejects with a StorageError only for its own failure (see failure.ts).
          if (error instanceof StorageError) storageFailure = error;
          throw error;
        }));
      };
      const source = dump.stdout ? [dump.stdout, raw.stream] : [];
      const stages = [...source, ...(compressor?.stages ?? []), ...(encryptor ? [encryptor.stage] : []), stored.stream, holdUntilExit(finished), upload];
      // @types/node has no overload for a variable number of stages ending in a function.
      await pipeline(stages as unknown as NodeJS.ReadWriteStream[], { signal });
      facts.rawBytes = rawBytes();
      return {
        storageType: config.storage.type,
        bucket: config.storage.bucket,
        key,
        url,
        bytes: stored.bytes(),
        sha256: stored.sha256(),
        compression,
        ...(encryption && { encryption: { format: 'age' as const, recipients: encryption.recipients } }),
        ...(retainUntil && { retention: { mode: retainUntil.mode, until: retainUntil.date.toISOString() } }),
      };
    } catch (error) {
      facts.rawBytes = rawBytes();
      dump.stop();
      compressor?.kill();
      encryptor?.kill();
      // The first failure explains the rest: storage failing makes the dump die of a broken pipe,
      // a dump dying makes the upload abort.
      if (signal.aborted) throw signal.reason;
      if (storageFailure) throw storageFailure;
      // A failing encryptor makes the compressor and the dump die of a broken pipe, never the reverse
      // (they end its input cleanly): its own failure, when it has one, is the root cause.
      const encryptorFailure = encryptor && (await settledFailure(encryptor.exited));
      if (encryptorFailure instanceof EncryptionError && encryptorFailure.kind !== 'stopped') throw encryptorFailure;
      throw (await settledFailure(finished)) ?? error;
    } finally {
      clearInterval(progress);
      facts.streamMs = Math.round(performance.now() - streamStart);
      await Promise.allSettled([dump.exited, compressor?.exited, encryptor?.exited]);
    }
  } finally {
    await removeSecretsDir(secretsDir, log);
  }
}

// The rejection of a promise that has already settled (or settles in a moment), else undefined.
async function settledFailure(promise: Promise<unknown>): Promise<unknown> {
  const pending = Symbol('pending');
  const timer = new Promise((resolve) => setTimeout(resolve, 50, pending));
  const outcome = await Promise.race([promise.then(() => undefined, (error: unknown) => error), timer]);
  if (outcome === pending) return undefined;
  if (outcome instanceof DumpError && outcome.message.endsWith('was stopped')) return undefined;
  if (outcome instanceof EncryptionError && outcome.kind === 'stopped') return undefined;
  return outcome;
}

// `20261122T043300Z-3f9a1c2e`: sortable by time, unique per run and per retry attempt.
function newRunId(at: Date): string {
  const stamp = at.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${randomBytes(4).toString('hex')}`;
}

// The database part of the key: its name made safe for every store (`shop`, `all`, `app` for app.db).
function slug(db: DbConfig): string {
  const name = db.allDatabases ? 'all' : db.type === 'sqlite' ? basename(db.name ?? 'db', extname(db.name ?? '')) : (db.name ?? db.type);
  return name.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 64) || db.type;
}

function startDeadline(timeoutMs: number | undefined): { signal: AbortSignal; clear(): void } {
  const controller = new AbortController();
  if (timeoutMs === undefined) return { signal: controller.signal, clear: () => undefined };
  const timer = setTimeout(() => controller.abort(new DeadlineError(timeoutMs)), timeoutMs);
  return { signal: controller.signal, clear: () => clearTimeout(timer) };
}

function scrubber(secrets: readonly string[]): Scrub {
  const sorted = [...new Set(secrets)].filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
  return (text) => sorted.reduce((out, secret) => out.split(secret).join('[redacted]'), text);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
