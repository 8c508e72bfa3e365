// STORAGE_TYPE=azure: STORAGE_BUCKET is a blob container. The body is cut into blocks that are staged
// while the dump runs (BlockBlobClient.uploadStream); the blob exists only once the block list is
// committed, and the commit happens only after the body ended cleanly. On a body error or an abort
// the commit is never sent: no blob appears, and Azure discards the uncommitted blocks after a week.
// The commit carries If-None-Match: * so an existing blob is never overwritten.
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { makeValidator, str } from 'envalid';
import type { EnvValues } from '../config-specs.ts';
import type { BlockBlobClient, BlockBlobCommitBlockListOptions, BlockBlobUploadStreamOptions, ContainerClient, StoragePipelineOptions } from '@azure/storage-blob';
import { ConfigError, StorageError, type StorageFailure } from '../errors.ts';
import { TIMED_OUT, withTimeout } from '../timeout.ts';
import { formatBytes, parseSize } from '../units.ts';
import { NETWORK_ERROR_CODES, rootCause, upstreamCause } from './failure.ts';
import { planParts, SIZE_HINT_MARGIN, type PartLimits } from './parts.ts';
import type { CommonStorageSettings, ListedObject, StorageDriver, UploadRequest } from './types.ts';

const MiB = 1024 * 1024;
// STORAGE_RETAIN_MODE → Azure's immutability policy mode.
const POLICY_MODE = { governance: 'Unlocked', compliance: 'Locked' } as const;
// What Azure's refusal of an immutability policy says (codes and messages vary by account setup).
const IMMUTABILITY_REFUSAL = /immutab|worm|versioning/i;

// Azure's limits for a block blob (Put Block / Put Block List, service version 2019-12-12 and later).
export const MAX_BLOCKS = 50_000; // committed blocks per blob
export const MAX_BLOCK_SIZE = 4000 * MiB; // bytes per block
export const MAX_BLOB_SIZE = MAX_BLOCKS * MAX_BLOCK_SIZE; // ≈ 190.7 TiB
// Metadata names and values together may not exceed 8 KiB.
const MAX_METADATA_BYTES = 8 * 1024;

// The SDK's own default: 50,000 × 8 MiB caps a blob of unknown size at 390.6 GiB (far above the
// 50 GiB every default must carry), and blocks above 4 MiB get Azure's high-throughput ingest.
export const DEFAULT_BLOCK_SIZE = 8 * MiB;
// Two blocks uploading at once (the SDK's default is 5): the job measured 20–25 MiB less peak RSS
// than with 5 and no slower on loopback; the dump (66–142 MB/s) is the bottleneck, not the requests.
export const DEFAULT_CONCURRENCY = 2;
// Below this a blob of unknown size would be capped under 48.8 GiB, and the requests multiply.
const MIN_BLOCK_SIZE = 1 * MiB;
// More parallel requests than this buy no throughput from one process and only cost memory.
const MAX_CONCURRENCY = 64;
// After an abort that lands while the commit request is in flight, how long to wait for its answer
// (one small request) so that a blob it created can be deleted; the run must still end within seconds.
const COMMIT_GRACE_MS = 5_000;

// The tiers Put Block List accepts for a block blob; undefined leaves the account's default tier.
const ACCESS_TIERS = ['Hot', 'Cool', 'Cold', 'Archive'] as const;
type AccessTier = (typeof ACCESS_TIERS)[number];

// Azure error codes (x-ms-error-code) that no retry will heal: bad or missing rights, no container.
const DENIED_CODES = new Set([
  'AuthenticationFailed', 'AuthorizationFailure', 'AuthorizationPermissionMismatch', 'AuthorizationProtocolMismatch',
  'AuthorizationResourceTypeMismatch', 'AuthorizationServiceMismatch', 'AuthorizationSourceIPMismatch',
  'InsufficientAccountPermissions', 'AccountIsDisabled', 'ContainerNotFound', 'ContainerBeingDeleted', 'ContainerDisabled',
]);
// Azure error codes that say "try again later" (besides NETWORK_ERROR_CODES).
const UNAVAILABLE_CODES = new Set(['ServerBusy', 'OperationTimedOut', 'InternalError', 'REQUEST_SEND_ERROR']);
// @azure/identity's errors: the workload identity (or whatever DefaultAzureCredential found) got no token.
const IDENTITY_ERRORS = new Set(['CredentialUnavailableError', 'AuthenticationError', 'AggregateAuthenticationError', 'AuthenticationRequiredError']);

