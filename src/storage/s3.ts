// STORAGE_TYPE=s3: Amazon S3 and S3-compatible stores (MinIO, Cloudflare R2, Ceph, GCS interop): a body
// that fits in one part is one PutObject, a longer one a multipart upload. A body that errors, or an
// abort before the object is committed, cancels the part uploads in flight (through their abort
// signal) and aborts the multipart upload, so nothing appears at the key; the caller sees the body's
// error or the abort reason, and a failed cleanup only as a warning. Once the commit
// (CompleteMultipartUpload, or the single PutObject) is sent, S3 may already have stored the object: its
// answer decides. With STORAGE_RETAIN_DAYS the creating request carries the Object Lock (mode and
// retain-until date) and every write a CRC32, which S3 demands of locked writes.
//
// Parts are equal, sized before the first byte (parts.ts; the table and the measurements behind the
// defaults are in docs/storage/s3.md), and cut into concurrency + 1 part buffers allocated once and reused.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { CompletedPart, S3Client, StorageClass } from '@aws-sdk/client-s3';
import { bool, str } from 'envalid';
import { count, size, type EnvValues } from '../config-specs.ts';
import { ConfigError, StorageError, type StorageFailure } from '../errors.ts';
import { TIMED_OUT, withTimeout } from '../timeout.ts';
import { formatBytes } from '../units.ts';
import { NETWORK_ERROR_CODES, rootCause } from './failure.ts';
import { capacityGuard, cutParts, EXTRA_PART_BUFFERS, planParts, type CutStats, type PartLimits } from './parts.ts';
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
// What planParts needs to know of S3. A STORAGE_PART_SIZE too small for the size hint is raised only
// as far as the hint itself needs: the user chose small parts on purpose.
export const S3_PARTS: PartLimits = {
  maxParts: MAX_PARTS,
  minPartSize: MIN_PART_SIZE,
  maxPartSize: MAX_PART_SIZE,
  maxObjectSize: MAX_OBJECT_SIZE,
  defaultPartSize: DEFAULT_PART_SIZE,
  defaultConcurrency: DEFAULT_CONCURRENCY,
  configuredMargin: 1,
};
// A custom endpoint with no STORAGE_REGION: MinIO, Ceph and R2 accept any region and most expect this one.
const DEFAULT_ENDPOINT_REGION = 'us-east-1';
// A TCP/TLS connect takes milliseconds; 10 s means the endpoint is unreachable (the SDK then retries).
const CONNECT_TIMEOUT_MS = 10_000;
// No byte either way for 2 min is a stalled connection (S3 keeps even a long Complete alive with spaces).
const SOCKET_IDLE_TIMEOUT_MS = 120_000;
// After a failure or abort, how long cleanup (cancelling parts, AbortMultipartUpload) may delay the answer.
const CLEANUP_GRACE_MS = 5_000;

const SSE_MODES = ['AES256', 'aws:kms', 'aws:kms:dsse'] as const;
// The storage classes AWS S3 knows (the SDK's StorageClass); an S3-compatible store may name its own.
const AWS_STORAGE_CLASSES = [
  'STANDARD', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER_IR', 'GLACIER', 'DEEP_ARCHIVE', 'REDUCED_REDUNDANCY',
  'EXPRESS_ONEZONE', 'OUTPOSTS', 'SNOW', 'FSX_ONTAP', 'FSX_OPENZFS', 'AWS_BACKUP_WARM', 'AWS_BACKUP_LOW_COST_WARM',
] as const satisfies readonly StorageClass[];
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
  // On AWS one of AWS_STORAGE_CLASSES; with STORAGE_ENDPOINT passed as given (S3-compatible stores name their own classes).
  STORAGE_CLASS: str<StorageClass>({ default: undefined, desc: 'storage class, e.g. STANDARD_IA; default: the bucket default' }),
  STORAGE_PART_SIZE: size({ default: undefined, desc: 'multipart part size; default: from BACKUP_EXPECTED_SIZE, else 8MiB' }),
  STORAGE_CONCURRENCY: count({ default: undefined, desc: 'parts uploaded at once; default: 2' }),
  STORAGE_S3_CHECKSUM: str({ choices: ['crc32', 'none'] as const, default: undefined, desc: 'a CRC32 on every part that the store verifies; default: crc32 on AWS, none with STORAGE_ENDPOINT' }),
  // Read by the SDK itself; named here so that a missing region is a configuration error, not a failed upload.
  AWS_REGION: str({ default: undefined, desc: "the SDK's own region variable; STORAGE_REGION wins" }),
  AWS_PROFILE: str({ default: undefined, desc: "the SDK's shared-config profile, which may name the region" }),
};
type S3Settings = EnvValues<typeof env>;

