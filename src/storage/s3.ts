// STORAGE_TYPE=s3: Amazon S3 and S3-compatible stores (MinIO, Cloudflare R2, Ceph, GCS interop): a body
// that fits in one part is one PutObject, a longer one a multipart upload (putObject below). A body that
// errors, or an abort before the object is committed, stops the part uploads in flight and aborts the
// multipart upload, so nothing appears at the key; the caller sees the body's error or the abort reason,
// and a failed cleanup only as a warning. With STORAGE_RETAIN_DAYS the creating request carries the
// Object Lock (mode and retain-until date) and every write a CRC32, which S3 demands of locked writes.
//
// Part sizing (planParts). S3 allows 10,000 parts of 5 MiB–5 GiB and objects up to 5 TiB; parts are
// equal, chosen before the first byte. The upload's own memory is its part buffers, allocated once and
// reused (parts.ts):
//   buffers = partSize × (concurrency + 1)
// (parts in flight, the part being filled). @aws-sdk/lib-storage, used before, concatenated every part
// into a fresh buffer, and the sent ones waited for the garbage collector: the job's peak grew with the
// dump's length, 109 → 161 → 201 MiB for 0.1 GB, 10 GB, 50 GiB (docs/benchmarks.md, bar 3). Measured with the
// bundled job: 8 MiB × 4 peaked ~25 MiB above 8 MiB × 2. So:
// - size unknown: 8 MiB × 2, buffers 24 MiB, objects up to 78.1 GiB (lib-storage's own 5 MiB fallback,
//   like rclone's, stops at 48.8 GiB);
// - size known (BACKUP_EXPECTED_SIZE): part = max(8 MiB, 2 × size / 10,000) in whole MiB, so an estimate
//   low by 2× still fits: 11 MiB for 50 GiB (buffers 33 MiB), 22 MiB for 107 GiB (66 MiB), and 525 MiB
//   (1.5 GiB) from 2.5 TiB up to the 5 TiB limit.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { CompletedPart, PutObjectCommandInput, S3Client, S3ClientConfig } from '@aws-sdk/client-s3';
import type { NodeHttpHandler } from '@smithy/node-http-handler';
import { bool, str } from 'envalid';
import { count, size } from '../config-specs.ts';
import { ConfigError, StorageError, type StorageFailure } from '../errors.ts';
import { formatBytes } from '../units.ts';
import { rootCause } from './failure.ts';
import { capacityGuard, cutParts, type CutStats } from './parts.ts';
import type { CommonStorageSettings, ListedObject, StorageDriver } from './types.ts';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const TiB = 1024 ** 4;

// S3's hard limits (the same on R2, MinIO, Ceph): parts per upload, size of a non-last part, object size.
export const MAX_PARTS = 10_000;
export const MIN_PART_SIZE = 5 * MiB;
export const MAX_PART_SIZE = 5 * GiB;
export const MAX_OBJECT_SIZE = 5 * TiB;
// Unknown size: 8 MiB × 10,000 = 78.1 GiB, above the 50 GiB a default must reach, in 24 MiB of buffers.
export const DEFAULT_PART_SIZE = 8 * MiB;
// Two uploaders overlap reading and uploading (one alone stops reading while it uploads); each more
// costs a part of memory (measured: 8 MiB × 4 peaks ~25 MiB above 8 MiB × 2), for S3 latency only.
export const DEFAULT_CONCURRENCY = 2;
// A size estimate may be low by this factor and the dump still fits in 10,000 parts.
export const SIZE_HINT_MARGIN = 2;
// Part-sized buffers beyond those in flight: the part being filled while they upload.
export const EXTRA_PART_BUFFERS = 1;
// Part sizes are whole MiB, for readable logs.
const PART_ALIGNMENT = MiB;
// A custom endpoint with no STORAGE_REGION: MinIO, Ceph and R2 accept any region and most expect this one.
const DEFAULT_ENDPOINT_REGION = 'us-east-1';
// A TCP/TLS connect takes milliseconds; 10 s means the endpoint is unreachable (the SDK then retries).
const CONNECT_TIMEOUT_MS = 10_000;
// No byte either way for 2 min is a stalled connection (S3 keeps even a long Complete alive with spaces).
const SOCKET_IDLE_TIMEOUT_MS = 120_000;
// After a failure or abort, how long cleanup (cancelling parts, AbortMultipartUpload) may delay the answer.
const CLEANUP_GRACE_MS = 5_000;