// STORAGE_PART_SIZE: a block size within Azure's limits.
const blockSizeSetting = makeValidator<number>((input) => {
  const bytes = parseSize(input);
  if (bytes === undefined || bytes < MIN_BLOCK_SIZE || bytes > MAX_BLOCK_SIZE) {
    throw new Error(`"${input}" is not a block size between ${formatBytes(MIN_BLOCK_SIZE)} and ${formatBytes(MAX_BLOCK_SIZE)}`);
  }
  return bytes;
});

// STORAGE_CONCURRENCY: blocks kept in memory and in flight at once.
const concurrencySetting = makeValidator<number>((input) => {
  const value = Number(input.trim());
  if (!Number.isInteger(value) || value < 1 || value > MAX_CONCURRENCY) throw new Error(`"${input}" is not a whole number from 1 to ${MAX_CONCURRENCY}`);
  return value;
});

// STORAGE_ACCESS_TIER, in any letter case.
const accessTierSetting = makeValidator<AccessTier>((input) => {
  const tier = ACCESS_TIERS.find((name) => name.toLowerCase() === input.trim().toLowerCase());
  if (!tier) throw new Error(`"${input}" is not one of ${ACCESS_TIERS.join(', ')}`);
  return tier;
});

// Azure storage account names: 3–24 lower-case letters and digits.
const accountSetting = makeValidator<string>((input) => {
  if (!/^[a-z0-9]{3,24}$/.test(input)) throw new Error(`"${input}" is not a storage account name (3-24 lower-case letters and digits)`);
  return input;
});

// Container names: 3–63 characters, lower-case letters, digits and single hyphens, no hyphen at either end.
const CONTAINER_NAME = /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/;

const env = {
  // The Azure CLI's own variable: a full connection string (account key or SAS inside).
  AZURE_STORAGE_CONNECTION_STRING: str({ default: undefined, desc: 'storage account connection string' }),
  AZURE_STORAGE_ACCOUNT: accountSetting({ default: undefined, desc: 'storage account name' }),
  AZURE_STORAGE_KEY: str({ default: undefined, desc: 'storage account access key' }),
  AZURE_STORAGE_SAS_TOKEN: str({ default: undefined, desc: 'shared access signature (query string)' }),
  // Unset: the account's default tier (usually Hot) applies, and no tier-change fees surprise anyone.
  STORAGE_ACCESS_TIER: accessTierSetting({ default: undefined, desc: 'Hot, Cool, Cold or Archive' }),
  // Unset: DEFAULT_BLOCK_SIZE, raised from the size hint when the hint needs bigger blocks.
  STORAGE_PART_SIZE: blockSizeSetting({ default: undefined, desc: 'block size, e.g. 8MiB' }),
  // Unset: DEFAULT_CONCURRENCY.
  STORAGE_CONCURRENCY: concurrencySetting({ default: undefined, desc: 'blocks buffered and uploaded at once' }),
};
type AzureSettings = EnvValues<typeof env>;

// How the client authenticates, decided from the variables once, before any request.
type Credentials =
  | { kind: 'connection-string'; connectionString: string }
  | { kind: 'shared-key'; url: string; account: string; key: string }
  | { kind: 'sas'; url: string; token: string }
  | { kind: 'default'; url: string };

// What planParts needs to know of Azure, for the block size and concurrency of one upload.
// Memory: the SDK pools `concurrency` blocks and holds about one more of incoming data, so the
// buffers are (concurrency + 1) × blockSize: 24 MiB at the defaults. The process adds its baseline
// and the chunks the pipeline has dropped but V8 has not yet collected. Measured with
// test/bench/azure-upload.ts (2 GiB into azurite, defaults): the whole job peaks at 207–212 MiB ≈ 110
// baseline + 24 buffers + 70–80 of uncollected chunks (the same job into a local folder: 180 MiB);
// a longer dump gives the same peak.
// Size: without a hint the configured (or default) block size decides the largest blob: 8 MiB →
// 390.6 GiB. With a hint the block size grows so that twice the hint fits in 50,000 blocks (8 MiB
// covers hints up to 195 GiB), capped at Azure's 4000 MiB (≈ 190.7 TiB per blob): a 1 TiB hint →
// 42 MiB blocks, 126 MiB of buffers; 5 TiB → 210 MiB blocks, 630 MiB; the maximum → 11.7 GiB. A
// configured STORAGE_PART_SIZE too small for the hint gets the same headroom.
export const AZURE_BLOCKS: PartLimits = {
  maxParts: MAX_BLOCKS,
  minPartSize: MIN_BLOCK_SIZE,
  maxPartSize: MAX_BLOCK_SIZE,
  maxObjectSize: MAX_BLOB_SIZE,
  defaultPartSize: DEFAULT_BLOCK_SIZE,
  defaultConcurrency: DEFAULT_CONCURRENCY,
  configuredMargin: SIZE_HINT_MARGIN,
};

