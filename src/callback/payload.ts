// Turns the facts of one run (RunReport) into the callback's JSON: the Standard Webhooks envelope
// `{type, timestamp, data}` described by payload.schema.json. Never carries a credential.
import type { Platform } from '../config.ts';
import { scrubSecrets, withoutCredentials } from '../redact.ts';
import type { RunReport, SummaryReport } from '../report.ts';
import type { CallbackFacts, CallbackFailed, CallbackObject, CallbackPayload, CallbackPlatform, CallbackSucceeded, CallbackSummary, CallbackSummaryEntry, CallbackVerification } from './payload-types.ts';
import { PRODUCT, VERSION } from './version.ts';

export type { CallbackPayload } from './payload-types.ts';

// Mismatches listed in a callback (names clipped to MAX_NAME_BYTES): at most ~6 KB of the payload.
// The log line carries every count.
const MAX_MISMATCHES = 20;
const MAX_NAME_BYTES = 256;
// A control plane should be able to accept callbacks with a small request-size limit.
export const MAX_PAYLOAD_BYTES = 20_000;
// Room for a useful error (a scrubbed stderr tail) while keeping the payload far below the limit.
const MAX_MESSAGE_BYTES = 4096;
// Names, hosts and platform labels are short; a longer one is a mistake we must not amplify.
const MAX_FIELD_BYTES = 512;
// An object key may be 1024 bytes (S3's limit) and its URL adds the bucket and scheme.
const MAX_LOCATION_BYTES = 2048;
const ELLIPSIS = '…';

export type PayloadOptions = {
  // Literal secret values to remove from the error message, in case a caller forgot to scrub it.
  secrets?: readonly string[];
};

// The callback payload for a finished run: `backup.succeeded` with the stored object, or
// `backup.failed` with the error. Always under MAX_PAYLOAD_BYTES when serialised.
export function buildPayload(report: RunReport, options: PayloadOptions = {}): CallbackSucceeded | CallbackFailed {
  const facts: CallbackFacts = {
    runId: clip(report.runId, MAX_FIELD_BYTES),
    exitCode: report.exitCode,
    exitName: report.exitName,
    producer: { name: PRODUCT, version: VERSION },
    database: {
      type: report.database.type,
      host: optional(report.database.host),
      name: optional(report.database.name),
    },
    dumpTool: { name: clip(report.dumpTool.name, MAX_FIELD_BYTES), version: clip(report.dumpTool.version, MAX_FIELD_BYTES) },
    rawBytes: report.rawBytes,
    startedAt: report.startedAt.toISOString(),
    finishedAt: report.finishedAt.toISOString(),
    durationMs: Math.max(0, Math.round(report.durations.totalMs)),
    durations: {
      prepareMs: Math.max(0, Math.round(report.durations.prepareMs)),
      streamMs: Math.max(0, Math.round(report.durations.streamMs)),
    },
  };
  const platform = platformOf(report.platform);
  if (platform) facts.platform = platform;
  if (report.verification) facts.verification = verificationOf(report.verification);
  // runId and status lead, so a person reading the JSON sees first which run and how it ended.
  const { runId, ...rest } = facts;
  const operation = report.operation;
  const object = report.object;
  const stored: CallbackObject | undefined = object && {
    storageType: object.storageType,
    bucket: clip(object.bucket, MAX_FIELD_BYTES),
    key: clip(object.key, MAX_LOCATION_BYTES),
    url: clip(withoutCredentials(object.url), MAX_LOCATION_BYTES),
    bytes: object.bytes,
    sha256: object.sha256,
    compression: object.compression,
    ...(object.encryption && { encryption: { format: object.encryption.format, recipients: object.encryption.recipients.map((r) => clip(r, MAX_FIELD_BYTES)) } }),
    ...(object.retention && { retention: { ...object.retention } }),
  };
  if (report.status === 'succeeded' && stored) {
    return { type: `${operation}.succeeded`, timestamp: facts.finishedAt, data: { runId, status: 'succeeded', ...rest, object: stored } };
  }

  const error = report.error ?? { stage: 'internal', code: report.exitName, message: 'the run failed without an error report' };
  const info = { stage: error.stage, code: error.code, message: clip(scrubSecrets(error.message, options.secrets ?? []), MAX_MESSAGE_BYTES) };
  // A failed backup names an object only when it is stored and only its verification failed.
  const keepObject = stored !== undefined && (operation !== 'backup' || report.verification !== undefined);
  const payload: CallbackPayload = {
    type: `${operation}.failed`,
    timestamp: facts.finishedAt,
    data: { runId, status: 'failed', ...rest, error: info, ...(keepObject && { object: stored }) },
  };
  // Escaping (control characters become \u00XX) can still grow the message: shorten it until it fits.
  while (Buffer.byteLength(JSON.stringify(payload)) > MAX_PAYLOAD_BYTES && info.message.length > 0) {
    info.message = clip(info.message, Math.floor(Buffer.byteLength(info.message) / 2));
  }
  return payload;
}

