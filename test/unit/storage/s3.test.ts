// STORAGE_TYPE=s3 without a server: part sizing, the settings and their combinations, failure classification.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { loadConfig } from '../../../src/config.ts';
import { ConfigError } from '../../../src/errors.ts';
import { EXTRA_PART_BUFFERS, planParts, SIZE_HINT_MARGIN } from '../../../src/storage/parts.ts';
import { DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, s3, S3_PARTS, s3Options } from '../../../src/storage/s3.ts';
import { settingsFrom } from '../../support/storage-settings.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

describe('s3 part sizing', () => {
  // Sizes from 0 to 5 TiB: powers of two, their neighbours, decimal sizes and odd values.
  const sizes = [0, 1, 1000, MIN_PART_SIZE, 5e9, 50 * GiB, 50 * GiB + 1, 107 * GiB, 1 * TiB, 2.5 * TiB, MAX_OBJECT_SIZE - 1, MAX_OBJECT_SIZE];
  for (let exponent = 10; exponent <= 42; exponent += 1) sizes.push(2 ** exponent - 1, 2 ** exponent, 2 ** exponent + 12_345);
  for (let n = 1; n <= 200; n += 1) sizes.push(Math.round((MAX_OBJECT_SIZE * ((n * 7919) % 1000)) / 1000) + n);

  test('with no size hint, parts are 8 MiB, two at once, holding 78 GiB in 24 MiB of buffers', () => {
    const plan = planParts(S3_PARTS, undefined);
    assert.equal(plan.partSize, DEFAULT_PART_SIZE);
    assert.equal(plan.concurrency, DEFAULT_CONCURRENCY);
    assert.equal(plan.concurrency, 2);
    assert.ok(plan.capacity >= 50 * GiB, 'an unknown-size dump of 50 GiB fits');
    assert.equal(plan.capacity, 8 * MiB * MAX_PARTS);
    assert.equal(plan.bufferBytes, 24 * MiB);
  });

  test('for every size hint up to 5 TiB, the dump fits in 10,000 parts of 5 MiB to 5 GiB', () => {
    for (const size of sizes.filter((s) => s <= MAX_OBJECT_SIZE)) {
      const plan = planParts(S3_PARTS, size);
      assert.ok(plan.partSize >= MIN_PART_SIZE && plan.partSize <= MAX_PART_SIZE, `part size for ${size}`);
      assert.ok(Math.ceil(size / plan.partSize) <= MAX_PARTS, `${size} bytes need ${Math.ceil(size / plan.partSize)} parts`);
      assert.ok(plan.capacity >= Math.min(size * SIZE_HINT_MARGIN, MAX_OBJECT_SIZE), `a hint of ${size} may be low by ${SIZE_HINT_MARGIN}×`);
      assert.ok(plan.concurrency >= 2, 'reading overlaps uploading');
      assert.equal(plan.bufferBytes, plan.partSize * (plan.concurrency + EXTRA_PART_BUFFERS));
    }
  });

  test('the 5 TiB object limit is reachable with one plan, and a hint above it changes nothing', () => {
    const plan = planParts(S3_PARTS, MAX_OBJECT_SIZE);
    assert.ok(plan.capacity >= MAX_OBJECT_SIZE);
    assert.equal(plan.capacity, MAX_OBJECT_SIZE);
    assert.deepEqual(planParts(S3_PARTS, 10 * TiB), plan);
  });

  test('part buffers stay at the default 24 MiB up to a 39 GiB hint, within 33 MiB up to 50 GiB and within 66 MiB up to 107 GiB', () => {
    const buffers = (size: number) => planParts(S3_PARTS, size).bufferBytes;
    const upTo = (limit: number) => [...sizes, 20 * GiB, 39 * GiB, 45 * GiB, 60 * GiB, 75 * GiB, 100 * GiB].filter((s) => s <= limit);
    for (const size of upTo(39 * GiB)) assert.equal(buffers(size), 24 * MiB, `${size} bytes`);
    for (const size of upTo(50 * GiB)) assert.ok(buffers(size) <= 33 * MiB, `${size} bytes: ${buffers(size) / MiB} MiB`);
    for (const size of upTo(107 * GiB)) assert.ok(buffers(size) <= 66 * MiB, `${size} bytes: ${buffers(size) / MiB} MiB`);
    assert.ok(buffers(40 * GiB) > 24 * MiB && buffers(108 * GiB) > 66 * MiB, 'the documented limits are the real ones');
  });

  test('a 50 GiB hint gets 11 MiB parts, two at once', () => {
    assert.deepEqual(planParts(S3_PARTS, 50 * GiB), { partSize: 11 * MiB, concurrency: 2, capacity: 11 * MiB * MAX_PARTS, bufferBytes: 11 * MiB * 3 });
  });

  test('an explicit part size and concurrency are used as given when the hint fits', () => {
    const plan = planParts(S3_PARTS, 10 * GiB, { partSize: 64 * MiB, concurrency: 8 });
    assert.equal(plan.partSize, 64 * MiB);
    assert.equal(plan.concurrency, 8);
    assert.equal(plan.raisedFrom, undefined);
  });

  test('an explicit part size too small for the hint is raised so that the dump still fits', () => {
    const plan = planParts(S3_PARTS, 1 * TiB, { partSize: 5 * MiB });
    assert.equal(plan.raisedFrom, 5 * MiB);
    assert.ok(plan.capacity >= 1 * TiB);
    assert.ok(plan.partSize < 1 * TiB / MAX_PARTS + MiB, 'raised only as far as needed');
  });
});