// Maps the request's metadata to Azure's rules: names must be C# identifiers (letters, digits, `_`,
// not starting with a digit; `planb-run-id` becomes `planb_run_id`) and unique ignoring case;
// values travel as HTTP headers, so anything outside printable ASCII is percent-encoded.
export function azureMetadata(metadata: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  const seen = new Map<string, string>();
  let bytes = 0;
  for (const [name, value] of Object.entries(metadata)) {
    const key = name.replace(/[^A-Za-z0-9_]/g, '_').replace(/^(?=[0-9])/, '_');
    if (key === '') throw new StorageError('azure metadata names cannot be empty', 'other');
    const clash = seen.get(key.toLowerCase());
    if (clash !== undefined) throw new StorageError(`azure metadata names "${clash}" and "${name}" collide as "${key}"`, 'other');
    seen.set(key.toLowerCase(), name);
    out[key] = /^[\x20-\x7e]*$/.test(value) ? value : encodeURIComponent(value);
    bytes += key.length + out[key].length;
  }
  if (bytes > MAX_METADATA_BYTES) throw new StorageError(`azure metadata is ${bytes} bytes; Azure allows ${MAX_METADATA_BYTES}`, 'other');
  return out;
}

// Which StorageFailure an Azure SDK, identity or socket error is.
export function classify(error: unknown): StorageFailure {
  const { statusCode, code, name } = (error ?? {}) as { statusCode?: unknown; code?: unknown; name?: unknown };
  const status = typeof statusCode === 'number' ? statusCode : undefined;
  if (typeof code === 'string' && DENIED_CODES.has(code)) return 'denied';
  if (typeof code === 'string' && (UNAVAILABLE_CODES.has(code) || NETWORK_ERROR_CODES.has(code))) return 'unavailable';
  if (status === 401 || status === 403) return 'denied';
  if (status === 408 || status === 429 || (status !== undefined && status >= 500)) return 'unavailable';
  if (typeof name === 'string' && IDENTITY_ERRORS.has(name)) return status === undefined || status < 500 ? 'denied' : 'unavailable';
  if (name === 'AbortError') return 'unavailable'; // a per-try timeout of the SDK's retry policy
  return 'other';
}