// Everything an S3 target needs, validated.
export type S3Options = {
  bucket: string;
  endpoint: string | undefined;
  region: string | undefined;
  forcePathStyle: boolean;
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined;
  sse: (typeof SSE_MODES)[number] | undefined;
  kmsKeyId: string | undefined;
  storageClass: StorageClass | undefined;
  ifNoneMatch: boolean;
  partSize: number | undefined;
  concurrency: number | undefined;
  // The checksum every part and the commit carry, which the store verifies; undefined: none.
  checksum: 'CRC32' | undefined;
};

// Checks the combinations envalid cannot; throws a ConfigError naming every problem.
export function s3Options(common: CommonStorageSettings, settings: S3Settings): S3Options {
  const problems: string[] = [];
  const { STORAGE_ACCESS_KEY_ID: accessKeyId, STORAGE_SECRET_ACCESS_KEY: secretAccessKey, STORAGE_SESSION_TOKEN: sessionToken } = settings;
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    problems.push('STORAGE_ACCESS_KEY_ID and STORAGE_SECRET_ACCESS_KEY must be set together (or neither, for the AWS credential chain)');
  }
  if (sessionToken !== undefined && accessKeyId === undefined) problems.push('STORAGE_SESSION_TOKEN needs STORAGE_ACCESS_KEY_ID and STORAGE_SECRET_ACCESS_KEY');
  const { STORAGE_S3_SSE: sse, STORAGE_S3_KMS_KEY_ID: kmsKeyId, STORAGE_PART_SIZE: partSize, STORAGE_CONCURRENCY: concurrency } = settings;
  if (kmsKeyId !== undefined && !sse?.startsWith('aws:kms')) problems.push('STORAGE_S3_KMS_KEY_ID needs STORAGE_S3_SSE=aws:kms (or aws:kms:dsse)');
  if (partSize !== undefined && (partSize < MIN_PART_SIZE || partSize > MAX_PART_SIZE)) {
    problems.push(`STORAGE_PART_SIZE: ${formatBytes(partSize)} is outside S3's 5 MiB–5 GiB`);
  }
  if (concurrency === 0) problems.push('STORAGE_CONCURRENCY must be at least 1');
  if (common.region === undefined && common.endpoint === undefined && settings.AWS_REGION === undefined && settings.AWS_PROFILE === undefined) {
    problems.push('STORAGE_REGION is required for S3 on AWS (or AWS_REGION); an S3-compatible store needs STORAGE_ENDPOINT');
  }
  const storageClass = settings.STORAGE_CLASS;
  if (storageClass !== undefined && common.endpoint === undefined && !(AWS_STORAGE_CLASSES as readonly string[]).includes(storageClass)) {
    problems.push(`STORAGE_CLASS: "${storageClass}" is not an S3 storage class (${AWS_STORAGE_CLASSES.join(', ')})`);
  }
  const locked = common.retention !== undefined;
  const checksumSetting = settings.STORAGE_S3_CHECKSUM;
  // S3 refuses a locked write (PutObject, and every part of a locked multipart upload) without one.
  if (locked && checksumSetting === 'none') problems.push('STORAGE_S3_CHECKSUM=none cannot be used with STORAGE_RETAIN_DAYS: S3 requires a checksum on every Object Lock write');
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    bucket: common.bucket,
    endpoint: common.endpoint,
    region: common.region ?? (common.endpoint === undefined ? undefined : DEFAULT_ENDPOINT_REGION),
    // Custom endpoints (MinIO, Ceph, a local emulator) rarely have wildcard DNS for virtual-hosted buckets.
    forcePathStyle: settings.STORAGE_S3_FORCE_PATH_STYLE ?? common.endpoint !== undefined,
    credentials:
      accessKeyId !== undefined && secretAccessKey !== undefined
        ? { accessKeyId, secretAccessKey, ...(sessionToken !== undefined && { sessionToken }) }
        : undefined,
    sse,
    kmsKeyId,
    storageClass: settings.STORAGE_CLASS,
    ifNoneMatch: settings.STORAGE_S3_IF_NONE_MATCH,
    partSize,
    concurrency,
    // Many S3-compatible stores reject the newer checksum headers, so only AWS gets them by default.
    // Object Lock needs one whatever the endpoint.
    checksum: (checksumSetting ?? (common.endpoint === undefined || locked ? 'crc32' : 'none')) === 'crc32' ? 'CRC32' : undefined,
  };
}

