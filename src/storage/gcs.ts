// STORAGE_TYPE=gcs: Google Cloud Storage, through @google-cloud/storage's resumable upload.
//
// The session is created first (with ifGenerationMatch=0: the object must not exist), then the body
// streams into it. By default the whole body goes in ONE streaming request (`Content-Range: bytes
// 0-*/*`), so memory stays flat and there is no chunk or object-count ceiling below GCS's 5 TiB.
// GCS creates the object only when that request completes; a request cut off mid-body never
// finalizes. So on a body error or abort we cut our own connections (the SDK would otherwise keep
// the request open forever: its inner stream is destroyed without an error and never aborts it),
// then cancel the session (DELETE on the session URI → 499) so nothing lingers.
// With STORAGE_RETAIN_DAYS the session's object metadata carries the object's retention.
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { pipeline } from 'node:stream/promises';
import type { StorageOptions } from '@google-cloud/storage';
import { makeValidator, str } from 'envalid';
import { StorageError, type StorageFailure } from '../errors.ts';
import type { Logger } from '../log.ts';
import { parseSize } from '../units.ts';
import { NETWORK_ERROR_CODES, rootCause } from './failure.ts';
import type { StorageDriver } from './types.ts';

// GCS persists resumable data in 256 KiB units: a chunk size must be a multiple of it.
const CHUNK_UNIT = 256 * 1024;
// Retries of one failed request (session creation, status query) before the upload fails: the SDK's
// default; the platform's own job retry covers longer outages.
const MAX_RETRIES = 3;
// Cancelling is best-effort cleanup (an unfinished session expires by itself within a week and is
// never an object): it must not hold up the run's exit.
const CANCEL_TIMEOUT_MS = 10_000;
// What GCS answers when a session is cancelled, or when it is already gone.
const CANCELLED_STATUSES = new Set([499, 404, 410]);
// The SDK's stream when GCS or the network dropped the request mid-body: worth retrying the job, like NETWORK_ERROR_CODES.
const PREMATURE_CLOSE = 'ERR_STREAM_PREMATURE_CLOSE';
// The SDK's error when a failed request cannot be retried because the bytes are already gone: a
// transient failure of GCS or the network, worth retrying the whole job.
const UNREPLAYABLE = /offset is lower than the number of bytes written/;
// google-auth-library's messages when the credentials themselves are missing or refused.
const CREDENTIAL_FAILURE = /could not load the default credentials|invalid_grant|unauthorized_client|invalid_client|could not refresh access token/i;

// STORAGE_RETAIN_MODE → GCS's object retention mode (the JSON API's names for GOVERNANCE and COMPLIANCE).
const RETENTION_MODE = { governance: 'Unlocked', compliance: 'Locked' } as const;

// The storage classes an object can be written with; unset = the bucket's default class.
export const GCS_STORAGE_CLASSES = ['STANDARD', 'NEARLINE', 'COLDLINE', 'ARCHIVE'] as const;

// A Google credentials JSON (service account key, or a workload identity federation config). Kept
// as the string: the config's secret scrubbing matches it literally. Errors never echo the value.
const credentialsJson = makeValidator<string>((input) => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(input);
  } catch {
    throw new Error('is not valid JSON (expected a service account key file)');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || typeof (parsed as { type?: unknown }).type !== 'string') {
    throw new Error('must be a Google credentials JSON object with a "type" field');
  }
  const credentials = parsed as Record<string, unknown>;
  if (credentials.type === 'service_account' && (typeof credentials.client_email !== 'string' || typeof credentials.private_key !== 'string')) {
    throw new Error('a service_account key needs client_email and private_key');
  }
  return input;
});

// `16MiB`, `8M`… a multiple of 256 KiB, as GCS requires of every chunk but the last.
const chunkSize = makeValidator<number>((input) => {
  const bytes = parseSize(input);
  if (bytes === undefined || bytes < CHUNK_UNIT || bytes % CHUNK_UNIT !== 0) throw new Error(`"${input}" is not a multiple of 256KiB (e.g. 8MiB, 16MiB)`);
  return bytes;
});