// Decides the credentials from the variables; every conflict or gap is a ConfigError naming them.
function credentialsFrom(common: CommonStorageSettings, settings: AzureSettings): Credentials {
  const connectionString = settings.AZURE_STORAGE_CONNECTION_STRING;
  const account = settings.AZURE_STORAGE_ACCOUNT;
  const key = settings.AZURE_STORAGE_KEY;
  const sas = settings.AZURE_STORAGE_SAS_TOKEN?.replace(/^\?/, '');
  const problems: string[] = [];
  if (!CONTAINER_NAME.test(common.bucket)) {
    problems.push(`STORAGE_BUCKET: "${common.bucket}" is not an Azure container name (3-63 lower-case letters, digits and single hyphens)`);
  }
  if (connectionString !== undefined && !completeConnectionString(connectionString)) {
    problems.push('AZURE_STORAGE_CONNECTION_STRING: needs AccountName and AccountKey, or BlobEndpoint and SharedAccessSignature');
  }
  if (connectionString !== undefined) {
    const others = [account && 'AZURE_STORAGE_ACCOUNT', key && 'AZURE_STORAGE_KEY', sas && 'AZURE_STORAGE_SAS_TOKEN', common.endpoint && 'STORAGE_ENDPOINT'].filter(Boolean);
    if (others.length > 0) problems.push(`AZURE_STORAGE_CONNECTION_STRING names the account, endpoint and secret itself; unset ${others.join(', ')}`);
  }
  if (key !== undefined && sas !== undefined) problems.push('AZURE_STORAGE_KEY and AZURE_STORAGE_SAS_TOKEN are both set; set only one');
  if (key !== undefined && account === undefined) problems.push('AZURE_STORAGE_KEY needs AZURE_STORAGE_ACCOUNT');
  const url = common.endpoint?.replace(/\/+$/, '') ?? (account && `https://${account}.blob.core.windows.net`);
  if (connectionString === undefined && url === undefined) {
    problems.push('STORAGE_TYPE=azure needs AZURE_STORAGE_ACCOUNT or STORAGE_ENDPOINT (or AZURE_STORAGE_CONNECTION_STRING)');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  if (connectionString !== undefined) return { kind: 'connection-string', connectionString };
  if (url === undefined) throw new ConfigError(['no Azure blob endpoint']);
  if (key !== undefined && account !== undefined) return { kind: 'shared-key', url, account, key };
  if (sas !== undefined) return { kind: 'sas', url, token: sas };
  return { kind: 'default', url };
}

// Whether a connection string names an account key or a SAS (checked before the dump starts; the SDK
// parses it fully when the upload begins).
function completeConnectionString(connectionString: string): boolean {
  const parts = new Map(connectionString.split(';').map((part) => [part.slice(0, part.indexOf('=')).trim().toLowerCase(), part.slice(part.indexOf('=') + 1)]));
  if (parts.get('usedevelopmentstorage') === 'true') return true;
  return (parts.has('accountname') && parts.has('accountkey')) || (parts.has('blobendpoint') && parts.has('sharedaccesssignature'));
}

// Loads the SDK only when an Azure upload runs, so other targets don't pay its ~40 MiB at start-up.
async function connect(credentials: Credentials, container: string): Promise<ContainerClient> {
  const { AnonymousCredential, BlobServiceClient, StorageSharedKeyCredential } = await import('@azure/storage-blob');
  const options: StoragePipelineOptions = { userAgentOptions: { userAgentPrefix: 'planb-backup' } };
  // Reads AZURE_CLIENT_ID / AZURE_TENANT_ID / AZURE_FEDERATED_TOKEN_FILE (AKS workload identity),
  // a managed identity, or a developer login by itself.
  const token = credentials.kind === 'default' ? new (await import('@azure/identity')).DefaultAzureCredential() : undefined;
  try {
    switch (credentials.kind) {
      case 'connection-string':
        return BlobServiceClient.fromConnectionString(credentials.connectionString, options).getContainerClient(container);
      case 'shared-key':
        return new BlobServiceClient(credentials.url, new StorageSharedKeyCredential(credentials.account, credentials.key), options).getContainerClient(container);
      case 'sas':
        return new BlobServiceClient(`${credentials.url}?${credentials.token}`, new AnonymousCredential(), options).getContainerClient(container);
      case 'default':
        return new BlobServiceClient(credentials.url, token, options).getContainerClient(container);
    }
  } catch (error) {
    // The SDK's messages name the bad part ("Invalid AccountKey in the provided Connection String"), never its value.
    const variable = credentials.kind === 'connection-string' ? 'AZURE_STORAGE_CONNECTION_STRING' : 'STORAGE_ENDPOINT';
    throw new ConfigError([`${variable}: ${error instanceof Error ? error.message : String(error)}`]);
  }
}

// The blob's address without any SAS query string (it would be a secret in the log and callback).
function publicUrl(blob: BlockBlobClient): string {
  const url = new URL(blob.url);
  url.search = '';
  return url.href;
}

function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}