// How one upload is cut into parts, and what that costs.
export type PartPlan = {
  partSize: number;
  concurrency: number;
  // The largest object this plan can store (10,000 parts, at most 5 TiB).
  capacity: number;
  // Memory of the part buffers (the formula above), on top of what the job needs without them.
  bufferBytes: number;
  // Set when STORAGE_PART_SIZE was too small for the size hint and had to be raised.
  raisedFrom?: number;
};

// Chooses part size and concurrency from the expected size (if any) and the user's settings (if any).
export function planParts(sizeHint: number | undefined, configured: { partSize?: number | undefined; concurrency?: number | undefined } = {}): PartPlan {
  const hint = sizeHint !== undefined && Number.isFinite(sizeHint) && sizeHint > 0 ? Math.min(sizeHint, MAX_OBJECT_SIZE) : undefined;
  // The smallest part that still fits the hint itself (no margin): an explicit setting may not go below it.
  const fitting = hint === undefined ? MIN_PART_SIZE : align(Math.ceil(hint / MAX_PARTS));
  let partSize: number;
  let raisedFrom: number | undefined;
  if (configured.partSize !== undefined) {
    partSize = Math.max(configured.partSize, fitting);
    if (partSize !== configured.partSize) raisedFrom = configured.partSize;
  } else {
    const withMargin = hint === undefined ? 0 : align(Math.ceil(Math.min(hint * SIZE_HINT_MARGIN, MAX_OBJECT_SIZE) / MAX_PARTS));
    partSize = Math.max(DEFAULT_PART_SIZE, withMargin);
  }
  partSize = Math.min(Math.max(partSize, MIN_PART_SIZE), MAX_PART_SIZE);
  const concurrency = configured.concurrency ?? DEFAULT_CONCURRENCY;
  return {
    partSize,
    concurrency,
    capacity: Math.min(partSize * MAX_PARTS, MAX_OBJECT_SIZE),
    bufferBytes: Math.round(partSize * (concurrency + EXTRA_PART_BUFFERS)),
    ...(raisedFrom !== undefined && { raisedFrom }),
  };
}

function align(bytes: number): number {
  return Math.ceil(bytes / PART_ALIGNMENT) * PART_ALIGNMENT;
}

const SSE_MODES = ['AES256', 'aws:kms', 'aws:kms:dsse'] as const;
// STORAGE_RETAIN_MODE → S3's Object Lock mode.
const LOCK_MODE = { governance: 'GOVERNANCE', compliance: 'COMPLIANCE' } as const;

// The variables of STORAGE_TYPE=s3 (besides STORAGE_BUCKET, STORAGE_ENDPOINT, STORAGE_REGION).
const env = {
  STORAGE_ACCESS_KEY_ID: str({ default: undefined, desc: 'static access key id; default: the SDK credential chain' }),
  STORAGE_SECRET_ACCESS_KEY: str({ default: undefined, desc: 'static secret access key' }),
  STORAGE_SESSION_TOKEN: str({ default: undefined, desc: 'session token of temporary static credentials' }),
  STORAGE_S3_FORCE_PATH_STYLE: bool({ default: undefined, desc: 'path-style URLs; default: true with STORAGE_ENDPOINT, false on AWS' }),
  STORAGE_S3_SSE: str({ choices: SSE_MODES, default: undefined, desc: 'server-side encryption; default: the bucket default' }),
  STORAGE_S3_KMS_KEY_ID: str({ default: undefined, desc: 'KMS key for STORAGE_S3_SSE=aws:kms' }),
  // On by default: the key is unique per run anyway, and this makes S3 itself refuse to replace an object.
  STORAGE_S3_IF_NONE_MATCH: bool({ default: true, desc: 'send If-None-Match: * so that an existing object is never replaced' }),
  STORAGE_CLASS: str({ default: undefined, desc: 'storage class, e.g. STANDARD_IA; default: the bucket default' }),
  STORAGE_PART_SIZE: size({ default: undefined, desc: 'multipart part size; default: from BACKUP_EXPECTED_SIZE, else 8MiB' }),
  STORAGE_CONCURRENCY: count({ default: undefined, desc: 'parts uploaded at once; default: 2' }),
  STORAGE_S3_CHECKSUM: str({ choices: ['crc32', 'none'], default: undefined, desc: 'a CRC32 on every part that the store verifies; default: crc32 on AWS, none with STORAGE_ENDPOINT' }),
  // Read by the SDK itself; named here so that a missing region is a configuration error, not a failed upload.
  AWS_REGION: str({ default: undefined, desc: "the SDK's own region variable; STORAGE_REGION wins" }),
  AWS_PROFILE: str({ default: undefined, desc: "the SDK's shared-config profile, which may name the region" }),
};