// The variables of STORAGE_TYPE=gcs (besides STORAGE_BUCKET and STORAGE_ENDPOINT).
const env = {
  GCS_CREDENTIALS_JSON: credentialsJson({ default: undefined, desc: 'service account key JSON; unset = Application Default Credentials' }),
  STORAGE_CLASS: str({ choices: GCS_STORAGE_CLASSES, default: undefined, desc: 'storage class of the object; unset = the bucket default' }),
  // Unset = one streaming request (flat memory, fastest). Set = that many bytes per request, held in
  // memory until GCS confirms them, so a dropped connection resumes instead of failing the run.
  STORAGE_PART_SIZE: chunkSize({ default: undefined, desc: 'GCS chunk size (multiple of 256KiB); unset = one streaming request' }),
};
type Phase = 'session' | 'stream';

// The gcs driver: its variables, its secret, and the target it opens.
export const gcs = {
  env,
  secrets: ['GCS_CREDENTIALS_JSON'],
  retention: true,
  classify,
  open(common, settings) {
    const endpoint = common.endpoint?.replace(/\/+$/, '');
    const credentials = settings.GCS_CREDENTIALS_JSON === undefined ? undefined : (JSON.parse(settings.GCS_CREDENTIALS_JSON) as StorageOptions['credentials']);
    const base: StorageOptions = {
      ...(endpoint !== undefined && {
        apiEndpoint: endpoint,
        // Private and regional endpoints (*.googleapis.com) and explicit credentials get the token;
        // emulators get none.
        useAuthWithCustomEndpoint: isGoogleHost(endpoint) || credentials !== undefined,
      }),
      ...(credentials !== undefined && { credentials }),
    };
    const bucket = common.bucket;
    const readFailure = (error: unknown, operation: string, where: string): StorageError => {
      const status = statusOf(error);
      const detail = `${status === undefined ? '' : `HTTP ${status}: `}${serverMessage(error) ?? messageOf(error)}`;
      return new StorageError(`gcs ${operation} of ${where} failed: ${detail}`, status === 404 ? 'missing' : classify(error), { cause: error });
    };
    const reader = async () => new (await import('@google-cloud/storage')).Storage({ ...base, retryOptions: { maxRetries: MAX_RETRIES } });

    return {
      async download(key, signal) {
        const where = `gs://${bucket}/${key}`;
        const target = (await reader()).bucket(bucket);
        const file = target.file(key);
        try {
          // The object's metadata first: an absent key fails here, before any byte is expected.
          const [metadata] = await file.getMetadata();
          signal.throwIfAborted();
          // Pinned to the generation just seen; the pipeline's SHA-256 and the restore tool check the
          // bytes, so the SDK's pure-JS CRC32C (a core's worth of CPU) stays off, as on upload.
          const pinned = metadata.generation === undefined ? file : target.file(key, { generation: metadata.generation });
          const stream = pinned.createReadStream({ validation: false });
          signal.addEventListener('abort', () => stream.destroy(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason))), { once: true });
          return stream;
        } catch (error) {
          throw signal.aborted ? signal.reason : readFailure(error, 'download', where);
        }
      },

      async list(prefix, signal) {
        try {
          const [files] = await (await reader()).bucket(bucket).getFiles({ prefix, autoPaginate: true });
          signal.throwIfAborted();
          return files.map((file) => ({ key: file.name, bytes: Number(file.metadata.size ?? 0) }));
        } catch (error) {
          throw signal.aborted ? signal.reason : readFailure(error, 'list', `gs://${bucket}/${prefix}`);
        }
      },


      async upload({ key, body, signal, contentType, metadata, retainUntil, log }) {
        const where = `gs://${bucket}/${key}`;
        // Our own sockets, so that a failed upload can cut the request the SDK leaves open.
        const agents = { http: new HttpAgent({ keepAlive: true }), https: new HttpsAgent({ keepAlive: true }) };
        let stopped = false;
        const stop = () => {
          stopped = true;
          agents.http.destroy();
          agents.https.destroy();
        };
        // Loaded only when a GCS upload runs, so other runs do not carry the SDK in memory.
        const { RETRYABLE_ERR_FN_DEFAULT, Storage } = await import('@google-cloud/storage');
        const storage = new Storage({
          ...base,
          // Once this upload has failed, the SDK must not retry anything in the background.
          retryOptions: { maxRetries: MAX_RETRIES, retryableErrorFn: (error) => !stopped && RETRYABLE_ERR_FN_DEFAULT(error) },
        });
        const file = storage.bucket(bucket).file(key);
        const agent = (url: URL) => (url.protocol === 'http:' ? agents.http : agents.https);
        // Every request for this file (gaxios → node-fetch) goes through these agents.
        file.interceptors.push({ request: (options) => Object.assign(options, { agent }) as Parameters<typeof file.request>[0] });

        const options = {
          metadata: {
            contentType,
            ...(settings.STORAGE_CLASS !== undefined && { storageClass: settings.STORAGE_CLASS }),
            metadata: { ...metadata },
            // Object Retention Lock, set by the request that creates the object.
            ...(retainUntil !== undefined && { retention: { mode: RETENTION_MODE[retainUntil.mode], retainUntilTime: retainUntil.date.toISOString() } }),
          },
          // Never overwrite: the session is refused (412) if an object already exists at the key.
          preconditionOpts: { ifGenerationMatch: 0 },
        };
        let session: string | undefined;
        let phase: Phase = 'session';
        // pipeline() destroys every stream with the first error, so body.errored alone cannot say
        // whether the body failed or the upload did: the first 'error' event can.
        let bodyFailedFirst = body.errored !== null;
        let uploadFailure: StorageError | undefined;
        const onBodyError = () => {
          bodyFailedFirst ||= uploadFailure === undefined;
        };
        const onUploadError = (error?: unknown) => {
          if (bodyFailedFirst || uploadFailure !== undefined) return;
          uploadFailure = describeFailure(error ?? new Error('the upload stream closed before it finished'), phase, bucket, where, retainUntil !== undefined);
          // Destroy the body with the classified error before pipeline() does so with the SDK's raw
          // one: the stages upstream of the body (the run's pipeline) then report this error too.
          body.destroy(uploadFailure);
        };
        body.once('error', onBodyError);
        signal.addEventListener('abort', stop, { once: true });
        try {
          signal.throwIfAborted();
          if (body.errored) throw body.errored;
          [session] = await file.createResumableUpload(options);
          signal.throwIfAborted();
          phase = 'stream';
          const sink = file.createWriteStream({
            ...options,
            uri: session,
            offset: 0,
            resumable: true,
            // CRC32C in pure JS costs a core; the pipeline computes its own SHA-256 natively.
            validation: false,
            ...(settings.STORAGE_PART_SIZE !== undefined && { chunkSize: settings.STORAGE_PART_SIZE }),
          });
          sink.once('error', onUploadError);
          sink.once('close', () => {
            if (!sink.writableFinished) onUploadError();
          });
          await pipeline(body, sink, { signal });
          return { url: where };
        } catch (error) {
          stop();
          if (session !== undefined) await cancelSession(session, where, log);
          const failure = uploadFailure ?? describeFailure(error, phase, bucket, where, retainUntil !== undefined);
          throw bodyFailedFirst || signal.aborted ? rootCause(failure, body, signal, `gcs upload to ${where} failed`, 'other') : failure;
        } finally {
          body.off('error', onBodyError);
          signal.removeEventListener('abort', stop);
          stop();
        }
      },
    };
  },
} satisfies StorageDriver<typeof env>;

