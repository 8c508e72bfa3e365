// The recipe of one backup, top to bottom: prepare the dump command → stream dump → compress → encrypt →
// meter → hold until the tool exited 0 → upload → report (→ callback). Never throws: every outcome is a report.
import { basename, extname } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Config } from './config.ts';
import { createSecretsDir, removeSecretsDir, runPreflight, startDump, toolVersion, writeCredentialFiles } from './dump.ts';
import { ENGINES } from './engines/registry.ts';
import type { DbConfig, DumpCommand, DumpEngine } from './engines/types.ts';
import { ConfigError, DumpError, StorageError } from './errors.ts';
import type { Logger } from './log.ts';
import { CONTENT_TYPE, EXTENSION, startCompressor } from './pipeline/compress.ts';
import { watchRaw, watchZstd } from './pipeline/completeness.ts';
import { ENCRYPTED_EXTENSION, startEncryptor } from './pipeline/encrypt.ts';
import { firstFailure } from './pipeline/first-failure.ts';
import { holdUntilExit } from './pipeline/hold-until-exit.ts';
import { createMeter } from './pipeline/meter.ts';
import { watchStall } from './pipeline/stall.ts';
import { finishRun, startRun, type RunContext, type RunOptions } from './outcome.ts';
import { captureFacts, factsKey, storeFacts, unitOf, type Facts, type FactsCapture } from './facts.ts';
import type { ObjectReport, RunReport, VerificationReport } from './report.ts';
import type { StorageDriver, StorageTarget } from './storage/types.ts';
import { logVerification, verificationFailure, verifyObject } from './verify.ts';
import { runSpool } from './spool.ts';
import { STORAGE_DRIVERS } from './storage/registry.ts';
import { formatBytes, formatDuration } from './units.ts';
import { plannedSize } from './probe.ts';
import { which } from './which.ts';

const DAY_MS = 86_400_000;
// An age file is no longer the compressed format its inner extension names.
const AGE_CONTENT_TYPE = 'application/octet-stream';
// A progress line at least this often on long dumps.
const PROGRESS_INTERVAL_MS = 10_000;

// Runs one backup (and its verification with BACKUP_VERIFY) and returns its report; the exit code is
// in the report. Never throws.
export async function runBackup(config: Config, options: RunOptions): Promise<RunReport> {
  // Aborted by the stall watch (pipeline/stall.ts) with a StorageError: the store stopped taking bytes.
  const stall = new AbortController();
  const run = startRun(config, 'backup', options, [stall.signal]);
  const { log, signal } = run;
  const facts = { tool: { name: ENGINES[config.db.type].tools(config.db)[0] ?? 'unknown', version: 'unknown' }, rawBytes: 0 };
  const context: BackupContext = { run, stall, facts, dumpFacts: undefined };
  let object: ObjectReport | undefined;
  let verification: VerificationReport | undefined;
  let failure: unknown;
  try {
    object = await backup(config, context);
  } catch (error) {
    failure = signal.aborted ? signal.reason : error;
  }
  run.streamed();
  if (object && config.job.verifyAfterBackup) {
    log.info({ key: object.key }, 'backup stored; verifying it in a throw-away server');
    try {
      const target = STORAGE_DRIVERS[config.storage.type].open(config.storage, config.storage.settings);
      ({ verification } = await verifyObject(config, { target, key: object.key, storedBytes: object.bytes, facts: context.dumpFacts, log, scrub: run.scrub, signal }));
      logVerification(log, verification);
      failure = verificationFailure(verification);
    } catch (error) {
      failure = signal.aborted ? signal.reason : error;
    }
  }
  return finishRun(config, run, { failure, object, verification, rawBytes: facts.rawBytes, tool: facts.tool, successMessage: 'backup stored' });
}

type BackupContext = {
  run: RunContext;
  stall: AbortController;
  // What the report tells of the dump: the tool that ran, and the bytes it wrote.
  facts: { tool: { name: string; version: string }; rawBytes: number };
  // Row or key counts captured with the dump (BACKUP_FACTS, BACKUP_VERIFY), set once it is stored.
  dumpFacts: Facts | undefined;
};