// Error codes (S3's `Code`, the SDK's error name) that no retry will heal.
const DENIED_CODES = new Set([
  'AccessDenied', 'AllAccessDisabled', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'NoSuchBucket',
  'ExpiredToken', 'InvalidToken', 'TokenRefreshRequired', 'AccountProblem', 'CredentialsProviderError',
]);
// Codes of a store that is overloaded or briefly down (NETWORK_ERROR_CODES: unreachable): a later retry may succeed.
const UNAVAILABLE_CODES = new Set([
  'SlowDown', 'ServiceUnavailable', 'InternalError', 'RequestTimeout', 'TimeoutError', 'Throttling',
  'ThrottlingException', 'TooManyRequests', 'RequestLimitExceeded', 'BandwidthLimitExceeded', 'OperationAborted',
]);

type SdkError = Error & { code?: string; $metadata?: { httpStatusCode?: number } };

// denied (401/403, missing bucket, bad keys) | unavailable (429, 5xx, throttling, network) | other.
export function classify(error: unknown): StorageFailure {
  const failure = error as SdkError | undefined;
  const status = failure?.$metadata?.httpStatusCode;
  const codes = [failure?.name, failure?.code].filter((code): code is string => typeof code === 'string');
  if (codes.some((code) => DENIED_CODES.has(code)) || status === 401 || status === 403) return 'denied';
  if (codes.some((code) => code === 'NoSuchKey' || code === 'NotFound') || status === 404) return 'missing';
  if (codes.some((code) => UNAVAILABLE_CODES.has(code) || NETWORK_ERROR_CODES.has(code)) || status === 429 || (status !== undefined && status >= 500 && status !== 501)) return 'unavailable';
  return 'other';
}

// S3's answer to a locked write into a bucket created without Object Lock (400 InvalidRequest).
const NO_OBJECT_LOCK = /object lock/i;

// Whether S3 refused a locked write because the bucket has no Object Lock: no retry will change that,
// only the bucket's configuration, so it counts as 'denied' (exit 73) and names what to enable.
function missingObjectLock(error: unknown): boolean {
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

// The SDK, loaded only when an S3 upload runs: the job then does not carry it in memory otherwise.
async function loadSdk() {
  const [s3Sdk, { NodeHttpHandler }] = await Promise.all([import('@aws-sdk/client-s3'), import('@smithy/node-http-handler')]);
  const { S3Client, PutObjectCommand, CreateMultipartUploadCommand, UploadPartCommand, CompleteMultipartUploadCommand, AbortMultipartUploadCommand, GetObjectCommand, ListObjectsV2Command } = s3Sdk;
  return { S3Client, PutObjectCommand, CreateMultipartUploadCommand, UploadPartCommand, CompleteMultipartUploadCommand, AbortMultipartUploadCommand, GetObjectCommand, ListObjectsV2Command, NodeHttpHandler };
}
type Sdk = Awaited<ReturnType<typeof loadSdk>>;

function createClient(sdk: Sdk, options: S3Options): S3Client {
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
    requestHandler: new sdk.NodeHttpHandler({ connectionTimeout: CONNECT_TIMEOUT_MS, socketTimeout: SOCKET_IDLE_TIMEOUT_MS }),
  });
}

