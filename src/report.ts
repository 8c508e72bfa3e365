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
  // Present when the object is age-encrypted: the public keys whose secret halves can open it.
  encryption?: { format: 'age'; recipients: readonly string[] };
  // Present with STORAGE_RETAIN_DAYS: the store keeps the object unchangeable until `until` (ISO).
  retention?: { mode: 'governance' | 'compliance'; until: string };
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