// DELETE on the session URI, as GCS documents for cancelling; the URI itself authorizes the request.
async function cancelSession(session: string, where: string, log: Logger): Promise<void> {
  try {
    const response = await fetch(session, { method: 'DELETE', body: new Uint8Array(0), signal: AbortSignal.timeout(CANCEL_TIMEOUT_MS) });
    await response.body?.cancel();
    if (!CANCELLED_STATUSES.has(response.status)) {
      log.warn({ object: where, status: response.status }, 'could not cancel the GCS upload session; it was never finalized and expires within a week');
    }
  } catch (error) {
    // The session URI is a credential for the upload: log the reason, never the URI.
    log.warn({ object: where, reason: messageOf(error) }, 'could not cancel the GCS upload session; it was never finalized and expires within a week');
  }
}

// The SDK's failure as a StorageError that says what happened and how to treat it.
function describeFailure(error: unknown, phase: Phase, bucket: string, where: string, retained: boolean): StorageError {
  if (error instanceof StorageError) return error;
  if (error instanceof RangeError && UNREPLAYABLE.test(error.message)) {
    const detail = 'GCS lost part of the streaming request and a stream cannot be replayed (STORAGE_PART_SIZE makes uploads resumable)';
    return new StorageError(`gcs upload to ${where} failed: ${detail}`, 'unavailable', { cause: error });
  }
  const status = statusOf(error);
  const detail = `${status === undefined ? '' : `HTTP ${status}: `}${serverMessage(error) ?? messageOf(error)}`;
  // A bucket without Object Retention Lock refuses the retention field (400); no retry changes that.
  if (retained && phase === 'session' && status === 400 && /retention/i.test(detail)) {
    return new StorageError(
      `gcs upload to ${where} failed: ${detail}; STORAGE_RETAIN_DAYS needs a bucket with object retention enabled (docs/retention.md), or unset STORAGE_RETAIN_DAYS`,
      'denied',
      { cause: error },
    );
  }
  if (retained && status === 403) {
    return new StorageError(`gcs upload to ${where} failed: ${detail}; writing retained objects also needs storage.objects.setRetention (docs/retention.md)`, 'denied', { cause: error });
  }
  if (status === 412) return new StorageError(`refusing to overwrite: ${where} already exists`, 'other', { cause: error });
  if (status === 404 && phase === 'session') {
    return new StorageError(`gcs bucket ${bucket} does not exist or these credentials cannot see it (${detail})`, 'denied', { cause: error });
  }
  return new StorageError(`gcs upload to ${where} failed: ${detail}`, classify(error), { cause: error });
}