async function backup(config: Config, context: BackupContext): Promise<ObjectReport> {
  const { run, facts } = context;
  const { log, signal } = run;
  const engine: DumpEngine = ENGINES[config.db.type];
  const path = config.toolEnv.PATH ?? '';
  const tool = which(engine.tools(config.db), path);
  if (!tool) {
    throw new DumpError(`none of ${engine.tools(config.db).join(', ')} is on PATH; this image cannot dump ${config.db.type}`, { kind: 'missing-tool' });
  }
  facts.tool = { name: tool.name, version: await toolVersion(tool.file, config.toolEnv, engine.versionArgs) };

  const compression = config.backup.compression;
  const encryption = config.backup.encryption;
  const key =
    `${config.backup.prefix}${config.db.type}-${slug(config.db)}-${run.runId}${engine.extension(config.db)}${EXTENSION[compression]}` +
    (encryption ? ENCRYPTED_EXTENSION : '');
  const retention = config.storage.retention;
  const retainUntil = retention && { date: new Date(run.now().getTime() + retention.days * DAY_MS), mode: retention.mode };
  const target = STORAGE_DRIVERS[config.storage.type].open(config.storage, config.storage.settings);
  const secretsDir = await createSecretsDir(log);
  // Row counts taken for the dump (BACKUP_FACTS, BACKUP_VERIFY): PostgreSQL's holds the dump's snapshot open.
  let capture: FactsCapture | undefined;
  try {
    await runPreflight(engine, config.db, { secretsDir, tool: tool.file, compression, baseEnv: config.toolEnv, signal, log, scrub: run.scrub });
    const plain: DumpCommand = engine.command(config.db, { secretsDir, tool: tool.file, compression });
    await writeCredentialFiles(plain);
    if (config.job.captureFacts) capture = await captureFacts(config, plain, { secretsDir, log, scrub: run.scrub, signal });
    const command = capture?.command ?? plain;
    const driver: StorageDriver = STORAGE_DRIVERS[config.storage.type];
    const sizeHint = driver.plansParts ? await plannedSize(config, { signal, scrub: run.scrub, log }) : config.backup.expectedSize;
    run.prepared();
    signal.throwIfAborted();

    // Started before the dump: an image without age fails here, before any byte is read.
    const encryptor = encryption && startEncryptor(encryption.recipients, path);
    const compressor = startCompressor(compression, config.backup.compressionLevel, path);
    // The tool's own marks of a complete dump, on the raw stream: watched where it passes through
    // JavaScript, or decoded back from zstd's output where the zstd CLI reads the dump itself.
    const check = engine.completeness(config.db);
    const watch = compressor?.input ? watchZstd(check, tool.name) : watchRaw(check, tool.name);
    const spoolSteps = command.spool?.steps.map((step) => [step.file, ...step.args].map(run.scrub));
    log.info(
      {
        tool: facts.tool,
        args: command.args.map(run.scrub),
        ...(spoolSteps && { spoolSteps }),
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
    // A tool that cannot write to stdout writes to disk first; the command then streams what it wrote.
    if (command.spool) {
      await runSpool(command.spool, engine, { baseEnv: config.toolEnv, signal, log, scrub: run.scrub, toolName: tool.name }).catch(async (error: unknown) => {
        compressor?.kill();
        encryptor?.kill();
        await Promise.allSettled([compressor?.exited, encryptor?.exited]);
        throw error;
      });
    }
    // A compressor with an `input` reads the dump's stdout itself: the raw bytes stay out of JavaScript.
    const dump = startDump(command, engine, { baseEnv: config.toolEnv, signal, log, scrub: run.scrub, stdout: compressor?.input });
    compressor?.releaseInput();
    const raw = createMeter({ hash: false });
    const rawBytes = () => compressor?.rawBytes() ?? raw.bytes();
    const stored = createMeter({ hash: true });
    // Every stage reports its own failure as it happens; the first is the cause the run reports.
    const failures = firstFailure();
    for (const stage of [dump.exited, compressor?.exited, encryptor?.exited]) failures.watch(stage);
    // What the hold stage waits for before it lets the end of the stream reach storage.
    const finished = Promise.all([dump.exited, compressor?.exited, encryptor?.exited]).then(async () => {
      if (rawBytes() === 0) throw new DumpError(`${tool.name} exited 0 but wrote nothing`, { kind: 'empty' });
      await watch.verdict;
    });
    failures.watch(finished);
    // Stops every tool still running; what it stops then exits with a StoppedError, never a cause.
    const stopTools = (): void => {
      dump.stop();
      compressor?.kill();
      encryptor?.kill();
    };
    const progress = setInterval(() => {
      const seconds = (performance.now() - streamStart) / 1000;
      log.info(
        { rawBytes: rawBytes(), storedBytes: stored.bytes(), rawRate: `${formatBytes(rawBytes() / seconds)}/s` },
        `dumped ${formatBytes(rawBytes())}, stored ${formatBytes(stored.bytes())}`,
      );
    }, PROGRESS_INTERVAL_MS);
    try {
      let url = '';
      // The last stage gets the hold stage itself as `body` (pipeline passes Node streams on as they are).
      const upload = async (body: Readable): Promise<void> => {
        ({ url } = await target.upload({
          key,
          body,
          signal,
          contentType: encryption ? AGE_CONTENT_TYPE : CONTENT_TYPE[compression],
          metadata: { 'planb-run-id': run.runId, 'planb-db-type': config.db.type, 'planb-dump-tool': facts.tool.version },
          lateMetadata: () => ({ 'planb-sha256': stored.sha256() }),
          sizeHint,
          retainUntil,
          log,
        }).catch((error: unknown) => {
          // A target rejects with a StorageError (or a ConfigError only the store could see) only for
          // its own failure, not for a body that another stage's failure cut short (see failure.ts).
          if (error instanceof StorageError || error instanceof ConfigError) failures.record(error);
          throw error;
        }));
      };
      const source = dump.stdout ? [dump.stdout, raw.stream, watch.stream] : [];
      const compressed = compressor?.input ? [...compressor.stages, watch.stream] : (compressor?.stages ?? []);
      const hold = holdUntilExit(finished);
      const stages = [...source, ...compressed, ...(encryptor ? [encryptor.stage] : []), stored.stream, hold, upload];
      // The moment any stage fails, the tools are stopped, before the pipeline tears their pipes down:
      // one that then dies of a write error is a StoppedError, not a cause. (age keeps its own failure
      // when it had already exited: see encrypt.ts.)
      for (const stage of stages) if (typeof stage !== 'function') stage.once('error', stopTools);
      const stallTimeout = config.backup.stallTimeoutMs;
      const stall = watchStall(hold, () => stored.bytes() - stored.stream.readableLength, stallTimeout, () =>
        context.stall.abort(new StorageError(`no byte was stored for ${formatDuration(stallTimeout)} (BACKUP_STALL_TIMEOUT): the ${config.storage.type} store stopped answering`, 'unavailable')),
      );
      // @types/node has no overload for a variable number of stages ending in a function.
      await pipeline(stages as unknown as NodeJS.ReadWriteStream[], { signal }).finally(() => stall.stop());
      facts.rawBytes = rawBytes();
      if (capture) context.dumpFacts = await keepFacts(config, target, key, capture, { runId: run.runId, rawBytes: facts.rawBytes, log, signal, now: run.now });
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
      // Once every child has exited, each stage that failed on its own has said so: age, for one, only
      // after its stderr closed.
      stopTools();
      await Promise.allSettled([dump.exited, compressor?.exited, encryptor?.exited]);
      if (signal.aborted) throw signal.reason;
      throw failures.first ?? error;
    } finally {
      clearInterval(progress);
      await Promise.allSettled([dump.exited, compressor?.exited, encryptor?.exited]);
    }
  } finally {
    await capture?.close();
    await removeSecretsDir(secretsDir, log);
  }
}

// Writes the facts sidecar after the object is stored. The object is complete whatever happens here:
// a sidecar that cannot be written is a warning (a later verification then has nothing to compare).
async function keepFacts(
  config: Config,
  target: StorageTarget,
  key: string,
  capture: FactsCapture,
  context: { runId: string; rawBytes: number; log: Logger; signal: AbortSignal; now: () => Date },
): Promise<Facts | undefined> {
  try {
    const { counts, consistency } = await capture.counts;
    const facts: Facts = {
      format: 'planb-facts/1', runId: context.runId, dbType: config.db.type, capturedAt: context.now().toISOString(), consistency, unit: unitOf(config.db), counts, rawBytes: context.rawBytes,
    };
    const encryption = config.backup.encryption && { recipients: config.backup.encryption.recipients, path: config.toolEnv.PATH ?? '' };
    await storeFacts(target, key, facts, { ...context, encryption });
    context.log.info({ key: factsKey(key), tables: Object.keys(counts).length, consistency }, 'facts stored beside the backup');
    return facts;
  } catch (error) {
    if (context.signal.aborted) throw context.signal.reason;
    context.log.warn({ err: error, key: factsKey(key) }, 'the backup is stored, but its facts (row/key counts) could not be captured or stored');
    return undefined;
  }
}

// The database part of the key: its name made safe for every store (`shop`, `all`, `app` for app.db).
export function slug(db: DbConfig): string {
  const name = db.allDatabases ? 'all' : db.type === 'sqlite' ? basename(db.name ?? 'db', extname(db.name ?? '')) : (db.name ?? db.type);
  return name.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 64) || db.type;
}