// Everything an S3 target needs, validated.
export type S3Options = {
  bucket: string;
  endpoint: string | undefined;
  region: string | undefined;
  forcePathStyle: boolean;
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined;
  sse: (typeof SSE_MODES)[number] | undefined;
  kmsKeyId: string | undefined;
  storageClass: string | undefined;
  ifNoneMatch: boolean;
  partSize: number | undefined;
  concurrency: number | undefined;
  // The checksum every part and the commit carry, which the store verifies; undefined: none.
  checksum: 'CRC32' | undefined;
  // STORAGE_RETAIN_DAYS is set: every object is written under Object Lock.
  locked: boolean;
};

// Checks the combinations envalid cannot; throws a ConfigError naming every problem.
export function s3Options(common: CommonStorageSettings, settings: Record<string, unknown>): S3Options {
  const text = (name: string) => settings[name] as string | undefined;
  const problems: string[] = [];
  const accessKeyId = text('STORAGE_ACCESS_KEY_ID');
  const secretAccessKey = text('STORAGE_SECRET_ACCESS_KEY');
  const sessionToken = text('STORAGE_SESSION_TOKEN');
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    problems.push('STORAGE_ACCESS_KEY_ID and STORAGE_SECRET_ACCESS_KEY must be set together (or neither, for the AWS credential chain)');
  }
  if (sessionToken !== undefined && accessKeyId === undefined) problems.push('STORAGE_SESSION_TOKEN needs STORAGE_ACCESS_KEY_ID and STORAGE_SECRET_ACCESS_KEY');
  const sse = text('STORAGE_S3_SSE') as S3Options['sse'];
  const kmsKeyId = text('STORAGE_S3_KMS_KEY_ID');
  if (kmsKeyId !== undefined && !sse?.startsWith('aws:kms')) problems.push('STORAGE_S3_KMS_KEY_ID needs STORAGE_S3_SSE=aws:kms (or aws:kms:dsse)');
  const partSize = settings.STORAGE_PART_SIZE as number | undefined;
  if (partSize !== undefined && (partSize < MIN_PART_SIZE || partSize > MAX_PART_SIZE)) {
    problems.push(`STORAGE_PART_SIZE: ${formatBytes(partSize)} is outside S3's 5 MiB–5 GiB`);
  }
  const concurrency = settings.STORAGE_CONCURRENCY as number | undefined;
  if (concurrency === 0) problems.push('STORAGE_CONCURRENCY must be at least 1');
  if (common.region === undefined && common.endpoint === undefined && text('AWS_REGION') === undefined && text('AWS_PROFILE') === undefined) {
    problems.push('STORAGE_REGION is required for S3 on AWS (or AWS_REGION); an S3-compatible store needs STORAGE_ENDPOINT');
  }
  const locked = common.retention !== undefined;
  const checksumSetting = text('STORAGE_S3_CHECKSUM');
  // S3 refuses a locked write (PutObject, and every part of a locked multipart upload) without one.
  if (locked && checksumSetting === 'none') problems.push('STORAGE_S3_CHECKSUM=none cannot be used with STORAGE_RETAIN_DAYS: S3 requires a checksum on every Object Lock write');
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    bucket: common.bucket,
    endpoint: common.endpoint,
    region: common.region ?? (common.endpoint === undefined ? undefined : DEFAULT_ENDPOINT_REGION),
    // Custom endpoints (MinIO, Ceph, a local emulator) rarely have wildcard DNS for virtual-hosted buckets.
    forcePathStyle: (settings.STORAGE_S3_FORCE_PATH_STYLE as boolean | undefined) ?? common.endpoint !== undefined,
    credentials:
      accessKeyId !== undefined && secretAccessKey !== undefined
        ? { accessKeyId, secretAccessKey, ...(sessionToken !== undefined && { sessionToken }) }
        : undefined,
    sse,
    kmsKeyId,
    storageClass: text('STORAGE_CLASS'),
    ifNoneMatch: (settings.STORAGE_S3_IF_NONE_MATCH as boolean | undefined) ?? true,
    partSize,
    concurrency,
    // Many S3-compatible stores reject the newer checksum headers, so only AWS gets them by default.
    // Object Lock needs one whatever the endpoint.
    checksum: (checksumSetting ?? (common.endpoint === undefined || locked ? 'crc32' : 'none')) === 'crc32' ? 'CRC32' : undefined,
    locked,
  };
}

