// The callback's JSON, as types: what a control plane receives from verifyCallback. payload.schema.json
// is the same contract as a JSON Schema. Self-contained (no imports) so that the verifier's
// declarations ship without the rest of the job.

// One callback: Standard Webhooks' envelope around the facts of one backup, or (with DB_NAMES) the
// summary of a run that backed up several databases one by one.
export type CallbackPayload = CallbackSucceeded | CallbackFailed | CallbackSummary;

// What the run did: `backup`, `restore` (JOB_MODE=restore) or `verify` (JOB_MODE=verify).
export type CallbackOperation = 'backup' | 'restore' | 'verify';

// The run succeeded; `data.object` says which object it stored (backup) or read (restore, verify).
export type CallbackSucceeded = {
  type: `${CallbackOperation}.succeeded`;
  // When the run finished (ISO-8601, UTC).
  timestamp: string;
  data: CallbackFacts & { status: 'succeeded'; object: CallbackObject };
};

// The run failed; `data.error` says where and why. A failed backup stored nothing, except when only
// its verification failed: then `data.object` names the stored object and `data.verification` says why.
export type CallbackFailed = {
  type: `${CallbackOperation}.failed`;
  timestamp: string;
  data: CallbackFacts & { status: 'failed'; error: CallbackErrorInfo; object?: CallbackObject };
};

// The `data` of either kind of backup callback; `status` tells which.
export type CallbackData = (CallbackSucceeded | CallbackFailed)['data'];

// Sent once per run with DB_NAMES, after every database's own callback: what this task stored.
export type CallbackSummary = {
  type: 'backup.summary';
  timestamp: string;
  data: CallbackSummaryData;
};

// A run over several databases. `status` is succeeded only when every database of this task was
// stored; `exitCode` is the process's, the most severe of the databases' (README: exit codes).
export type CallbackSummaryData = {
  runId: string;
  status: 'succeeded' | 'failed';
  exitCode: number;
  exitName: string;
  producer: { name: string; version: string };
  database: { type: string; host: string | null };
  // This task's share: positions index, index + count, … of the sorted list of databases.
  task: { index: number; count: number };
  // How many databases this task had, and what became of them.
  counts: { selected: number; stored: number; failed: number; skipped: number };
  // One entry per database, in the order they ran; `runId` is that database's own callback's
  // (absent for a skipped one). Cut short to keep the payload small: `omitted` says how many are missing.
  databases: CallbackSummaryEntry[];
  omitted: number;
  // Present when the run failed before any database ran (DB_NAMES=* could not list them).
  error?: CallbackErrorInfo;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  platform?: CallbackPlatform;
};

// What became of one database in a run over several.
export type CallbackSummaryEntry = { name: string; status: 'stored' | 'failed' | 'skipped'; exitName: string; runId: string | null };

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
  // Present when the run verified an object (JOB_MODE=verify, or BACKUP_VERIFY=true).
  verification?: CallbackVerification;
};

// A restore into a throw-away server compared with the counts captured at dump time.
export type CallbackVerification = {
  status: 'passed' | 'failed';
  // rows per table, keys per Redis database, or databases of a cluster.
  unit: 'rows' | 'keys' | 'databases';
  // false when no facts were captured at dump time: the object restored, nothing was compared.
  factsFound: boolean;
  tables: number;
  rowsCompared: number;
  // At most 20 (names clipped to 256 bytes); `expected`/`actual` is null where the name is absent.
  mismatches: { name: string; expected: number | null; actual: number | null }[];
  durationMs: number;
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
