// STORAGE_TYPE=s3 against a throw-away s3rver behind a strict front (test/support/s3-server.ts): the
// shared contract suite, then what is specific to S3 (multipart aborted, root cause over the 405 of
// s3rver's AbortMultipartUpload, cancellation of stalled parts, back-pressure, classification), and the
// pure part-sizing, settings and classification rules.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { CompleteMultipartUploadCommand, CreateMultipartUploadCommand, HeadObjectCommand, S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import { cleanEnv } from 'envalid';
import { pino, type Logger } from 'pino';
import { loadConfig } from '../../../src/config.ts';
import { ConfigError, StorageError } from '../../../src/errors.ts';
import {
  DEFAULT_CONCURRENCY,
  DEFAULT_PART_SIZE,
  EXTRA_PART_BUFFERS,
  MAX_OBJECT_SIZE,
  MAX_PART_SIZE,
  MAX_PARTS,
  MIN_PART_SIZE,
  planParts,
  s3,
  s3FailureKind,
  s3Options,
  SIZE_HINT_MARGIN,
} from '../../../src/storage/s3.ts';
import type { StorageTarget, UploadRequest } from '../../../src/storage/types.ts';
import { requireS3rver, startS3Server, type S3TestServer } from '../../support/s3-server.ts';
import { body, bodyFailingOnce, countingBody, patternBytes, steadyValue, storageContract } from '../storage-contract.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;
// The smallest part S3 allows, so that a few MiB make several parts.
const PART = 5 * MiB;
const BUCKET = 'planb-s3-test';
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const silent = pino({ level: 'silent' });

// The driver's variables as config.ts would clean them; a bad value throws instead of exiting.
function settingsFrom(vars: Record<string, string>): Record<string, unknown> {
  return cleanEnv(vars, s3.env, {
    reporter: ({ errors }) => {
      if (Object.keys(errors).length > 0) throw new Error(Object.keys(errors).join(', '));
    },
  });
}

function openTarget(server: S3TestServer, vars: Record<string, string> = {}, bucket = BUCKET): StorageTarget {
  const settings = settingsFrom({
    STORAGE_ACCESS_KEY_ID: server.credentials.accessKeyId,
    STORAGE_SECRET_ACCESS_KEY: server.credentials.secretAccessKey,
    STORAGE_PART_SIZE: '5MiB',
    ...vars,
  });
  return s3.open({ bucket, endpoint: server.endpoint, region: undefined }, settings);
}

function request(key: string, data: Readable, overrides: Partial<UploadRequest> = {}): UploadRequest {
  return {
    key,
    body: data,
    signal: new AbortController().signal,
    contentType: 'application/zstd',
    metadata: { 'planb-run-id': '20261122T043300Z-3f9a1c2e', 'planb-db-type': 'postgresql' },
    sizeHint: undefined,
    log: silent,
    ...overrides,
  };
}

// A logger whose lines a test can read.
function capturingLogger(): { log: Logger; lines: { level: number; msg?: string; message?: string; err?: unknown }[] } {
  const lines: { level: number; message?: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(JSON.parse(chunk.toString()) as { level: number; message?: string });
      callback();
    },
  });
  return { log: pino({ level: 'debug', messageKey: 'message' }, sink), lines };
}

async function headStatus(server: S3TestServer, key: string): Promise<number> {
  try {
    await server.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
    return 200;
  } catch (error) {
    return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode ?? 0;
  }
}

// No object, no key under the name in a listing: what "leaves nothing" means on S3.
async function assertNothingAt(server: S3TestServer, key: string): Promise<void> {
  assert.equal(await headStatus(server, key), 404, `HeadObject ${key} is 404`);
  assert.deepEqual(await server.list(BUCKET, key), [], `ListObjectsV2 shows no ${key}`);
}

// The multipart upload id the target used for `key`, as seen on its part uploads or its abort.
function uploadIdOf(server: S3TestServer, key: string): string {
  const id = server.requests.find((r) => r.key === key && r.query.has('uploadId'))?.query.get('uploadId');
  assert.ok(id, `a multipart upload was started for ${key}`);
  return id;
}

function operations(server: S3TestServer, key: string): string[] {
  return server.requests.filter((r) => r.key === key).map((r) => r.operation);
}

