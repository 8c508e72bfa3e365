// The callback's JSON, as types: what a control plane receives from verifyCallback. payload.schema.json
// is the same contract as a JSON Schema. Self-contained (no imports) so that the verifier's
// declarations ship without the rest of the job.

// One callback: Standard Webhooks' envelope around the facts of one run.
export type CallbackPayload = CallbackSucceeded | CallbackFailed;

// The backup is stored; `data.object` says where.
export type CallbackSucceeded = {
  type: 'backup.succeeded';
  // When the run finished (ISO-8601, UTC).
  timestamp: string;
  data: CallbackFacts & { status: 'succeeded'; object: CallbackObject };
};

// The backup failed and nothing was stored; `data.error` says where and why.
export type CallbackFailed = {
  type: 'backup.failed';
  timestamp: string;
  data: CallbackFacts & { status: 'failed'; error: CallbackErrorInfo };
};

// The `data` of either kind of callback; `status` tells which.
export type CallbackData = CallbackPayload['data'];

// The facts every callback carries. A fact that does not apply is absent; an unknown value inside a
// present object is null.
export type CallbackFacts = {
  runId: string;
  // The process's exit code and its name in the documented table (e.g. 0 OK, 65 DUMP_FAILED).
  exitCode: number;
  exitName: string;
  producer: { name: string; version: string };
  database: { type: string; host: string | null; name: string | null };
  dumpTool: { name: string; version: string };
  // Bytes the dump tool wrote, before compression.
  rawBytes: number;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  // Wall time of each stage; the dump and the upload are one stream, so `streamMs` covers both.
  durations: { prepareMs: number; streamMs: number };
  platform?: CallbackPlatform;
};

// Where the backup is stored and what it holds.
export type CallbackObject = {
  storageType: string;
  bucket: string;
  key: string;
  // Location of the object, without credentials or query string.
  url: string;
  bytes: number;
  sha256: string;
  compression: 'zstd' | 'gzip' | 'none';
  // Present when the object is age-encrypted: the public keys (age1…) whose secret halves can open it.
  encryption?: { format: 'age'; recipients: string[] };
  // Present when the object is write-once: the store refuses to change or delete it until `until` (ISO).
  retention?: { mode: 'governance' | 'compliance'; until: string };
};

// Why a run failed. `code` is the exit name; `message` is scrubbed of secrets and at most 4 KiB.
export type CallbackErrorInfo = { stage: string; code: string; message: string };

// The scheduler's context, each part present only when the job runs there.
export type CallbackPlatform = {
  cloudRun?: { job: string; execution: string | null; taskIndex: number | null; taskAttempt: number | null };
  kubernetes?: { namespace: string | null; pod: string | null; job: string | null };
};
