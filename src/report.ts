// What one run did, in facts: the log's last line and the callback's payload are built from it.
import type { Config, Platform } from './config.ts';
import { CallbackError, PlanBError, type Stage } from './errors.ts';
import { EXIT_CODES, exitNameFor, type ExitName } from './exit-codes.ts';
import type { DbType, Compression } from './engines/types.ts';
import type { StorageType } from './storage/registry.ts';
import type { CallbackVerification } from './callback/payload-types.ts';

// The stored object: the backup's when it succeeded, or the object a restore or verification read.
export type ObjectReport = {
  storageType: StorageType;
  bucket: string;
  key: string;
  url: string;
  bytes: number;
  sha256: string;
  compression: Compression;
  // Present when the object is age-encrypted: the public keys whose secret halves can open it.
  encryption?: { format: 'age'; recipients: readonly string[] };
  // Present with STORAGE_RETAIN_DAYS: the store keeps the object unchangeable until `until` (ISO).
  retention?: { mode: 'governance' | 'compliance'; until: string };
};

// Why a run failed; `message` is already scrubbed of secrets.
export type ErrorReport = { stage: Stage; code: ExitName; message: string };

// What a run did: a backup (perhaps verified), a restore of a stored object, or a verification of one.
export type Operation = 'backup' | 'restore' | 'verify';

// The outcome of restoring an object into a throw-away server and comparing it with the dump's facts:
// what the callback carries (its type is the receivers' contract), and every restored count for the log.
export type VerificationReport = CallbackVerification & { counts: Record<string, number> };

export type RunReport = {
  operation: Operation;
  runId: string;
  status: 'succeeded' | 'failed';
  exitCode: number;
  exitName: ExitName;
  database: { type: DbType; host: string | undefined; name: string | undefined };
  dumpTool: { name: string; version: string };
  object: ObjectReport | undefined;
  // Bytes the dump tool wrote, before compression.
  rawBytes: number;
  startedAt: Date;
  finishedAt: Date;
  // Wall time of each stage in milliseconds (the dump and the upload overlap: they are one stream).
  durations: { totalMs: number; prepareMs: number; streamMs: number };
  error: ErrorReport | undefined;
  // Present when the run verified an object (JOB_MODE=verify, or BACKUP_VERIFY after a backup).
  verification?: VerificationReport | undefined;
  platform: Platform;
};

// The facts of a finished run, whatever its operation; the failure decides status and exit code.
export type RunFacts = {
  operation: Operation;
  runId: string;
  startedAt: Date;
  finishedAt: Date;
  tool: { name: string; version: string };
  object: ObjectReport | undefined;
  rawBytes: number;
  durations: { prepareMs: number; streamMs: number };
  failure: unknown;
  verification?: VerificationReport | undefined;
  // Removes secrets from the error message.
  scrub: (text: string) => string;
};

// Builds the report of a run from its facts.
export function reportFor(config: Config, run: RunFacts): RunReport {
  const { failure } = run;
  const exitName = exitNameFor(failure);
  return {
    operation: run.operation,
    runId: run.runId,
    status: failure === undefined || failure instanceof CallbackError ? 'succeeded' : 'failed',
    exitCode: EXIT_CODES[exitName].code,
    exitName,
    database: { type: config.db.type, host: config.db.host, name: config.db.name },
    dumpTool: run.tool,
    object: run.object,
    rawBytes: run.rawBytes,
    startedAt: run.startedAt,
    finishedAt: run.finishedAt,
    durations: { totalMs: run.finishedAt.getTime() - run.startedAt.getTime(), ...run.durations },
    error: errorReport(failure, run.scrub),
    verification: run.verification,
    platform: config.platform,
  };
}

// Why a run failed, for its last log line and its callback; undefined when it did not.
export function errorReport(failure: unknown, scrub: (text: string) => string): ErrorReport | undefined {
  if (failure === undefined) return undefined;
  return { stage: failure instanceof PlanBError ? failure.stage : 'internal', code: exitNameFor(failure), message: scrub(failure instanceof Error ? failure.message : JSON.stringify(failure)) };
}

// What became of one database in a run over several (DB_NAMES).
export type DatabaseOutcome = {
  name: string;
  status: 'stored' | 'failed' | 'skipped';
  exitName: ExitName;
  // That database's own run (its object key and callback carry it); undefined when it was skipped.
  runId: string | undefined;
};

// What a run over several databases did: the summary log line and callback are built from it.
export type SummaryReport = {
  runId: string;
  status: 'succeeded' | 'failed';
  exitCode: number;
  exitName: ExitName;
  database: { type: DbType; host: string | undefined };
  task: { index: number; count: number };
  databases: DatabaseOutcome[];
  // Why the run failed before any database ran (listing them failed); undefined otherwise.
  error: ErrorReport | undefined;
  startedAt: Date;
  finishedAt: Date;
  platform: Platform;
};