// Error codes (S3's `Code`, the SDK's error name) that no retry will heal.
const DENIED_CODES = new Set([
  'AccessDenied', 'AllAccessDisabled', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'NoSuchBucket',
  'ExpiredToken', 'InvalidToken', 'TokenRefreshRequired', 'AccountProblem', 'CredentialsProviderError',
]);
// Codes of a store that is overloaded, briefly down or unreachable: a later retry may succeed.
const UNAVAILABLE_CODES = new Set([
  'SlowDown', 'ServiceUnavailable', 'InternalError', 'RequestTimeout', 'TimeoutError', 'Throttling',
  'ThrottlingException', 'TooManyRequests', 'RequestLimitExceeded', 'BandwidthLimitExceeded', 'OperationAborted',
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED',
]);

type SdkError = Error & { code?: string; $metadata?: { httpStatusCode?: number } };

// denied (401/403, missing bucket, bad keys) | unavailable (429, 5xx, throttling, network) | other.
export function s3FailureKind(error: unknown): StorageFailure {
  const failure = error as SdkError | undefined;
  const status = failure?.$metadata?.httpStatusCode;
  const codes = [failure?.name, failure?.code].filter((code): code is string => typeof code === 'string');
  if (codes.some((code) => DENIED_CODES.has(code)) || status === 401 || status === 403) return 'denied';
  if (codes.some((code) => code === 'NoSuchKey' || code === 'NotFound') || status === 404) return 'missing';
  if (codes.some((code) => UNAVAILABLE_CODES.has(code)) || status === 429 || (status !== undefined && status >= 500 && status !== 501)) return 'unavailable';
  return 'other';
}

// S3's answer to a locked write into a bucket created without Object Lock (400 InvalidRequest).
const NO_OBJECT_LOCK = /object lock/i;

// Whether S3 refused a locked write because the bucket has no Object Lock: no retry will change that,
// only the bucket's configuration, so it counts as 'denied' (exit 73) and names what to enable.
export function missingObjectLock(error: unknown): boolean {
  const failure = error as SdkError | undefined;
  return (failure?.name === 'InvalidRequest' || failure?.code === 'InvalidRequest') && NO_OBJECT_LOCK.test(failure?.message ?? '');
}

function describeFailure(error: unknown, operation: string, ifNoneMatch: boolean, locked: boolean): string {
  const failure = error as SdkError;
  const status = failure.$metadata?.httpStatusCode;
  const code = failure.code ?? failure.name;
  const base = `${operation}: ${code}${status === undefined ? '' : ` (HTTP ${status})`}: ${failure.message}`;
  if (locked && missingObjectLock(error)) {
    return `${base}; STORAGE_RETAIN_DAYS needs a bucket with Object Lock enabled (docs/retention.md), or unset STORAGE_RETAIN_DAYS`;
  }
  if (locked && (status === 403 || code === 'AccessDenied')) return `${base}; writing locked objects also needs s3:PutObjectRetention (docs/retention.md)`;
  if (status === 412 || code === 'PreconditionFailed') return `${base}; an object already exists at this key and is never overwritten`;
  if (status === 501 && ifNoneMatch) return `${base}; if this store does not support conditional writes, set STORAGE_S3_IF_NONE_MATCH=false`;
  return base;
}

