// Write-once retention on the wire, per target: S3 Object Lock headers on the creating request (and the
// checksum S3 demands with them), GCS object retention in the resumable session's metadata, Azure's
// immutability policy on the block-list commit. Each against its local stand-in, which refuses the way
// the cloud does when the bucket or container is not set up for it; that refusal is a 'denied' storage
// error (exit 73) that says what to enable.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { StorageError } from '../../../src/errors.ts';
import { exitNameFor } from '../../../src/exit-codes.ts';
import { azure } from '../../../src/storage/azure.ts';
import { gcs } from '../../../src/storage/gcs.ts';
import { s3 } from '../../../src/storage/s3.ts';
import type { Retention, UploadRequest } from '../../../src/storage/types.ts';
import { azuriteMissing, DEV_ACCOUNT, DEV_KEY, startAzurite, type Azurite } from '../../support/azurite.ts';
import { startGcsServer, type GcsServer } from '../../support/gcs-server.ts';
import { startRecordingProxy, type RecordingProxy } from '../../support/recording-proxy.ts';
import { requireS3rver, startS3Server, type S3TestServer } from '../../support/s3-server.ts';
import { settingsFrom } from '../../support/storage-settings.ts';
import { body, patternBytes, sha256, uploadRequest } from '../storage-contract.ts';

const MiB = 1024 * 1024;
const DAY_MS = 86_400_000;
// A retain-until date as the run computes it: whole milliseconds, days ahead.
const until = (days: number) => new Date(Math.floor(Date.now() / 1000) * 1000 + days * DAY_MS);

function request(key: string, data: Buffer, retainUntil: UploadRequest['retainUntil']): UploadRequest {
  return uploadRequest(key, body(data), { retainUntil });
}

// The refusal of a store that is not set up for retention: denied, exit 73, says what to enable.
function assertNotSetUp(error: unknown, enable: RegExp): true {
  assert.ok(error instanceof StorageError, String(error));
  assert.equal(error.kind, 'denied');
  assert.equal(exitNameFor(error), 'STORAGE_DENIED');
  assert.match(error.message, enable);
  assert.match(error.message, /STORAGE_RETAIN_DAYS/);
  return true;
}

describe('s3 Object Lock', () => {
  const LOCKED = 'planb-locked';
  const PLAIN = 'planb-plain';
  let server: S3TestServer;
  const retention: Retention = { days: 30, mode: 'compliance' };
  const open = (bucket: string, vars: Record<string, string> = {}) =>
    s3.open(
      { bucket, endpoint: server.endpoint, region: undefined, retention },
      settingsFrom(s3, { STORAGE_ACCESS_KEY_ID: server.credentials.accessKeyId, STORAGE_SECRET_ACCESS_KEY: server.credentials.secretAccessKey, STORAGE_PART_SIZE: '5MiB', ...vars }),
    );
  before(async () => {
    server = await startS3Server({ buckets: [LOCKED, PLAIN], objectLockBuckets: [LOCKED] });
  });
  after(() => server?.stop());

  test('a multipart upload asks for the lock on CreateMultipartUpload and checksums every part, even on a custom endpoint', async (t) => {
    if (!requireS3rver(t)) return;
    const data = patternBytes(2 * 5 * MiB + 1234, 5);
    const retainUntil = { date: until(30), mode: 'compliance' as const };
    await open(LOCKED).upload(request('daily/locked.dump.zst.age', data, retainUntil));
    assert.equal(sha256((await server.read(LOCKED, 'daily/locked.dump.zst.age')) ?? Buffer.alloc(0)), sha256(data));
    const sent = server.requests.filter((r) => r.key === 'daily/locked.dump.zst.age');
    assert.deepEqual(sent.map((r) => [r.operation, r.status]), [['CreateMultipartUpload', 200], ['UploadPart', 200], ['UploadPart', 200], ['UploadPart', 200], ['CompleteMultipartUpload', 200]]);
    assert.equal(sent[0]?.headers['x-amz-object-lock-mode'], 'COMPLIANCE');
    assert.equal(new Date(String(sent[0]?.headers['x-amz-object-lock-retain-until-date'])).getTime(), retainUntil.date.getTime());
    for (const part of sent.filter((r) => r.operation === 'UploadPart')) assert.ok(part.headers['x-amz-checksum-crc32'], 'each part carries a checksum');
    assert.deepEqual(server.retention(LOCKED, 'daily/locked.dump.zst.age'), { mode: 'COMPLIANCE', retainUntil: retainUntil.date });
  });

  test('a single PutObject carries the lock in governance mode with a checksum', async (t) => {
    if (!requireS3rver(t)) return;
    const retainUntil = { date: until(14), mode: 'governance' as const };
    await open(LOCKED).upload(request('daily/small.sql.zst', patternBytes(10_000, 6), retainUntil));
    const [put] = server.requests.filter((r) => r.key === 'daily/small.sql.zst');
    assert.equal(put?.operation, 'PutObject');
    assert.equal(put?.headers['x-amz-object-lock-mode'], 'GOVERNANCE');
    assert.ok(put?.headers['x-amz-checksum-crc32'], 'S3 requires Content-MD5 or a checksum on a locked PutObject');
    assert.equal(server.retention(LOCKED, 'daily/small.sql.zst')?.mode, 'GOVERNANCE');
  });

  test('a bucket without Object Lock refuses, and the failure says to enable it; nothing is stored', async (t) => {
    if (!requireS3rver(t)) return;
    for (const size of [10_000, 6 * MiB]) {
      const key = `daily/refused-${size}.dump`;
      await assert.rejects(open(PLAIN).upload(request(key, patternBytes(size, 7), { date: until(7), mode: 'governance' })), (error) => assertNotSetUp(error, /Object Lock enabled/));
      assert.deepEqual(await server.list(PLAIN, key), []);
    }
  });

  test('the test front, like S3, refuses a locked PutObject without a checksum', async (t) => {
    if (!requireS3rver(t)) return;
    const client = new S3Client({ endpoint: server.endpoint, region: server.region, forcePathStyle: true, credentials: server.credentials, requestChecksumCalculation: 'WHEN_REQUIRED' });
    t.after(() => client.destroy());
    await assert.rejects(
      client.send(new PutObjectCommand({ Bucket: LOCKED, Key: 'no-checksum', Body: 'x', ObjectLockMode: 'GOVERNANCE', ObjectLockRetainUntilDate: until(1) })),
      (error: Error) => error.name === 'InvalidRequest' && /Content-MD5/.test(error.message),
    );
  });
});