async function upload(container: ContainerClient, settings: AzureSettings, request: UploadRequest): Promise<{ url: string }> {
  const { key, body, signal, contentType, sizeHint, retainUntil, log } = request;
  if (signal.aborted) throw asError(signal.reason);
  const metadata = azureMetadata(request.metadata);
  const blob = container.getBlockBlobClient(key);
  const plan = planParts(AZURE_BLOCKS, sizeHint, { partSize: settings.STORAGE_PART_SIZE, concurrency: settings.STORAGE_CONCURRENCY });
  log.info(
    { blockSize: plan.partSize, concurrency: plan.concurrency, maxBlobSize: plan.capacity, bufferBytes: plan.bufferBytes, sizeHint },
    `azure upload to ${container.containerName}: ${formatBytes(plan.partSize)} blocks × ${plan.concurrency} at once, up to ${formatBytes(plan.capacity)}` +
      (plan.raisedFrom !== undefined ? ` (STORAGE_PART_SIZE ${formatBytes(plan.raisedFrom)} raised for a size hint of ${formatBytes(sizeHint ?? 0)})` : ''),
  );

  // Passes the body to the SDK, counting bytes, and refuses to go past 50,000 blocks (Azure would
  // reject the commit only after the whole dump had been sent). Destroying it stops the SDK reading.
  let bytesIn = 0;
  let bytesStaged = 0;
  let bodyEnded = false;
  const feed = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytesIn += chunk.length;
      if (bytesIn <= plan.capacity) return callback(null, chunk);
      callback(new StorageError(
        `the backup is larger than ${MAX_BLOCKS} blocks of ${formatBytes(plan.partSize)} (${formatBytes(plan.capacity)}); set BACKUP_EXPECTED_SIZE or STORAGE_PART_SIZE`,
        'other',
      ));
    },
    // The body has ended and the commit is still to come: uploadStream hands this same metadata
    // object to commitBlockList, so what only the end knows (the SHA-256) goes on the blob too.
    flush(callback) {
      try {
        Object.assign(metadata, azureMetadata({ ...request.metadata, ...request.lateMetadata?.() }));
        callback();
      } catch (error) {
        callback(asError(error));
      }
    },
  });
  feed.once('end', () => {
    bodyEnded = true;
  });
  // True once every byte is staged: from then on uploadStream is sending, or about to send, the commit.
  const committing = () => bodyEnded && bytesStaged === bytesIn;

  // uploadStream hands its abortSignal to the commit only (not to the block uploads), so aborting this
  // before the commit starts means the commit is never sent; block uploads still in flight end on
  // their own and their blocks are never committed.
  const commitGuard = new AbortController();
  // uploadStream passes its options on to commitBlockList whole (@azure/storage-blob 12.32): the
  // immutability policy, which only the commit accepts, rides along (the retention test checks the wire).
  const options: BlockBlobUploadStreamOptions & Pick<BlockBlobCommitBlockListOptions, 'immutabilityPolicy'> = {
    abortSignal: commitGuard.signal,
    conditions: { ifNoneMatch: '*' },
    blobHTTPHeaders: { blobContentType: contentType },
    metadata,
    tier: settings.STORAGE_ACCESS_TIER,
    onProgress: ({ loadedBytes }) => {
      bytesStaged = loadedBytes;
    },
    ...(retainUntil !== undefined && { immutabilityPolicy: { expiriesOn: retainUntil.date, policyMode: POLICY_MODE[retainUntil.mode] } }),
  };
  const uploading = blob.uploadStream(feed, plan.partSize, plan.concurrency, options);
  const feeding = pipeline(body, feed);

  // Whichever comes first decides, once: everything finished, something failed, or the signal aborted.
  let decided = false;
  let onAbort = () => {};
  const outcome = new Promise<void>((resolve, reject) => {
    const decide = (settle: () => void) => {
      if (decided) return;
      decided = true;
      settle();
    };
    Promise.all([feeding, uploading]).then(
      () => decide(resolve),
      (error: unknown) => decide(() => reject(asError(error))),
    );
    onAbort = () =>
      decide(() => {
        const reason = asError(signal.reason);
        if (!committing()) {
          commitGuard.abort(reason);
          feed.destroy(reason);
          reject(reason);
        } else {
          // The commit is on the wire: wait for its answer and delete what it created.
          void undoCommit(blob, uploading, log).finally(() => reject(reason));
        }
      });
  });
  signal.addEventListener('abort', onAbort, { once: true });

  try {
    await outcome;
    return { url: publicUrl(blob) };
  } catch (error) {
    const upstream = upstreamCause(body, signal);
    const cause = rootCause(error, body, signal, `azure upload of ${key} to container ${container.containerName} failed`, classify(error));
    // Nothing more may be committed, nor read from the body, once the upload failed.
    commitGuard.abort(cause);
    feed.destroy();
    const code = (error as { code?: unknown }).code;
    if (upstream === undefined && (code === 'BlobAlreadyExists' || code === 'ConditionNotMet')) {
      throw new StorageError(`refusing to overwrite existing blob ${key} in container ${container.containerName}`, 'other', { cause: error });
    }
    if (upstream === undefined && retainUntil !== undefined && refusedImmutability(error)) {
      throw new StorageError(
        `${cause.message}; STORAGE_RETAIN_DAYS needs a container with version-level immutability (and blob versioning) enabled, and the ` +
          'immutableStorage/runAsSuperUser data action (docs/retention.md), or unset STORAGE_RETAIN_DAYS',
        'denied',
        { cause: error },
      );
    }
    throw cause;
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}