describe('s3 part sizing', () => {
  // Sizes from 0 to 5 TiB: powers of two, their neighbours, decimal sizes and odd values.
  const sizes = [0, 1, 1000, MIN_PART_SIZE, 5e9, 50 * GiB, 50 * GiB + 1, 107 * GiB, 1 * TiB, 2.5 * TiB, MAX_OBJECT_SIZE - 1, MAX_OBJECT_SIZE];
  for (let exponent = 10; exponent <= 42; exponent += 1) sizes.push(2 ** exponent - 1, 2 ** exponent, 2 ** exponent + 12_345);
  for (let n = 1; n <= 200; n += 1) sizes.push(Math.round((MAX_OBJECT_SIZE * ((n * 7919) % 1000)) / 1000) + n);

  test('with no size hint, parts are 8 MiB, two at once, holding 78 GiB in 24 MiB of buffers', () => {
    const plan = planParts(undefined);
    assert.equal(plan.partSize, DEFAULT_PART_SIZE);
    assert.equal(plan.concurrency, DEFAULT_CONCURRENCY);
    assert.equal(plan.concurrency, 2);
    assert.ok(plan.capacity >= 50 * GiB, 'an unknown-size dump of 50 GiB fits');
    assert.equal(plan.capacity, 8 * MiB * MAX_PARTS);
    assert.equal(plan.bufferBytes, 24 * MiB);
  });

  test('for every size hint up to 5 TiB, the dump fits in 10,000 parts of 5 MiB to 5 GiB', () => {
    for (const size of sizes.filter((s) => s <= MAX_OBJECT_SIZE)) {
      const plan = planParts(size);
      assert.ok(plan.partSize >= MIN_PART_SIZE && plan.partSize <= MAX_PART_SIZE, `part size for ${size}`);
      assert.ok(Math.ceil(size / plan.partSize) <= MAX_PARTS, `${size} bytes need ${Math.ceil(size / plan.partSize)} parts`);
      assert.ok(plan.capacity >= Math.min(size * SIZE_HINT_MARGIN, MAX_OBJECT_SIZE), `a hint of ${size} may be low by ${SIZE_HINT_MARGIN}×`);
      assert.ok(plan.concurrency >= 2, 'reading overlaps uploading');
      assert.equal(plan.bufferBytes, plan.partSize * (plan.concurrency + EXTRA_PART_BUFFERS));
    }
  });

  test('the 5 TiB object limit is reachable with one plan, and a hint above it changes nothing', () => {
    const plan = planParts(MAX_OBJECT_SIZE);
    assert.ok(plan.capacity >= MAX_OBJECT_SIZE);
    assert.equal(plan.capacity, MAX_OBJECT_SIZE);
    assert.deepEqual(planParts(10 * TiB), plan);
  });

  test('part buffers stay at the default 24 MiB up to a 39 GiB hint, within 33 MiB up to 50 GiB and within 66 MiB up to 107 GiB', () => {
    const buffers = (size: number) => planParts(size).bufferBytes;
    const upTo = (limit: number) => [...sizes, 20 * GiB, 39 * GiB, 45 * GiB, 60 * GiB, 75 * GiB, 100 * GiB].filter((s) => s <= limit);
    for (const size of upTo(39 * GiB)) assert.equal(buffers(size), 24 * MiB, `${size} bytes`);
    for (const size of upTo(50 * GiB)) assert.ok(buffers(size) <= 33 * MiB, `${size} bytes: ${buffers(size) / MiB} MiB`);
    for (const size of upTo(107 * GiB)) assert.ok(buffers(size) <= 66 * MiB, `${size} bytes: ${buffers(size) / MiB} MiB`);
    assert.ok(buffers(40 * GiB) > 24 * MiB && buffers(108 * GiB) > 66 * MiB, 'the documented limits are the real ones');
  });

  test('a 50 GiB hint gets 11 MiB parts, two at once', () => {
    assert.deepEqual(planParts(50 * GiB), { partSize: 11 * MiB, concurrency: 2, capacity: 11 * MiB * MAX_PARTS, bufferBytes: 11 * MiB * 3 });
  });

  test('an explicit part size and concurrency are used as given when the hint fits', () => {
    const plan = planParts(10 * GiB, { partSize: 64 * MiB, concurrency: 8 });
    assert.equal(plan.partSize, 64 * MiB);
    assert.equal(plan.concurrency, 8);
    assert.equal(plan.raisedFrom, undefined);
  });

  test('an explicit part size too small for the hint is raised so that the dump still fits', () => {
    const plan = planParts(1 * TiB, { partSize: 5 * MiB });
    assert.equal(plan.raisedFrom, 5 * MiB);
    assert.ok(plan.capacity >= 1 * TiB);
    assert.ok(plan.partSize < 1 * TiB / MAX_PARTS + MiB, 'raised only as far as needed');
  });
});

