// STORAGE_TYPE=s3 against a throw-away s3rver behind a strict front (test/support/s3-server.ts): the
// shared contract suite, then what is specific to S3 (multipart aborted, root cause over the 405 of
// s3rver's AbortMultipartUpload, cancellation of stalled parts, back-pressure, classification). The
// rules that need no server are in test/unit/storage/s3.test.ts.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { CompleteMultipartUploadCommand, CreateMultipartUploadCommand, HeadObjectCommand, S3Client, UploadPartCommand } from '@aws-sdk/client-s3';
import { pino, type Logger } from 'pino';
import { StorageError } from '../../../src/errors.ts';
import { DEFAULT_CONCURRENCY, s3 } from '../../../src/storage/s3.ts';
import type { StorageTarget } from '../../../src/storage/types.ts';
import { requireS3rver, startS3Server, type S3TestServer } from '../../support/s3-server.ts';
import { settingsFrom } from '../../support/storage-settings.ts';
import { body, bodyFailingOnce, countingBody, patternBytes, sha256, steadyValue, storageContract, uploadRequest as request, waitFor } from '../storage-contract.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
// The smallest part S3 allows, so that a few MiB make several parts.
const PART = 5 * MiB;
const BUCKET = 'planb-s3-test';

function openTarget(server: S3TestServer, vars: Record<string, string> = {}, bucket = BUCKET): StorageTarget {
  const settings = settingsFrom(s3, {
    STORAGE_ACCESS_KEY_ID: server.credentials.accessKeyId,
    STORAGE_SECRET_ACCESS_KEY: server.credentials.secretAccessKey,
    STORAGE_PART_SIZE: '5MiB',
    ...vars,
  });
  return s3.open({ bucket, endpoint: server.endpoint, region: undefined }, settings);
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
