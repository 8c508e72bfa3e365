// What one run did, in facts: the log's last line and the callback's payload are built from it.
import type { Platform } from './config.ts';
import type { Stage } from './errors.ts';
import type { ExitName } from './exit-codes.ts';
import type { DbType, Compression } from './engines/types.ts';
import type { StorageType } from './storage/registry.ts';

// The stored object, present only when the backup succeeded.
export type ObjectReport = {
  storageType: StorageType;
  bucket: string;
  key: string;
  url: string;
  bytes: number;
  sha256: string;
  compression: Compression;
};

// Why a run failed; `message` is already scrubbed of secrets.
export type ErrorReport = { stage: Stage; code: ExitName; message: string };

export type RunReport = {
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
  platform: Platform;
};

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