describe('s3 settings', () => {
  const common = { bucket: 'b', endpoint: undefined, region: 'eu-west-1' };

  test('a custom endpoint gets path-style addressing and us-east-1 unless told otherwise', () => {
    const options = s3Options({ ...common, region: undefined, endpoint: 'http://minio:9000' }, settingsFrom({}));
    assert.equal(options.forcePathStyle, true);
    assert.equal(options.region, 'us-east-1');
    const virtual = s3Options({ ...common, endpoint: 'https://r2.example', region: 'auto' }, settingsFrom({ STORAGE_S3_FORCE_PATH_STYLE: 'false' }));
    assert.equal(virtual.forcePathStyle, false);
    assert.equal(virtual.region, 'auto');
  });

  test('on AWS the region and the credentials come from the SDK default chain when not set', () => {
    const options = s3Options({ ...common, region: undefined }, settingsFrom({ AWS_REGION: 'eu-west-1' }));
    assert.equal(options.forcePathStyle, false);
    assert.equal(options.region, undefined, "left to the SDK, which reads AWS_REGION itself");
    assert.equal(options.credentials, undefined);
    assert.equal(options.ifNoneMatch, true);
  });

  test('on AWS with no region anywhere, the run is refused before it starts, not after the dump', () => {
    assert.throws(() => s3Options({ ...common, region: undefined }, settingsFrom({})), (error) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems, ['STORAGE_REGION is required for S3 on AWS (or AWS_REGION); an S3-compatible store needs STORAGE_ENDPOINT']);
      return true;
    });
  });

  test('parts carry a CRC32 on AWS; with a custom endpoint only when STORAGE_S3_CHECKSUM=crc32', () => {
    assert.equal(s3Options(common, settingsFrom({})).checksum, 'CRC32');
    assert.equal(s3Options(common, settingsFrom({ STORAGE_S3_CHECKSUM: 'none' })).checksum, undefined);
    const custom = { ...common, endpoint: 'http://minio:9000' };
    assert.equal(s3Options(custom, settingsFrom({})).checksum, undefined);
    assert.equal(s3Options(custom, settingsFrom({ STORAGE_S3_CHECKSUM: 'crc32' })).checksum, 'CRC32');
  });

  test('half a key pair, a session token alone, a KMS key without aws:kms and a part size outside 5 MiB–5 GiB are refused together', () => {
    assert.throws(
      () =>
        s3Options(
          common,
          settingsFrom({ STORAGE_ACCESS_KEY_ID: 'AKIA', STORAGE_S3_KMS_KEY_ID: 'arn:aws:kms:k', STORAGE_S3_SSE: 'AES256', STORAGE_PART_SIZE: '1MiB' }),
        ),
      (error) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.problems.length, 3, error.message);
        return true;
      },
    );
    assert.throws(() => s3Options(common, settingsFrom({ STORAGE_SESSION_TOKEN: 'token' })), ConfigError);
    assert.throws(() => s3Options(common, settingsFrom({ STORAGE_CONCURRENCY: '0' })), ConfigError);
    assert.throws(() => settingsFrom({ STORAGE_S3_SSE: 'aes' }), /STORAGE_S3_SSE/);
  });

  test('the secret key and session token may come from files, and are listed as secrets to redact', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'planb-s3-secrets-'));
    try {
      await writeFile(join(dir, 'secret'), 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n', { mode: 0o600 });
      const config = loadConfig({
        DB_TYPE: 'sqlite',
        DB_NAME: '/data/app.db',
        STORAGE_TYPE: 's3',
        STORAGE_BUCKET: 'backups',
        STORAGE_REGION: 'eu-west-1',
        STORAGE_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE',
        STORAGE_SECRET_ACCESS_KEY_FILE: join(dir, 'secret'),
        STORAGE_S3_SSE: 'aws:kms',
        STORAGE_S3_KMS_KEY_ID: 'alias/backups',
        STORAGE_CLASS: 'STANDARD_IA',
      });
      assert.equal(config.storage.type, 's3');
      const options = s3Options(config.storage, config.storage.settings);
      assert.deepEqual(options.credentials, { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' });
      assert.equal(options.sse, 'aws:kms');
      assert.equal(options.storageClass, 'STANDARD_IA');
      assert.ok(config.secrets.includes('wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('s3 failure classification', () => {
  const sdkError = (name: string, status?: number, code?: string) =>
    Object.assign(new Error(name), { name, ...(code && { code }), ...(status !== undefined && { $metadata: { httpStatusCode: status } }) });

  test('auth and permission failures are denied: they will not heal by retrying', () => {
    for (const [name, status] of [['AccessDenied', 403], ['InvalidAccessKeyId', 403], ['SignatureDoesNotMatch', 403], ['NoSuchBucket', 404], ['ExpiredToken', 400], ['CredentialsProviderError', undefined], ['Unknown', 401]] as const) {
      assert.equal(s3FailureKind(sdkError(name, status)), 'denied', name);
    }
  });

  test('throttling, 5xx, timeouts and network errors are unavailable: worth retrying later', () => {
    for (const [name, status] of [['SlowDown', 503], ['ServiceUnavailable', 503], ['InternalError', 500], ['Unknown', 502], ['TooManyRequests', 429], ['RequestTimeout', 400], ['TimeoutError', undefined]] as const) {
      assert.equal(s3FailureKind(sdkError(name, status)), 'unavailable', name);
    }
    assert.equal(s3FailureKind(sdkError('Error', undefined, 'ECONNREFUSED')), 'unavailable');
    assert.equal(s3FailureKind(sdkError('Error', undefined, 'ECONNRESET')), 'unavailable');
  });

  test('everything else is other: a refused overwrite, an unsupported header, a bad argument', () => {
    for (const [name, status] of [['PreconditionFailed', 412], ['NotImplemented', 501], ['InvalidArgument', 400], ['EntityTooSmall', 400]] as const) {
      assert.equal(s3FailureKind(sdkError(name, status)), 'other', name);
    }
  });
});

describe('s3 against s3rver', () => {
  let server: S3TestServer;
  let cleanServer: S3TestServer;

  before(async () => {
    server = await startS3Server({ buckets: [BUCKET] });
    cleanServer = await startS3Server({ buckets: [BUCKET], implementAbort: true });
  });
  after(async () => {
    await server?.stop();
    await cleanServer?.stop();
  });

  test('a stream of several parts and an odd tail round-trips byte-identical, with its metadata', async (t) => {
    if (!requireS3rver(t)) return;
    const data = patternBytes(3 * PART + 123_457, 41);
    const { url } = await openTarget(server).upload(request('round/trip.bin', body(data)));
    assert.equal(url, `s3://${BUCKET}/round/trip.bin`);
    const stored = await server.read(BUCKET, 'round/trip.bin');
    assert.equal(stored?.length, data.length);
    assert.equal(sha256(stored ?? Buffer.alloc(0)), sha256(data));
    const head = await server.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: 'round/trip.bin' }));
    assert.equal(head.ContentType, 'application/zstd');
    assert.deepEqual(head.Metadata, { 'planb-run-id': '20261122T043300Z-3f9a1c2e', 'planb-db-type': 'postgresql' });
    const sent = server.requests.filter((r) => r.key === 'round/trip.bin');
    assert.deepEqual(sent.map((r) => r.operation), ['CreateMultipartUpload', 'UploadPart', 'UploadPart', 'UploadPart', 'UploadPart', 'CompleteMultipartUpload']);
    assert.equal(sent.at(-1)?.headers['if-none-match'], '*', 'the commit refuses to replace an object');
  });

  test('with CRC32 checksums (the AWS default) every part carries its checksum and the commit lists them all', async (t) => {
    if (!requireS3rver(t)) return;
    const data = patternBytes(2 * PART + 4_321, 17);
    await openTarget(server, { STORAGE_S3_CHECKSUM: 'crc32' }).upload(request('checksum/parts.bin', body(data)));
    assert.equal(sha256((await server.read(BUCKET, 'checksum/parts.bin')) ?? Buffer.alloc(0)), sha256(data));
    // The front answers 400 to a part whose CRC32 does not match and to a commit that omits one.
    const sent = server.requests.filter((r) => r.key === 'checksum/parts.bin');
    assert.deepEqual(sent.map((r) => [r.operation, r.status]), [
      ['CreateMultipartUpload', 200], ['UploadPart', 200], ['UploadPart', 200], ['UploadPart', 200], ['CompleteMultipartUpload', 200],
    ]);
    assert.equal(sent[0]?.headers['x-amz-checksum-algorithm'], 'CRC32');
    for (const part of sent.filter((r) => r.operation === 'UploadPart')) assert.match(String(part.headers['x-amz-checksum-crc32']), /^[A-Za-z0-9+/]{6}==$/);
  });

  test('the front, like AWS, refuses a checksummed upload whose commit omits the part checksums', async (t) => {
    if (!requireS3rver(t)) return;
    const client = new S3Client({ endpoint: server.endpoint, region: server.region, forcePathStyle: true, credentials: server.credentials, requestChecksumCalculation: 'WHEN_SUPPORTED' });
    t.after(() => client.destroy());
    const where = { Bucket: BUCKET, Key: 'checksum/omitted.bin' };
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ ...where, ChecksumAlgorithm: 'CRC32' }));
    const { ETag } = await client.send(new UploadPartCommand({ ...where, UploadId, PartNumber: 1, Body: patternBytes(1000, 3), ChecksumAlgorithm: 'CRC32' }));
    await assert.rejects(
      client.send(new CompleteMultipartUploadCommand({ ...where, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag }] } })),
      (error: Error) => error.name === 'InvalidPart',
    );
    assert.equal(await server.read(BUCKET, 'checksum/omitted.bin'), undefined);
  });

  test('a body of one small chunk is a single PutObject that refuses to overwrite', async (t) => {
    if (!requireS3rver(t)) return;
    const data = patternBytes(10_000, 2);
    await openTarget(server).upload(request('small/one.bin', body(data)));
    const sent = server.requests.filter((r) => r.key === 'small/one.bin');
    assert.deepEqual(sent.map((r) => r.operation), ['PutObject']);
    assert.equal(sent[0]?.headers['if-none-match'], '*');
    assert.equal(sha256((await server.read(BUCKET, 'small/one.bin')) ?? Buffer.alloc(0)), sha256(data));
  });

  test('a body that fails after a part was uploaded rejects with its own error, aborts the upload and leaves nothing', async (t) => {
    if (!requireS3rver(t)) return;
    const failure = new Error('the dump died');
    const { log, lines } = capturingLogger();
    const partStored = () => server.requests.some((r) => r.key === 'failed/mid.bin' && r.operation === 'UploadPart' && r.status === 200);
    const failing = bodyFailingOnce(patternBytes(2 * PART + 999, 5), partStored, failure);
    const upload = openTarget(server).upload(request('failed/mid.bin', failing, { log }));
    await assert.rejects(upload, (error) => {
      assert.equal(error, failure, "the body's own error, not s3rver's 405 to AbortMultipartUpload");
      return true;
    });
    const sent = server.requests.filter((r) => r.key === 'failed/mid.bin');
    assert.ok(sent.some((r) => r.operation === 'UploadPart' && r.status === 200), 'at least one part was stored before the failure');
    assert.ok(!sent.some((r) => r.operation === 'CompleteMultipartUpload'), 'never committed');
    const abort = sent.find((r) => r.operation === 'AbortMultipartUpload');
    assert.ok(abort, 'the multipart upload was aborted');
    assert.equal(abort.status, 405, 's3rver refuses the abort');
    const warning = lines.find((line) => line.level === 40 && /could not abort the multipart upload/.test(line.message ?? ''));
    assert.ok(warning, 'the failed cleanup is a warning line');
    await assertNothingAt(server, 'failed/mid.bin');
    assert.ok((await server.pendingUploads(BUCKET)).includes(uploadIdOf(server, 'failed/mid.bin')), 's3rver keeps the parts: invisible, but there');
  });

  test('where the store honours AbortMultipartUpload, a failed body leaves no parts either and no warning', async (t) => {
    if (!requireS3rver(t)) return;
    const failure = new Error('the dump died');
    const { log, lines } = capturingLogger();
    const partStored = () => cleanServer.requests.some((r) => r.key === 'failed/clean.bin' && r.operation === 'UploadPart' && r.status === 200);
    const upload = openTarget(cleanServer).upload(request('failed/clean.bin', bodyFailingOnce(patternBytes(3 * PART, 6), partStored, failure), { log }));
    await assert.rejects(upload, (error) => error === failure);
    const abort = cleanServer.requests.find((r) => r.key === 'failed/clean.bin' && r.operation === 'AbortMultipartUpload');
    assert.equal(abort?.status, 204);
    assert.ok(!(await cleanServer.pendingUploads(BUCKET)).includes(uploadIdOf(cleanServer, 'failed/clean.bin')), 'its parts are gone');
    assert.equal(lines.filter((line) => line.level >= 40).length, 0, 'no warning');
    assert.equal(await cleanServer.read(BUCKET, 'failed/clean.bin'), undefined);
  });

  test('a small body that fails never becomes a PutObject', async (t) => {
    if (!requireS3rver(t)) return;
    const failure = new Error('the dump died at once');
    await assert.rejects(openTarget(server).upload(request('failed/small.bin', body(patternBytes(1000, 8), { failWith: failure }))), (error) => error === failure);
    assert.deepEqual(operations(server, 'failed/small.bin'), [], 'nothing was sent at all');
    await assertNothingAt(server, 'failed/small.bin');
  });

  test('an abort while part uploads hang settles within seconds with the abort reason and leaves nothing', async (t) => {
    if (!requireS3rver(t)) return;
    const key = 'aborted/stalled.bin';
    cleanServer.inject({ match: (r) => r.key === key && r.operation === 'UploadPart', reply: 'stall' });
    try {
      const controller = new AbortController();
      const reason = new Error('interrupted by SIGTERM');
      const source = countingBody(patternBytes(64 * 1024, 9));
      const upload = openTarget(cleanServer).upload(request(key, source.stream, { signal: controller.signal }));
      await waitFor(() => cleanServer.requests.filter((r) => r.key === key && r.operation === 'UploadPart').length >= DEFAULT_CONCURRENCY);
      const started = performance.now();
      controller.abort(reason);
      await assert.rejects(upload, (error) => error === reason);
      const elapsed = performance.now() - started;
      // Tens of ms when it works; the bound is the 8 s main.ts allows after SIGTERM.
      assert.ok(elapsed < 8_000, `settled in ${Math.round(elapsed)} ms although no part upload ever got an answer`);
      const abort = cleanServer.requests.find((r) => r.key === key && r.operation === 'AbortMultipartUpload');
      assert.equal(abort?.status, 204, 'the multipart upload was aborted');
      assert.ok(source.stream.destroyed, 'the body was stopped');
      assert.equal(await cleanServer.read(BUCKET, key), undefined);
      assert.deepEqual(await cleanServer.list(BUCKET, key), []);
      assert.ok(!(await cleanServer.pendingUploads(BUCKET)).includes(uploadIdOf(cleanServer, key)));
    } finally {
      cleanServer.clearFaults();
    }
  });

  test('a cleanup that hangs delays the answer by at most a few seconds, and is reported as a warning', async (t) => {
    if (!requireS3rver(t)) return;
    const key = 'failed/hung-abort.bin';
    server.inject({ match: (r) => r.key === key && r.operation === 'AbortMultipartUpload', reply: 'stall' });
    try {
      const failure = new Error('the dump died');
      const { log, lines } = capturingLogger();
      const created = () => server.requests.some((r) => r.key === key && r.operation === 'CreateMultipartUpload' && r.status === 200);
      const started = performance.now();
      await assert.rejects(openTarget(server).upload(request(key, bodyFailingOnce(patternBytes(2 * PART, 21), created, failure), { log })), (error) => error === failure);
      assert.ok(performance.now() - started < 8_000, 'within the 8 s main.ts allows after SIGTERM');
      assert.ok(lines.some((line) => line.level === 40 && /cleanup did not finish/.test(line.message ?? '')));
      await assertNothingAt(server, key);
    } finally {
      server.clearFaults();
    }
  });

  test('the cleanup grace period starts when the upload stops, not when it started', async (t) => {
    if (!requireS3rver(t)) return;
    const key = 'failed/late.bin';
    const failure = new Error('the dump died after a while');
    const { log, lines } = capturingLogger();
    // About 6 s of trickling (longer than the grace period) before the body fails.
    const upload = openTarget(cleanServer).upload(request(key, body(patternBytes(PART + 60 * 16_384, 22), { chunk: 16_384, delayMs: 15, failWith: failure }), { log }));
    await assert.rejects(upload, (error) => error === failure);
    const abort = cleanServer.requests.find((r) => r.key === key && r.operation === 'AbortMultipartUpload');
    assert.equal(abort?.status, 204, 'the abort was answered before the upload rejected');
    assert.equal(lines.filter((line) => line.level >= 40).length, 0, 'no warning');
  });

  test('an abort while S3 commits waits a few seconds for the answer, then rejects with the abort reason', async (t) => {
    if (!requireS3rver(t)) return;
    const key = 'aborted/commit.bin';
    cleanServer.inject({ match: (r) => r.key === key && r.operation === 'CompleteMultipartUpload', reply: 'stall' });
    try {
      const controller = new AbortController();
      const reason = new Error('interrupted by SIGTERM');
      const { log, lines } = capturingLogger();
      const upload = openTarget(cleanServer).upload(request(key, body(patternBytes(2 * PART, 23)), { signal: controller.signal, log }));
      await waitFor(() => cleanServer.requests.some((r) => r.key === key && r.operation === 'CompleteMultipartUpload'));
      const started = performance.now();
      controller.abort(reason);
      await assert.rejects(upload, (error) => error === reason);
      assert.ok(performance.now() - started < 8_000);
      assert.ok(lines.some((line) => line.level === 40 && /while S3 was committing/.test(line.message ?? '')), 'the uncertainty is logged');
    } finally {
      cleanServer.clearFaults();
    }
  });

  test('while part uploads cannot proceed, the body is not read further (back-pressure, not buffering)', async (t) => {
    if (!requireS3rver(t)) return;
    const key = 'slow/backpressure.bin';
    cleanServer.inject({ match: (r) => r.key === key && r.operation === 'UploadPart', reply: 'stall' });
    const controller = new AbortController();
    try {
      const source = countingBody(patternBytes(64 * 1024, 10));
      const upload = openTarget(cleanServer).upload(request(key, source.stream, { signal: controller.signal }));
      const settled = upload.then(
        () => 'resolved',
        (error: unknown) => error,
      );
      await waitFor(() => cleanServer.requests.filter((r) => r.key === key && r.operation === 'UploadPart').length >= DEFAULT_CONCURRENCY);
      // Nothing more is pulled once every uploader waits and the part being cut is full.
      const later = await steadyValue(() => source.pulled());
      // Four parts in flight, the part being cut and stream buffers: never the whole (endless) body.
      assert.ok(later <= (DEFAULT_CONCURRENCY + 2) * PART, `pulled ${later / MiB} MiB`);
      controller.abort(new Error('enough'));
      assert.equal(((await settled) as Error).message, 'enough');
    } finally {
      cleanServer.clearFaults();
    }
  });

  test('an unknown access key is denied, and nothing is stored', async (t) => {
    if (!requireS3rver(t)) return;
    const target = openTarget(server, { STORAGE_ACCESS_KEY_ID: 'AKIANOTKNOWN', STORAGE_SECRET_ACCESS_KEY: 'nope' });
    await assert.rejects(target.upload(request('denied/key.bin', body(patternBytes(2 * PART, 12)))), (error) => {
      assert.ok(error instanceof StorageError, String(error));
      assert.equal(error.kind, 'denied');
      assert.match(error.message, /InvalidAccessKeyId \(HTTP 403\)/);
      return true;
    });
    await assertNothingAt(server, 'denied/key.bin');
  });

  test('a missing bucket is denied', async (t) => {
    if (!requireS3rver(t)) return;
    const target = openTarget(server, {}, 'no-such-bucket');
    await assert.rejects(target.upload(request('any.bin', body(patternBytes(1000, 13)))), (error) => {
      assert.ok(error instanceof StorageError);
      assert.equal(error.kind, 'denied');
      assert.match(error.message, /NoSuchBucket/);
      return true;
    });
  });

  test('a permission refused in the middle (403 on a part) is denied and stops reading the body', async (t) => {
    if (!requireS3rver(t)) return;
    const key = 'denied/part.bin';
    server.inject({ match: (r) => r.key === key && r.operation === 'UploadPart' && r.query.get('partNumber') === '2', reply: { status: 403, code: 'AccessDenied' } });
    try {
      const source = countingBody(patternBytes(64 * 1024, 14), 40 * PART);
      await assert.rejects(openTarget(server).upload(request(key, source.stream)), (error) => {
        assert.ok(error instanceof StorageError);
        assert.equal(error.kind, 'denied');
        assert.match(error.message, /UploadPart: AccessDenied \(HTTP 403\)/);
        return true;
      });
      assert.ok(source.pulled() < 40 * PART, 'the rest of the dump was not uploaded in vain');
      assert.ok(source.stream.destroyed);
      assert.ok(!operations(server, key).includes('CompleteMultipartUpload'));
      await assertNothingAt(server, key);
    } finally {
      server.clearFaults();
    }
  });

  test('a store that keeps answering 503 SlowDown is unavailable, after the SDK retried', async (t) => {
    if (!requireS3rver(t)) return;
    const key = 'busy/slowdown.bin';
    server.inject({ match: (r) => r.key === key && r.operation === 'UploadPart', reply: { status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' } });
    try {
      await assert.rejects(openTarget(server).upload(request(key, body(patternBytes(2 * PART + 1, 15)))), (error) => {
        assert.ok(error instanceof StorageError);
        assert.equal(error.kind, 'unavailable');
        assert.match(error.message, /SlowDown \(HTTP 503\)/);
        return true;
      });
      assert.ok(server.requests.filter((r) => r.key === key && r.operation === 'UploadPart').length > 1, 'retried');
      await assertNothingAt(server, key);
    } finally {
      server.clearFaults();
    }
  });

  test('a commit refused with 403 is denied and the upload is aborted', async (t) => {
    if (!requireS3rver(t)) return;
    const key = 'denied/commit.bin';
    cleanServer.inject({ match: (r) => r.key === key && r.operation === 'CompleteMultipartUpload', reply: { status: 403, code: 'AccessDenied' } });
    try {
      await assert.rejects(openTarget(cleanServer).upload(request(key, body(patternBytes(2 * PART + 5, 16)))), (error) => {
        assert.ok(error instanceof StorageError);
        assert.equal(error.kind, 'denied');
        assert.match(error.message, /CompleteMultipartUpload: AccessDenied/);
        return true;
      });
      assert.ok(operations(cleanServer, key).includes('AbortMultipartUpload'));
      assert.ok(!(await cleanServer.pendingUploads(BUCKET)).includes(uploadIdOf(cleanServer, key)));
    } finally {
      cleanServer.clearFaults();
    }
  });

  test('an existing object is never replaced, by a multipart upload or by a single PutObject', async (t) => {
    if (!requireS3rver(t)) return;
    const first = patternBytes(2 * PART + 3, 17);
    await openTarget(server).upload(request('once/big.bin', body(first)));
    for (const data of [patternBytes(3 * PART, 18), patternBytes(100, 19)]) {
      await assert.rejects(openTarget(server).upload(request('once/big.bin', body(data))), (error) => {
        assert.ok(error instanceof StorageError);
        assert.equal(error.kind, 'other');
        assert.match(error.message, /PreconditionFailed \(HTTP 412\).*never overwritten/);
        return true;
      });
    }
    assert.equal(sha256((await server.read(BUCKET, 'once/big.bin')) ?? Buffer.alloc(0)), sha256(first));
  });

  test('a size hint above what the configured part size can hold raises the part size, and says so', async (t) => {
    if (!requireS3rver(t)) return;
    const { log, lines } = capturingLogger();
    const data = patternBytes(PART + 10, 20);
    await openTarget(server).upload(request('hint/raised.bin', body(data), { log, sizeHint: 60 * GiB }));
    assert.ok(lines.some((line) => line.level === 40 && /cannot hold/.test(line.message ?? '')));
    const plan = lines.find((line) => /s3 upload to/.test(line.message ?? '')) as { partSize?: number } | undefined;
    assert.equal(plan?.partSize, 7 * MiB);
  });
});

async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

storageContract('s3', async () => {
  const server = await startS3Server({ buckets: ['contract'] });
  return {
    target: openTarget(server, {}, 'contract'),
    partSize: PART,
    read: (key) => server.read('contract', key),
    list: (prefix) => server.list('contract', prefix),
    teardown: () => server.stop(),
  };
});