// Whether Azure refused the commit's immutability policy: the container (or account) has no
// version-level immutability, or the identity lacks the permission to set one. No retry changes either.
function refusedImmutability(error: unknown): boolean {
  const { statusCode, code, message } = (error ?? {}) as { statusCode?: unknown; code?: unknown; message?: unknown };
  if (statusCode === 403) return true;
  return (statusCode === 400 || statusCode === 409) && IMMUTABILITY_REFUSAL.test(`${String(code)} ${String(message)}`);
}

// After an abort that caught the commit in flight: waits (briefly) for the commit's answer and, if it
// created the blob, deletes exactly that version (If-Match its ETag). Failures are warnings.
async function undoCommit(blob: BlockBlobClient, uploading: Promise<{ etag?: string }>, log: UploadRequest['log']): Promise<void> {
  const etag = await withTimeout(uploading.then((response) => response.etag, () => undefined), COMMIT_GRACE_MS);
  if (etag === TIMED_OUT) {
    log.warn({ key: blob.name }, `aborted during the commit of ${blob.name}; its outcome is unknown after ${COMMIT_GRACE_MS} ms, a blob may exist`);
    return;
  }
  if (etag === undefined) return;
  try {
    await blob.delete({ conditions: { ifMatch: etag } });
    log.warn({ key: blob.name }, `aborted while committing ${blob.name}; deleted the blob the commit had created`);
  } catch (error) {
    log.warn({ err: error, key: blob.name }, `aborted while committing ${blob.name}; could not delete the blob the commit created`);
  }
}

// The azure driver: its variables, its secrets, and how to open a target from them.
export const azure = {
  env,
  secrets: ['AZURE_STORAGE_CONNECTION_STRING', 'AZURE_STORAGE_KEY', 'AZURE_STORAGE_SAS_TOKEN'],
  plansParts: true,
  retention: true,
  classify,
  open(common, settings) {
    const credentials = credentialsFrom(common, settings);
    let container: Promise<ContainerClient> | undefined;
    const open = () => (container ??= connect(credentials, common.bucket));
    const readFailure = (error: unknown, operation: string, where: string): StorageError => {
      const status = (error as { statusCode?: unknown }).statusCode;
      const kind = status === 404 && (error as { code?: unknown }).code !== 'ContainerNotFound' ? 'missing' : classify(error);
      return new StorageError(`azure ${operation} of ${where} failed: ${error instanceof Error ? error.message : String(error)}`, kind, { cause: error });
    };
    return {
      async upload(request) {
        return upload(await open(), settings, request);
      },

      async download(key, signal) {
        const client = await open();
        try {
          const response = await client.getBlockBlobClient(key).download(0, undefined, { abortSignal: signal });
          const stream = response.readableStreamBody;
          if (!stream) throw new StorageError(`azure download of ${key} returned no stream`, 'other');
          return stream as Readable;
        } catch (error) {
          throw signal.aborted ? signal.reason : readFailure(error, 'download', `${client.containerName}/${key}`);
        }
      },

      async list(prefix, signal) {
        const client = await open();
        const found: ListedObject[] = [];
        try {
          // Only committed blobs are listed: uncommitted blocks of a failed upload never appear.
          for await (const blob of client.listBlobsFlat({ prefix, abortSignal: signal })) found.push({ key: blob.name, bytes: blob.properties.contentLength ?? 0 });
        } catch (error) {
          throw signal.aborted ? signal.reason : readFailure(error, 'list', `${client.containerName}/${prefix}`);
        }
        return found;
      },
    };
  },
} satisfies StorageDriver<typeof env>;