describe('s3 settings', () => {
  const common = { bucket: 'b', endpoint: undefined, region: 'eu-west-1' };

  test('a custom endpoint gets path-style addressing and us-east-1 unless told otherwise', () => {
    const options = s3Options({ ...common, region: undefined, endpoint: 'http://minio:9000' }, settingsFrom(s3, {}));
    assert.equal(options.forcePathStyle, true);
    assert.equal(options.region, 'us-east-1');
    const virtual = s3Options({ ...common, endpoint: 'https://r2.example', region: 'auto' }, settingsFrom(s3, { STORAGE_S3_FORCE_PATH_STYLE: 'false' }));
    assert.equal(virtual.forcePathStyle, false);
    assert.equal(virtual.region, 'auto');
  });

  test('on AWS the region and the credentials come from the SDK default chain when not set', () => {
    const options = s3Options({ ...common, region: undefined }, settingsFrom(s3, { AWS_REGION: 'eu-west-1' }));
    assert.equal(options.forcePathStyle, false);
    assert.equal(options.region, undefined, "left to the SDK, which reads AWS_REGION itself");
    assert.equal(options.credentials, undefined);
    assert.equal(options.ifNoneMatch, true);
  });

  test('on AWS with no region anywhere, the run is refused before it starts, not after the dump', () => {
    assert.throws(() => s3Options({ ...common, region: undefined }, settingsFrom(s3, {})), (error) => {
      assert.ok(error instanceof ConfigError);
      assert.deepEqual(error.problems, ['STORAGE_REGION is required for S3 on AWS (or AWS_REGION); an S3-compatible store needs STORAGE_ENDPOINT']);
      return true;
    });
  });

  test('STORAGE_CLASS must be an S3 class on AWS; an S3-compatible store may name its own', () => {
    assert.equal(s3Options(common, settingsFrom(s3, { STORAGE_CLASS: 'GLACIER_IR' })).storageClass, 'GLACIER_IR');
    assert.throws(() => s3Options(common, settingsFrom(s3, { STORAGE_CLASS: 'standard-ia' })), (error) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.problems.join('\n'), /^STORAGE_CLASS: "standard-ia" is not an S3 storage class \(STANDARD, STANDARD_IA, /);
      return true;
    });
    assert.equal(s3Options({ ...common, endpoint: 'http://ceph:7480' }, settingsFrom(s3, { STORAGE_CLASS: 'COLD_HDD' })).storageClass, 'COLD_HDD');
  });

  test('parts carry a CRC32 on AWS; with a custom endpoint only when STORAGE_S3_CHECKSUM=crc32', () => {
    assert.equal(s3Options(common, settingsFrom(s3, {})).checksum, 'CRC32');
    assert.equal(s3Options(common, settingsFrom(s3, { STORAGE_S3_CHECKSUM: 'none' })).checksum, undefined);
    const custom = { ...common, endpoint: 'http://minio:9000' };
    assert.equal(s3Options(custom, settingsFrom(s3, {})).checksum, undefined);
    assert.equal(s3Options(custom, settingsFrom(s3, { STORAGE_S3_CHECKSUM: 'crc32' })).checksum, 'CRC32');
  });

  test('half a key pair, a session token alone, a KMS key without aws:kms and a part size outside 5 MiB–5 GiB are refused together', () => {
    assert.throws(
      () =>
        s3Options(
          common,
          settingsFrom(s3, { STORAGE_ACCESS_KEY_ID: 'AKIA', STORAGE_S3_KMS_KEY_ID: 'arn:aws:kms:k', STORAGE_S3_SSE: 'AES256', STORAGE_PART_SIZE: '1MiB' }),
        ),
      (error) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.problems.length, 3, error.message);
        return true;
      },
    );
    assert.throws(() => s3Options(common, settingsFrom(s3, { STORAGE_SESSION_TOKEN: 'token' })), ConfigError);
    assert.throws(() => s3Options(common, settingsFrom(s3, { STORAGE_CONCURRENCY: '0' })), ConfigError);
    assert.throws(() => settingsFrom(s3, { STORAGE_S3_SSE: 'aes' }), /STORAGE_S3_SSE/);
  });

  test('the secret key and session token may come from files, and are listed as secrets to redact', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'planb-s3-secrets-'));
    try {
      await writeFile(join(dir, 'secret'), 'test-secret-access-key\n', { mode: 0o600 });
      const config = loadConfig({
        DB_TYPE: 'sqlite',
        DB_NAME: '/data/app.db',
        STORAGE_TYPE: 's3',
        STORAGE_BUCKET: 'backups',
        STORAGE_REGION: 'eu-west-1',
        STORAGE_ACCESS_KEY_ID: 'test-access-key-id',
        STORAGE_SECRET_ACCESS_KEY_FILE: join(dir, 'secret'),
        STORAGE_S3_SSE: 'aws:kms',
        STORAGE_S3_KMS_KEY_ID: 'alias/backups',
        STORAGE_CLASS: 'STANDARD_IA',
      });
      assert.equal(config.storage.type, 's3');
      assert.equal(config.storage.settings.STORAGE_SECRET_ACCESS_KEY, 'test-secret-access-key');
      assert.equal(config.storage.settings.STORAGE_S3_SSE, 'aws:kms');
      assert.equal(config.storage.settings.STORAGE_CLASS, 'STANDARD_IA');
      assert.ok(config.secrets.includes('test-secret-access-key'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
  test('STORAGE_S3_CHECKSUM=none cannot be combined with STORAGE_RETAIN_DAYS', () => {
    assert.throws(
      () => s3Options({ bucket: 'b', endpoint: 'http://127.0.0.1:9', region: undefined, retention: { days: 30, mode: 'compliance' } }, settingsFrom(s3, { STORAGE_S3_CHECKSUM: 'none' })),
      (error) => error instanceof ConfigError && /STORAGE_S3_CHECKSUM=none cannot be used with STORAGE_RETAIN_DAYS/.test(error.message),
    );
  });
});

describe('s3 failure classification', () => {
  const sdkError = (name: string, status?: number, code?: string) =>
    Object.assign(new Error(name), { name, ...(code && { code }), ...(status !== undefined && { $metadata: { httpStatusCode: status } }) });

  test('auth and permission failures are denied: they will not heal by retrying', () => {
    for (const [name, status] of [['AccessDenied', 403], ['InvalidAccessKeyId', 403], ['SignatureDoesNotMatch', 403], ['NoSuchBucket', 404], ['ExpiredToken', 400], ['CredentialsProviderError', undefined], ['Unknown', 401]] as const) {
      assert.equal(s3.classify(sdkError(name, status)), 'denied', name);
    }
  });

  test('throttling, 5xx, timeouts and network errors are unavailable: worth retrying later', () => {
    for (const [name, status] of [['SlowDown', 503], ['ServiceUnavailable', 503], ['InternalError', 500], ['Unknown', 502], ['TooManyRequests', 429], ['RequestTimeout', 400], ['TimeoutError', undefined]] as const) {
      assert.equal(s3.classify(sdkError(name, status)), 'unavailable', name);
    }
    assert.equal(s3.classify(sdkError('Error', undefined, 'ECONNREFUSED')), 'unavailable');
    assert.equal(s3.classify(sdkError('Error', undefined, 'ECONNRESET')), 'unavailable');
  });

  test('everything else is other: a refused overwrite, an unsupported header, a bad argument', () => {
    for (const [name, status] of [['PreconditionFailed', 412], ['NotImplemented', 501], ['InvalidArgument', 400], ['EntityTooSmall', 400]] as const) {
      assert.equal(s3.classify(sdkError(name, status)), 'other', name);
    }
  });
});