// Only part uploads are cut off when the upload stops: cancelling one loses nothing but the upload.
// CreateMultipartUpload is short and must answer with the id that AbortMultipartUpload needs; the
// commit (CompleteMultipartUpload, or the single PutObject of a small body) may already have stored
// the object once sent, so its answer decides; AbortMultipartUpload is the cleanup itself.
function interruptible(method: string, query: Record<string, unknown>): boolean {
  return method === 'PUT' && 'partNumber' in query && 'uploadId' in query;
}

// An HTTP handler that cancels interruptible requests when `cancel` aborts.
function cancellableHandler(sdk: Sdk, cancel: AbortSignal): S3ClientConfig['requestHandler'] {
  const http = new sdk.NodeHttpHandler({ connectionTimeout: CONNECT_TIMEOUT_MS, socketTimeout: SOCKET_IDLE_TIMEOUT_MS });
  return {
    metadata: http.metadata,
    handle: (request: Parameters<NodeHttpHandler['handle']>[0], options?: Parameters<NodeHttpHandler['handle']>[1]) => {
      if (!interruptible(request.method, request.query)) return http.handle(request, options);
      const abortSignal = options?.abortSignal ? AbortSignal.any([options.abortSignal as AbortSignal, cancel]) : cancel;
      return http.handle(request, { ...options, abortSignal });
    },
    updateHttpClientConfig: (...args: Parameters<NodeHttpHandler['updateHttpClientConfig']>) => http.updateHttpClientConfig(...args),
    httpHandlerConfigs: () => http.httpHandlerConfigs(),
    destroy: () => http.destroy(),
  };
}

// The SDK, loaded only when an S3 upload runs: the job then does not carry it in memory otherwise.
async function loadSdk() {
  const [s3Sdk, { NodeHttpHandler }] = await Promise.all([import('@aws-sdk/client-s3'), import('@smithy/node-http-handler')]);
  const { S3Client, PutObjectCommand, CreateMultipartUploadCommand, UploadPartCommand, CompleteMultipartUploadCommand, AbortMultipartUploadCommand, GetObjectCommand, ListObjectsV2Command } = s3Sdk;
  return { S3Client, PutObjectCommand, CreateMultipartUploadCommand, UploadPartCommand, CompleteMultipartUploadCommand, AbortMultipartUploadCommand, GetObjectCommand, ListObjectsV2Command, NodeHttpHandler };
}
type Sdk = Awaited<ReturnType<typeof loadSdk>>;

function createClient(sdk: Sdk, options: S3Options, cancel: AbortSignal): S3Client {
  const custom = options.endpoint !== undefined;
  return new sdk.S3Client({
    ...(options.region !== undefined && { region: options.region }),
    ...(custom && { endpoint: options.endpoint }),
    forcePathStyle: options.forcePathStyle,
    // Unset: the SDK's default chain (AWS_* variables, IRSA web identity, ECS and EC2 roles, profiles).
    ...(options.credentials && { credentials: options.credentials }),
    // On AWS a wrong or missing bucket region is corrected from S3's redirect instead of failing.
    followRegionRedirects: !custom,
    // With a checksum the SDK computes it for every part and checks the ones S3 returns.
    requestChecksumCalculation: options.checksum === undefined ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
    responseChecksumValidation: options.checksum === undefined ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED',
    requestHandler: cancellableHandler(sdk, cancel),
  });
}

// What one upload learned while it ran: shared by the request observer, the body feed and the verdict.
type UploadState = {
  // Aborted once the upload cannot succeed any more: cancels part uploads in flight.
  cancel: AbortController;
  // Resolved when the upload stopped (failure or abort) or an abort came during the commit.
  stopped: PromiseWithResolvers<void>;
  // The first failure of the store itself (after the SDK's retries), already classified.
  storageFailure: StorageError | undefined;
  cleanupFailure: unknown;
  uploadId: string | undefined;
  committing: boolean;
};

// Watches every S3 call of the upload: records the upload id, the commit, the first failure (and stops
// the upload on it), and a failed AbortMultipartUpload as a cleanup failure only.
function observe(client: S3Client, state: UploadState, describe: (error: unknown, operation: string) => StorageError, stop: (cause: unknown) => void): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const operation = (context.commandName ?? 'S3').replace(/Command$/, '');
      if (operation === 'CompleteMultipartUpload' || operation === 'PutObject') state.committing = true;
      try {
        const result = await next(args);
        if (operation === 'CreateMultipartUpload') state.uploadId = (result.output as { UploadId?: string }).UploadId;
        return result;
      } catch (error) {
        if (operation === 'AbortMultipartUpload') {
          state.cleanupFailure = error;
        } else if (!state.cancel.signal.aborted) {
          state.storageFailure ??= describe(error, operation);
          stop(state.storageFailure);
        }
        throw error;
      }
    },
    { step: 'initialize', name: 'planbUploadObserver' },
  );
}