export const s3 = {
  env,
  // The key id too: harmless to redact, and it lets both halves of a key pair come from mounted files.
  secrets: ['STORAGE_ACCESS_KEY_ID', 'STORAGE_SECRET_ACCESS_KEY', 'STORAGE_SESSION_TOKEN'],
  plansParts: true,
  retention: true,
  classify,
  open(common, settings) {
    const options = s3Options(common, settings);
    // One client, created on first use; every call is cancelled through its own signal.
    let reader: Promise<{ sdk: Sdk; client: S3Client }> | undefined;
    const sdkClient = () => (reader ??= loadSdk().then((sdk) => ({ sdk, client: createClient(sdk, options) })));
    const readFailure = (error: unknown, operation: string, where: string) =>
      error instanceof Error && error.name === 'AbortError' ? error : new StorageError(`s3 ${operation} of ${where} failed: ${describeFailure(error, operation, false, false)}`, classify(error), { cause: error });
    return {
      async download(key, signal) {
        const where = `s3://${options.bucket}/${key}`;
        const { sdk, client } = await sdkClient();
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
        const { sdk, client } = await sdkClient();
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
        const plan = planParts(S3_PARTS, sizeHint, options);
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
        // The reads' client: each call is cancelled through its own abortSignal, so nothing in it is per upload.
        const { sdk, client } = await sdkClient();
        const { bucket: Bucket } = options;
        const checksum = options.checksum && { ChecksumAlgorithm: options.checksum };
        // On the commit: S3 answers 412 instead of replacing an object.
        const commit = options.ifNoneMatch ? { IfNoneMatch: '*' } : {};
        // All of it on the creating request (PutObject or CreateMultipartUpload).
        const object = {
          Bucket,
          Key: key,
          ContentType: contentType,
          Metadata: { ...metadata },
          ...(options.sse !== undefined && { ServerSideEncryption: options.sse }),
          ...(options.kmsKeyId !== undefined && { SSEKMSKeyId: options.kmsKeyId }),
          ...(options.storageClass !== undefined && { StorageClass: options.storageClass }),
          // Object Lock on the creating request: the object is locked from the moment it exists.
          ...(retainUntil !== undefined && { ObjectLockMode: LOCK_MODE[retainUntil.mode], ObjectLockRetainUntilDate: retainUntil.date }),
          ...checksum,
        };

        // Aborted once the upload cannot succeed any more: cancels the part uploads in flight.
        const stop = new AbortController();
        // Resolved when the upload stopped, or an abort came during the commit: cleanup then has CLEANUP_GRACE_MS.
        const stopped = Promise.withResolvers<void>();
        // The store's own first failure (after the SDK's retries), classified.
        let storageFailure: StorageError | undefined;
        let uploadId: string | undefined;
        let committing = false;
        // The plan is fixed before the first byte: past its capacity the upload can only fail, so it fails now.
        const feed = capacityGuard(plan.capacity, () =>
          (storageFailure ??= new StorageError(
            `s3 upload to ${where} failed: the backup is larger than ${formatBytes(plan.capacity)} (${MAX_PARTS} parts of ` +
              `${formatBytes(plan.partSize)}, planned for ${sizeHint === undefined ? 'an unknown size' : formatBytes(sizeHint)}); ` +
              'set BACKUP_EXPECTED_SIZE (or STORAGE_PART_SIZE) to the expected size',
            'other',
          )),
        );
        const halt = (cause: unknown) => {
          stopped.resolve();
          if (stop.signal.aborted) return;
          stop.abort(cause);
          feed.destroy(cause instanceof Error ? cause : new Error(String(cause)));
        };
        // A request's failure, unless the upload had stopped already, is the store's own: it stops the upload.
        const call = <T>(operation: string, sending: Promise<T>): Promise<T> =>
          sending.catch((error: unknown) => {
            if (!stop.signal.aborted) {
              storageFailure ??= new StorageError(
                `s3 upload to ${where} failed: ${describeFailure(error, operation, options.ifNoneMatch, retainUntil !== undefined)}`,
                retainUntil !== undefined && missingObjectLock(error) ? 'denied' : classify(error),
                { cause: error },
              );
              halt(storageFailure);
            }
            throw error;
          });

        // One PutObject when the body fits in one part, else a multipart upload of `plan.concurrency`
        // parts at once, committed only after the body ended cleanly; on any failure the parts in flight
        // settle and the multipart upload is aborted. Resolves with what the cut cost.
        const send = async (): Promise<CutStats> => {
          const stats: CutStats = { buffersAllocated: 0, parts: 0 };
          const inFlight = new Set<Promise<unknown>>();
          const completed: CompletedPart[] = [];
          try {
            for await (const part of cutParts(feed, plan.partSize, plan.concurrency + EXTRA_PART_BUFFERS, stats)) {
              if (part.number === 1 && part.last) {
                committing = true;
                await call('PutObject', client.send(new sdk.PutObjectCommand({ ...object, ...commit, Body: part.data }))).finally(() => part.release());
                return stats;
              }
              uploadId ??= (await call('CreateMultipartUpload', client.send(new sdk.CreateMultipartUploadCommand(object)))).UploadId;
              while (inFlight.size >= plan.concurrency) await Promise.race(inFlight);
              stop.signal.throwIfAborted();
              const request = { Bucket, Key: key, UploadId: uploadId, PartNumber: part.number, Body: part.data, ...checksum };
              const sending = call(
                'UploadPart',
                client.send(new sdk.UploadPartCommand(request), { abortSignal: stop.signal }).then(({ ETag, ChecksumCRC32 }) => {
                  if (ETag === undefined) throw new Error(`S3 answered part ${part.number} without an ETag`);
                  completed.push({ PartNumber: part.number, ETag, ...(ChecksumCRC32 !== undefined && { ChecksumCRC32 }) });
                }),
              )
                .catch(() => undefined) // call() stopped the upload with it
                .finally(() => {
                  part.release();
                  inFlight.delete(sending);
                });
              inFlight.add(sending);
            }
            await Promise.all(inFlight);
            stop.signal.throwIfAborted();
            completed.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
            committing = true;
            await call('CompleteMultipartUpload', client.send(new sdk.CompleteMultipartUploadCommand({ Bucket, Key: key, UploadId: uploadId, MultipartUpload: { Parts: completed }, ...commit })));
            return stats;
          } catch (error) {
            await Promise.allSettled(inFlight);
            if (uploadId !== undefined) {
              await client.send(new sdk.AbortMultipartUploadCommand({ Bucket, Key: key, UploadId: uploadId })).catch((cleanup: unknown) => {
                log.warn(
                  { err: cleanup, bucket: Bucket, key, uploadId },
                  'could not abort the multipart upload; its parts stay stored (and billed) until a lifecycle rule (AbortIncompleteMultipartUpload) removes them',
                );
              });
            }
            throw error;
          }
        };

        // An abort before the commit stops everything; during the commit S3's answer decides, if it comes in time.
        const onAbort = () => (committing ? stopped.resolve() : halt(signal.reason));
        signal.addEventListener('abort', onAbort, { once: true });
        // Started before data flows and awaited together with the body: neither may fail unobserved.
        const uploading = send();
        const feeding = pipeline(body, feed, { signal }).catch((error: unknown) => {
          halt(error);
          throw error;
        });
        const settled = Promise.allSettled([feeding, uploading]);
        const outcome = await Promise.race([settled, stopped.promise.then(() => withTimeout(settled, CLEANUP_GRACE_MS))]);
        signal.removeEventListener('abort', onAbort);

        if (outcome === TIMED_OUT) {
          const context = { bucket: Bucket, key, uploadId };
          if (committing) log.warn(context, `aborted while S3 was committing ${where}; the object may exist although this upload failed`);
          else log.warn(context, `s3 cleanup did not finish within ${CLEANUP_GRACE_MS} ms; an incomplete multipart upload may remain until a lifecycle rule removes it`);
          throw rootCause(storageFailure ?? stop.signal.reason, body, signal, `s3 upload to ${where} failed`, 'other');
        }
        const [fed, done] = outcome;
        // send() commits only after the feed ended cleanly, so a committed object holds the whole body.
        if (done.status === 'fulfilled') {
          log.debug({ parts: done.value.parts, partBuffers: done.value.buffersAllocated }, `s3 upload to ${where}: ${done.value.parts} parts through ${done.value.buffersAllocated} part buffers`);
          return { url: where };
        }
        if (storageFailure !== undefined && !signal.aborted) throw storageFailure;
        const error: unknown = done.reason ?? (fed.status === 'rejected' ? fed.reason : undefined);
        throw rootCause(error, body, signal, `s3 upload to ${where} failed`, classify(error));
      },
    };
  },
} satisfies StorageDriver<typeof env>;