// Which StorageFailure an SDK, HTTP, network or credentials error is.
export function classify(error: unknown): StorageFailure {
  const status = statusOf(error);
  if (status === 401 || status === 403) return 'denied';
  if (status === 408 || status === 429 || (status !== undefined && status >= 500)) return 'unavailable';
  if (status !== undefined) return 'other';
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === 'string' && (NETWORK_ERROR_CODES.has(code.toUpperCase()) || code.toUpperCase() === PREMATURE_CLOSE)) return 'unavailable';
  if (CREDENTIAL_FAILURE.test(messageOf(error))) return 'denied';
  return 'other';
}

// The HTTP status behind an SDK error: GaxiosError (response.status), ApiError and the resumable
// upload's own errors (numeric code), or its "Retry limit exceeded - status: 503" message.
function statusOf(error: unknown): number | undefined {
  const candidate = error as { code?: unknown; status?: unknown; response?: { status?: unknown } } | undefined;
  for (const value of [candidate?.response?.status, candidate?.status, candidate?.code]) {
    if (typeof value === 'number' && value >= 100 && value <= 599) return value;
    if (typeof value === 'string' && /^[1-5]\d\d$/.test(value)) return Number(value);
  }
  const match = /\bstatus: ([1-5]\d\d)\b/.exec(messageOf(error));
  return match ? Number(match[1]) : undefined;
}

// GCS's JSON error message ({"error": {"message": …}}) when the response carried one.
function serverMessage(error: unknown): string | undefined {
  const data = (error as { response?: { data?: unknown } } | undefined)?.response?.data;
  const message = (data as { error?: { message?: unknown } } | undefined)?.error?.message;
  return typeof message === 'string' ? message : undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isGoogleHost(endpoint: string): boolean {
  return URL.parse(endpoint)?.hostname.endsWith('.googleapis.com') ?? false;
}
