// Turns the facts of one run (RunReport) into the callback's JSON: the Standard Webhooks envelope
// `{type, timestamp, data}` described by payload.schema.json. Never carries a credential.
import type { RunReport } from '../report.ts';
import type { CallbackFacts, CallbackPayload, CallbackPlatform } from './payload-types.ts';
import { PRODUCT, VERSION } from './version.ts';

export type { CallbackPayload } from './payload-types.ts';

// A control plane should be able to accept callbacks with a small request-size limit.
export const MAX_PAYLOAD_BYTES = 20_000;
// Room for a useful error (a scrubbed stderr tail) while keeping the payload far below the limit.
const MAX_MESSAGE_BYTES = 4096;
// Names, hosts and platform labels are short; a longer one is a mistake we must not amplify.
const MAX_FIELD_BYTES = 512;
// An object key may be 1024 bytes (S3's limit) and its URL adds the bucket and scheme.
const MAX_LOCATION_BYTES = 2048;
const ELLIPSIS = '…';
const REDACTED = '[redacted]';

export type PayloadOptions = {
  // Literal secret values to remove from the error message, in case a caller forgot to scrub it.
  secrets?: readonly string[];
};

// The callback payload for a finished run: `backup.succeeded` with the stored object, or
// `backup.failed` with the error. Always under MAX_PAYLOAD_BYTES when serialised.
export function buildPayload(report: RunReport, options: PayloadOptions = {}): CallbackPayload {
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
  const platform = platformOf(report);
  if (platform) facts.platform = platform;
  // runId and status lead, so a person reading the JSON sees first which run and how it ended.
  const { runId, ...rest } = facts;

  if (report.status === 'succeeded' && report.object) {
    const object = report.object;
    const stored = {
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
    return { type: 'backup.succeeded', timestamp: facts.finishedAt, data: { runId, status: 'succeeded', ...rest, object: stored } };
  }

  const error = report.error ?? { stage: 'internal', code: report.exitName, message: 'the run failed without an error report' };
  const info = { stage: error.stage, code: error.code, message: clip(scrub(error.message, options.secrets ?? []), MAX_MESSAGE_BYTES) };
  const payload: CallbackPayload = { type: 'backup.failed', timestamp: facts.finishedAt, data: { runId, status: 'failed', ...rest, error: info } };
  // Escaping (control characters become \u00XX) can still grow the message: shorten it until it fits.
  while (Buffer.byteLength(JSON.stringify(payload)) > MAX_PAYLOAD_BYTES && info.message.length > 0) {
    info.message = clip(info.message, Math.floor(Buffer.byteLength(info.message) / 2));
  }
  return payload;
}

// The platform context, only the parts that are present; unknown values inside are null.
function platformOf(report: RunReport): CallbackPlatform | undefined {
  const { cloudRun, kubernetes } = report.platform;
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

// A URL without user:password@ and without a query string (a SAS token or a signature lives there).
function withoutCredentials(location: string): string {
  if (!URL.canParse(location)) return location.replace(/\?.*$/s, '');
  const url = new URL(location);
  if (!url.username && !url.password && !url.search && !url.hash) return location;
  url.username = '';
  url.password = '';
  url.search = '';
  url.hash = '';
  return url.href;
}

// Replaces every literal secret (longest first, so a secret containing another goes whole).
export function scrub(text: string, secrets: readonly string[]): string {
  return [...secrets]
    .filter((secret) => secret.length > 0)
    .sort((a, b) => b.length - a.length)
    .reduce((result, secret) => result.replaceAll(secret, REDACTED), text);
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