// What the object's requests carry besides the body: the creating request (PutObject or
// CreateMultipartUpload) all of it, and the commit (PutObject or CompleteMultipartUpload) `ifNoneMatch`.
type ObjectParams = { object: Omit<PutObjectCommandInput, 'Body' | 'IfNoneMatch'> & { Bucket: string; Key: string }; ifNoneMatch: '*' | undefined };

// Stores `body` at the key: one PutObject when it fits in one part, else a multipart upload of
// `plan.partSize` parts, `plan.concurrency` in flight, committed only after the body ended cleanly.
// Parts are cut into concurrency + 1 reused buffers (parts.ts). On any failure it waits for the parts
// in flight, aborts the multipart upload (observe() records a failed abort) and rejects with what stopped it.
// Resolves with what the cut cost (parts sent, part buffers allocated).
async function putObject(sdk: Sdk, client: S3Client, params: ObjectParams, body: AsyncIterable<Buffer>, plan: PartPlan, checksum: 'CRC32' | undefined): Promise<CutStats> {
  const { object, ifNoneMatch } = params;
  const { Bucket, Key } = object;
  const commit = ifNoneMatch === undefined ? {} : { IfNoneMatch: ifNoneMatch };
  const inFlight = new Set<Promise<void>>();
  const completed: CompletedPart[] = [];
  let partFailure: { error: unknown } | undefined;
  let uploadId: string | undefined;
  const stats: CutStats = { buffersAllocated: 0, parts: 0 };
  try {
    for await (const part of cutParts(body, plan.partSize, plan.concurrency + EXTRA_PART_BUFFERS, stats)) {
      if (part.number === 1 && part.last) {
        try {
          await client.send(new sdk.PutObjectCommand({ ...object, ...commit, Body: part.data, ...(checksum && { ChecksumAlgorithm: checksum }) }));
        } finally {
          part.release();
        }
        return stats;
      }
      uploadId ??= (await client.send(new sdk.CreateMultipartUploadCommand({ ...object, ...(checksum && { ChecksumAlgorithm: checksum }) }))).UploadId;
      while (inFlight.size >= plan.concurrency && partFailure === undefined) await Promise.race(inFlight);
      if (partFailure !== undefined) throw partFailure.error;
      const request = { Bucket, Key, UploadId: uploadId, PartNumber: part.number, Body: part.data, ...(checksum && { ChecksumAlgorithm: checksum }) };
      const sending: Promise<void> = client
        .send(new sdk.UploadPartCommand(request))
        .then(
          ({ ETag, ChecksumCRC32 }) => {
            if (ETag === undefined) throw new Error(`S3 answered part ${part.number} without an ETag`);
            completed.push({ PartNumber: part.number, ETag, ...(ChecksumCRC32 !== undefined && { ChecksumCRC32 }) });
          },
        )
        .catch((error: unknown) => {
          partFailure ??= { error };
        })
        .finally(() => {
          part.release();
          inFlight.delete(sending);
        });
      inFlight.add(sending);
    }
    await Promise.all(inFlight);
    if (partFailure !== undefined) throw partFailure.error;
    completed.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    await client.send(new sdk.CompleteMultipartUploadCommand({ Bucket, Key, UploadId: uploadId, MultipartUpload: { Parts: completed }, ...commit }));
    return stats;
  } catch (error) {
    await Promise.allSettled(inFlight);
    if (uploadId !== undefined) {
      await client.send(new sdk.AbortMultipartUploadCommand({ Bucket, Key, UploadId: uploadId })).catch(() => undefined); // observe() keeps it for a warning
    }
    throw error;
  }
}