describe('gcs object retention', () => {
  const RETAINED = 'planb-retained';
  const PLAIN = 'planb-plain';
  let server: GcsServer;
  const open = (bucket: string) => gcs.open({ bucket, endpoint: server.url, region: undefined, retention: { days: 14, mode: 'governance' } }, settingsFrom(gcs, {}));
  before(async () => {
    server = await startGcsServer({ buckets: [RETAINED, PLAIN], retentionBuckets: [RETAINED] });
  });
  after(() => server?.close());

  test('the resumable session is created with the retention in the object metadata, Unlocked for governance, Locked for compliance', async () => {
    for (const mode of ['governance', 'compliance'] as const) {
      const retainUntil = { date: until(mode === 'governance' ? 14 : 365), mode };
      const data = patternBytes(3 * MiB + 17, 8);
      await open(RETAINED).upload(request(`monthly/${mode}.dump.zst`, data, retainUntil));
      const stored = server.objects(RETAINED).find((object) => object.name === `monthly/${mode}.dump.zst`);
      assert.equal(stored?.sha256, sha256(data));
      assert.deepEqual(stored?.retention, { mode: mode === 'governance' ? 'Unlocked' : 'Locked', retainUntilTime: retainUntil.date.toISOString() });
    }
  });

  test('a bucket without object retention refuses the session, and the failure says to enable it; nothing is stored', async () => {
    await assert.rejects(open(PLAIN).upload(request('monthly/refused.dump', patternBytes(1000, 9), { date: until(30), mode: 'compliance' })), (error) => assertNotSetUp(error, /object retention enabled/));
    assert.deepEqual(server.objects(PLAIN), []);
    assert.deepEqual(server.openSessions(), []);
  });
});

describe('azure immutability policy', { skip: azuriteMissing() }, () => {
  let azurite: Azurite;
  let proxy: RecordingProxy;
  const open = () =>
    azure.open(
      { bucket: 'worm', endpoint: proxy.url, region: undefined, retention: { days: 30, mode: 'compliance' } },
      settingsFrom(azure, { AZURE_STORAGE_ACCOUNT: DEV_ACCOUNT, AZURE_STORAGE_KEY: DEV_KEY, STORAGE_PART_SIZE: '1MiB' }),
    );
  const isCommit = (r: { method: string; query: URLSearchParams }) => r.method === 'PUT' && r.query.get('comp') === 'blocklist';
  before(async () => {
    azurite = await startAzurite();
    await azurite.createContainer('worm');
    proxy = await startRecordingProxy(azurite.endpoint);
  });
  after(async () => {
    await proxy?.stop();
    await azurite?.stop();
  });

  test('the block-list commit carries the policy (Locked for compliance) and its date; the blocks do not', async () => {
    const retainUntil = { date: until(30), mode: 'compliance' as const };
    const data = patternBytes(2 * MiB + 5, 10);
    await open().upload(request('daily/worm.dump.zst', data, retainUntil));
    const sent = proxy.requests.filter((r) => r.path.endsWith('/worm/daily/worm.dump.zst'));
    const commit = sent.find(isCommit);
    assert.equal(commit?.status, 201);
    assert.equal(commit?.headers['x-ms-immutability-policy-mode'], 'Locked');
    assert.equal(new Date(String(commit?.headers['x-ms-immutability-policy-until-date'])).getTime(), retainUntil.date.getTime());
    const blocks = sent.filter((r) => r.query.get('comp') === 'block');
    assert.ok(blocks.length >= 3);
    for (const block of blocks) assert.equal(block.headers['x-ms-immutability-policy-mode'], undefined);
    assert.equal(sha256(await azurite.service.getContainerClient('worm').getBlockBlobClient('daily/worm.dump.zst').downloadToBuffer()), sha256(data));
  });

  test('a container without version-level immutability refuses the commit, and the failure says to enable it; no blob appears', async () => {
    const message = 'The operation is not permitted because version-level immutability is not enabled on the container.';
    proxy.intercept({
      match: (r) => isCommit(r) && r.headers['x-ms-immutability-policy-mode'] !== undefined,
      answer: {
        status: 409,
        headers: { 'x-ms-error-code': 'ImmutableStorageWithVersioningNotEnabled' },
        body: `<?xml version="1.0" encoding="utf-8"?><Error><Code>ImmutableStorageWithVersioningNotEnabled</Code><Message>${message}</Message></Error>`,
      },
    });
    const key = 'daily/refused.dump';
    await assert.rejects(open().upload(request(key, patternBytes(MiB + 3, 11), { date: until(30), mode: 'compliance' })), (error) => assertNotSetUp(error, /version-level immutability/));
    const names: string[] = [];
    for await (const item of azurite.service.getContainerClient('worm').listBlobsFlat({ prefix: key })) names.push(item.name);
    assert.deepEqual(names, []);
  });
});