function verificationOf(verification: NonNullable<RunReport['verification']>): CallbackVerification {
  return {
    status: verification.status,
    unit: verification.unit,
    factsFound: verification.factsFound,
    tables: verification.tables,
    rowsCompared: verification.rowsCompared,
    mismatches: verification.mismatches.slice(0, MAX_MISMATCHES).map((m) => ({ name: clip(m.name, MAX_NAME_BYTES), expected: m.expected, actual: m.actual })),
    durationMs: Math.max(0, Math.round(verification.durationMs)),
  };
}

// The `backup.summary` payload of a run over several databases: counts always exact, the list of
// databases cut short (`omitted` says by how many) so that it stays under MAX_PAYLOAD_BYTES.
export function buildSummaryPayload(summary: SummaryReport, options: PayloadOptions = {}): CallbackSummary {
  const count = (status: CallbackSummaryEntry['status']) => summary.databases.filter((entry) => entry.status === status).length;
  const finishedAt = summary.finishedAt.toISOString();
  const payload: CallbackSummary = {
    type: 'backup.summary',
    timestamp: finishedAt,
    data: {
      runId: clip(summary.runId, MAX_FIELD_BYTES),
      status: summary.status,
      exitCode: summary.exitCode,
      exitName: summary.exitName,
      producer: { name: PRODUCT, version: VERSION },
      database: { type: summary.database.type, host: optional(summary.database.host) },
      task: summary.task,
      counts: { selected: summary.databases.length, stored: count('stored'), failed: count('failed'), skipped: count('skipped') },
      databases: [],
      omitted: 0,
      ...(summary.error && {
        error: { stage: summary.error.stage, code: summary.error.code, message: clip(scrubSecrets(summary.error.message, options.secrets ?? []), MAX_MESSAGE_BYTES) },
      }),
      startedAt: summary.startedAt.toISOString(),
      finishedAt,
      durationMs: Math.max(0, summary.finishedAt.getTime() - summary.startedAt.getTime()),
    },
  };
  const platform = platformOf(summary.platform);
  if (platform) payload.data.platform = platform;
  const entries: CallbackSummaryEntry[] = summary.databases.map((entry) => ({
    name: clip(entry.name, MAX_FIELD_BYTES),
    status: entry.status,
    exitName: entry.exitName,
    runId: entry.runId === undefined ? null : clip(entry.runId, MAX_FIELD_BYTES),
  }));
  // Room for `omitted` to grow to its widest; each entry costs its JSON and a comma.
  let room = MAX_PAYLOAD_BYTES - Buffer.byteLength(JSON.stringify(payload)) - String(entries.length).length;
  for (const entry of entries) {
    room -= Buffer.byteLength(JSON.stringify(entry)) + 1;
    if (room < 0) break;
    payload.data.databases.push(entry);
  }
  payload.data.omitted = entries.length - payload.data.databases.length;
  return payload;
}

// The platform context, only the parts that are present; unknown values inside are null.
function platformOf(where: Platform): CallbackPlatform | undefined {
  const { cloudRun, kubernetes } = where;
  if (!cloudRun && !kubernetes) return undefined;
  const platform: CallbackPlatform = {};
  if (cloudRun) {
    platform.cloudRun = {
      job: clip(cloudRun.job, MAX_FIELD_BYTES),
      execution: optional(cloudRun.execution),
      taskIndex: cloudRun.taskIndex ?? null,
      taskAttempt: cloudRun.taskAttempt ?? null,
    };
  }
  if (kubernetes) {
    platform.kubernetes = { namespace: optional(kubernetes.namespace), pod: optional(kubernetes.pod), job: optional(kubernetes.job) };
  }
  return platform;
}

function optional(value: string | undefined): string | null {
  return value === undefined ? null : clip(value, MAX_FIELD_BYTES);
}

// Shortens text to at most maxBytes of UTF-8, cutting on a character boundary and marking the cut.
export function clip(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text) <= maxBytes) return text;
  const budget = maxBytes - Buffer.byteLength(ELLIPSIS);
  if (budget <= 0) return '';
  let result = '';
  let used = 0;
  for (const char of text) {
    const size = Buffer.byteLength(char);
    if (used + size > budget) break;
    result += char;
    used += size;
  }
  return result + ELLIPSIS;
}