// Waits for `settled`, but once `stopped` resolves, for at most `graceMs` more.
async function settleWithin<T>(settled: Promise<T>, stopped: Promise<void>, graceMs: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const grace = stopped.then(() => new Promise<'timeout'>((resolve) => (timer = setTimeout(resolve, graceMs, 'timeout'))));
  try {
    return await Promise.race([settled, grace]);
  } finally {
    clearTimeout(timer);
  }
}

export const s3 = {
  env,
  // The key id too: harmless to redact, and it lets both halves of a key pair come from mounted files.
  secrets: ['STORAGE_ACCESS_KEY_ID', 'STORAGE_SECRET_ACCESS_KEY', 'STORAGE_SESSION_TOKEN'],
  plansParts: true,
  retention: true,
  open(common, settings) {
    const options = s3Options(common, settings);
    // One client for reads, created on first use; reads are cancelled through each call's own signal.
    let reader: Promise<{ sdk: Sdk; client: S3Client }> | undefined;
    const readClient = () => (reader ??= loadSdk().then((sdk) => ({ sdk, client: createClient(sdk, options, new AbortController().signal) })));
    const readFailure = (error: unknown, operation: string, where: string) =>
      error instanceof Error && error.name === 'AbortError' ? error : new StorageError(`s3 ${operation} of ${where} failed: ${describeFailure(error, operation, false, false)}`, s3FailureKind(error), { cause: error });
    return {
      async download(key, signal) {
        const where = `s3://${options.bucket}/${key}`;
        const { sdk, client } = await readClient();
        try {
          const { Body } = await client.send(new sdk.GetObjectCommand({ Bucket: options.bucket, Key: key }), { abortSignal: signal });
          // In Node the SDK's body is the HTTP response itself: a Readable.
          if (!(Body instanceof Readable)) throw new StorageError(`s3 GetObject of ${where} returned no stream`, 'other');
          signal.addEventListener('abort', () => Body.destroy(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason))), { once: true });
          return Body;
        } catch (error) {
          throw signal.aborted ? signal.reason : readFailure(error, 'GetObject', where);
        }
      },

      async list(prefix, signal) {
        const { sdk, client } = await readClient();
        const found: ListedObject[] = [];
        let token: string | undefined;
        try {
          do {
            const page = await client.send(new sdk.ListObjectsV2Command({ Bucket: options.bucket, Prefix: prefix, ContinuationToken: token }), { abortSignal: signal });
            for (const item of page.Contents ?? []) if (item.Key !== undefined) found.push({ key: item.Key, bytes: item.Size ?? 0 });
            token = page.IsTruncated ? page.NextContinuationToken : undefined;
          } while (token !== undefined);
        } catch (error) {
          throw signal.aborted ? signal.reason : readFailure(error, 'ListObjectsV2', `s3://${options.bucket}/${prefix}`);
        }
        return found;
      },

      async upload({ key, body, signal, contentType, metadata, sizeHint, retainUntil, log }) {
        signal.throwIfAborted();
        const where = `s3://${options.bucket}/${key}`;
        const plan = planParts(sizeHint, options);
        if (plan.raisedFrom !== undefined) {
          log.warn(
            { configured: plan.raisedFrom, partSize: plan.partSize, sizeHint },
            `STORAGE_PART_SIZE ${formatBytes(plan.raisedFrom)} cannot hold ${formatBytes(sizeHint ?? 0)} in ${MAX_PARTS} parts; using ${formatBytes(plan.partSize)}`,
          );
        }
        log.info(
          { partSize: plan.partSize, concurrency: plan.concurrency, capacity: plan.capacity, bufferBytes: plan.bufferBytes, sizeHint },
          `s3 upload to ${where}: ${formatBytes(plan.partSize)} parts × ${plan.concurrency} at once, up to ${formatBytes(plan.capacity)}`,
        );

        const state: UploadState = {
          cancel: new AbortController(),
          stopped: Promise.withResolvers<void>(),
          storageFailure: undefined,
          cleanupFailure: undefined,
          uploadId: undefined,
          committing: false,
        };
        // The plan is fixed before the first byte: past its capacity the upload can only fail, so it fails now.
        const feed = capacityGuard(plan.capacity, () =>
          (state.storageFailure ??= new StorageError(
            `s3 upload to ${where} failed: the backup is larger than ${formatBytes(plan.capacity)} (${MAX_PARTS} parts of ` +
              `${formatBytes(plan.partSize)}, planned for ${sizeHint === undefined ? 'an unknown size' : formatBytes(sizeHint)}); ` +
              'set BACKUP_EXPECTED_SIZE (or STORAGE_PART_SIZE) to the expected size',
            'other',
          )),
        );
        const stop = (cause: unknown) => {
          state.stopped.resolve();
          if (state.cancel.signal.aborted) return;
          state.cancel.abort(cause);
          feed.destroy(cause instanceof Error ? cause : new Error(String(cause)));
        };
        const sdk = await loadSdk();
        const client = createClient(sdk, options, state.cancel.signal);
        const describe = (error: unknown, operation: string) =>
          new StorageError(
            `s3 upload to ${where} failed: ${describeFailure(error, operation, options.ifNoneMatch, retainUntil !== undefined)}`,
            retainUntil !== undefined && missingObjectLock(error) ? 'denied' : s3FailureKind(error),
            { cause: error },
          );
        observe(client, state, describe, stop);

        const params: ObjectParams = {
          object: {
            Bucket: options.bucket,
            Key: key,
            ContentType: contentType,
            Metadata: { ...metadata },
            ...(options.sse !== undefined && { ServerSideEncryption: options.sse }),
            ...(options.kmsKeyId !== undefined && { SSEKMSKeyId: options.kmsKeyId }),
            ...(options.storageClass !== undefined && { StorageClass: options.storageClass as PutObjectCommandInput['StorageClass'] }),
            // Object Lock on the creating request: the object is locked from the moment it exists.
            ...(retainUntil !== undefined && { ObjectLockMode: LOCK_MODE[retainUntil.mode], ObjectLockRetainUntilDate: retainUntil.date }),
          },
          // On the commit: S3 answers 412 instead of replacing an object.
          ifNoneMatch: options.ifNoneMatch ? '*' : undefined,
        };

        // An abort before the commit stops everything. Once the commit is sent, S3 may already have stored
        // the object: its answer decides, if it comes within the grace period.
        const onAbort = () => (state.committing ? state.stopped.resolve() : stop(signal.reason));
        signal.addEventListener('abort', onAbort, { once: true });
        // Started before data flows and awaited together with the body: neither may fail unobserved.
        const uploading = putObject(sdk, client, params, feed, plan, options.checksum);
        const feeding = pipeline(body, feed, { signal }).catch((error: unknown) => {
          stop(error);
          throw error;
        });
        const outcome = await settleWithin(Promise.allSettled([feeding, uploading]), state.stopped.promise, CLEANUP_GRACE_MS);
        signal.removeEventListener('abort', onAbort);

        if (outcome === 'timeout') {
          const context = { bucket: options.bucket, key, uploadId: state.uploadId };
          if (state.committing) log.warn(context, `aborted while S3 was committing ${where}; the object may exist although this upload failed`);
          else log.warn(context, `s3 cleanup did not finish within ${CLEANUP_GRACE_MS} ms; an incomplete multipart upload may remain until a lifecycle rule removes it`);
          throw rootCause(state.storageFailure ?? state.cancel.signal.reason, body, signal, `s3 upload to ${where} failed`, 'other');
        }
        client.destroy();
        const [fed, done] = outcome;
        if (state.cleanupFailure !== undefined) {
          log.warn(
            { err: state.cleanupFailure, bucket: options.bucket, key, uploadId: state.uploadId },
            'could not abort the multipart upload; its parts stay stored (and billed) until a lifecycle rule (AbortIncompleteMultipartUpload) removes them',
          );
        }
        // putObject commits only after the feed ended cleanly, so a committed object holds the whole body.
        if (done.status === 'fulfilled') {
          log.debug({ parts: done.value.parts, partBuffers: done.value.buffersAllocated }, `s3 upload to ${where}: ${done.value.parts} parts through ${done.value.buffersAllocated} part buffers`);
          return { url: where };
        }
        if (state.storageFailure !== undefined && !signal.aborted) throw state.storageFailure;
        const error: unknown = done.reason ?? (fed.status === 'rejected' ? fed.reason : undefined);
        throw rootCause(error, body, signal, `s3 upload to ${where} failed`, s3FailureKind(error));
      },
    };
  },
} satisfies StorageDriver;
