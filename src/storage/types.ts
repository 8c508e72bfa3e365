// What every storage target must do. One file per STORAGE_TYPE implements it; registry.ts lists them.
import type { Readable } from 'node:stream';
import type { Logger } from '../log.ts';
import type { EnvSpecs, EnvValues } from '../config-specs.ts';
import type { StorageFailure } from '../errors.ts';

// One upload: the body is the finished backup stream; it errors if the dump fails.
export type UploadRequest = {
  key: string;
  body: Readable;
  signal: AbortSignal;
  contentType: string;
  // Stored with the object.
  metadata: Readonly<Record<string, string>>;
  // Metadata known only once `body` has ended (planb-sha256). A target that writes metadata when it
  // commits (Azure's block list) adds it; S3, GCS and local fix metadata before the first byte.
  lateMetadata?: () => Readonly<Record<string, string>>;
  // Expected stored size in bytes when known, to size parts; undefined when unknown.
  sizeHint: number | undefined;
  // With STORAGE_RETAIN_DAYS: the object is written locked until this date, in this mode. A store
  // (bucket, container) not set up for it refuses, and the target rejects with a 'denied' StorageError
  // that says what to enable.
  retainUntil?: { date: Date; mode: Retention['mode'] } | undefined;
  log: Logger;
};

// Where the object ended up, for the log and the callback.
export type StoredObject = { url: string };

// An object found by list(): its full key and its stored size in bytes.
export type ListedObject = { key: string; bytes: number };

// The contract every target satisfies (test/integration/storage-contract.ts checks it):
// - streams `body` to `key` with bounded memory, never buffering the whole body and never
//   touching the local disk (local storage excepted);
// - resolves only once the object is complete and visible at `key`;
// - if `body` errors or `signal` aborts, rejects with that error (the root cause, not a cleanup
//   error) and leaves nothing at `key`: no object, no committed blocks, no finalized session;
//   cleanup failures are logged as warnings;
// - never overwrites an existing object at `key`;
// - classifies its own failures as StorageError 'denied' | 'unavailable' | 'missing' | 'other'.
// The read side (restore, verify):
// - download() resolves once the object is known to exist, with a stream of its stored bytes; an
//   absent key rejects with StorageError 'missing'; `signal` aborting destroys the stream;
// - list() returns every complete object whose key starts with `prefix` (never a temporary name or
//   an uncommitted upload), in any order.
export type StorageTarget = {
  upload(request: UploadRequest): Promise<StoredObject>;
  download(key: string, signal: AbortSignal): Promise<Readable>;
  list(prefix: string, signal: AbortSignal): Promise<ListedObject[]>;
};

// Write-once retention (STORAGE_RETAIN_DAYS, STORAGE_RETAIN_MODE): `governance` can be lifted by
// whoever holds a special permission, `compliance` by nobody until the date (S3's names; GCS and Azure
// call them Unlocked and Locked).
export type Retention = { days: number; mode: 'governance' | 'compliance' };

// Settings every target shares, from STORAGE_BUCKET / STORAGE_ENDPOINT / STORAGE_REGION /
// STORAGE_RETAIN_DAYS.
export type CommonStorageSettings = {
  bucket: string;
  endpoint: string | undefined;
  region: string | undefined;
  retention?: Retention | undefined;
};

// A STORAGE_TYPE: the variables it reads (validated with everything else in config.ts), which of
// them are secrets (and so may come from X_FILE), whether it can write objects locked (retainUntil),
// how to open a target from their values, and how to classify its errors.
export type StorageDriver<S extends EnvSpecs = EnvSpecs> = {
  env: S;
  secrets: readonly string[];
  // Cuts the upload into a limited number of parts sized from UploadRequest.sizeHint: without a hint
  // the run asks the database for its size first.
  plansParts?: boolean;
  retention: boolean;
  open(common: CommonStorageSettings, settings: EnvValues<S>): StorageTarget;
  // Which StorageFailure an error of this target's SDK, server or file system is.
  classify(error: unknown): StorageFailure;
};
