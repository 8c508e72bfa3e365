// A protected backup end to end: the bundled job dumps a real SQLite database, encrypts it to an age
// key and writes it to S3 (s3rver behind the strict front) under Object Lock. The signed callback names
// the recipients and the retention; the object opens with age -d; a bucket without Object Lock fails
// the run with the storage-denied code and a message that says what to enable.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { verifyCallback } from '../../src/callback/verify.ts';
import { EXIT_CODES } from '../../src/exit-codes.ts';
import { runJob } from '../support/job.ts';
import { findBinary, requireBinaries } from '../support/require-binary.ts';
import { requireS3rver, startS3Server, type S3TestServer } from '../support/s3-server.ts';
import { startWebhookReceiver } from '../support/webhook-receiver.ts';

const run = promisify(execFile);
const LOCKED = 'locked-backups';
const PLAIN = 'plain-backups';
const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const DAY_MS = 86_400_000;

let work: string;
let database: string;
let key: { identityFile: string; recipient: string } | undefined;
let s3: S3TestServer | undefined;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'planb-protected-'));
  if (!findBinary('sqlite3') || !findBinary('age-keygen')) return;
  database = join(work, 'ledger.db');
  execFileSync('sqlite3', [database], { input: "CREATE TABLE entries (id INTEGER PRIMARY KEY, memo TEXT); INSERT INTO entries (memo) VALUES ('Zoë 🚀'), ('second');" });
  const identityFile = join(work, 'backup.key');
  await run('age-keygen', ['-o', identityFile]);
  key = { identityFile, recipient: (await run('age-keygen', ['-y', identityFile])).stdout.trim() };
});
after(async () => {
  await s3?.stop();
  await rm(work, { recursive: true, force: true });
});

const env = (server: S3TestServer, bucket: string, extra: Record<string, string> = {}) => ({
  DB_TYPE: 'sqlite', DB_NAME: database,
  STORAGE_TYPE: 's3', STORAGE_BUCKET: bucket, STORAGE_ENDPOINT: server.endpoint, STORAGE_REGION: server.region,
  STORAGE_ACCESS_KEY_ID: server.credentials.accessKeyId, STORAGE_SECRET_ACCESS_KEY: server.credentials.secretAccessKey,
  BACKUP_PATH: 'monthly/', BACKUP_ENCRYPTION_RECIPIENTS: key?.recipient ?? '',
  STORAGE_RETAIN_DAYS: '365', STORAGE_RETAIN_MODE: 'compliance',
  ...extra,
});

describe('an encrypted, write-once backup through the bundled job', () => {
  test('is locked on S3 until a year from now, named in the callback, and opens with age -d', async (t) => {
    if (!requireBinaries(t, ['sqlite3', 'age', 'age-keygen', 'zstd']) || !requireS3rver(t)) return;
    s3 ??= await startS3Server({ buckets: [LOCKED, PLAIN], objectLockBuckets: [LOCKED] });
    const receiver = await startWebhookReceiver({ otherwise: 204 });
    t.after(() => receiver.close());
    const started = Date.now();
    const result = await runJob(env(s3, LOCKED, { CALLBACK_URL: receiver.url, CALLBACK_SECRET: SECRET }));
    assert.equal(result.code, 0, result.stdout);

    const [stored] = await s3.list(LOCKED, 'monthly/');
    assert.match(stored ?? '', /^monthly\/sqlite-ledger-.*\.sql\.zst\.age$/);
    const lock = s3.retention(LOCKED, stored ?? '');
    assert.equal(lock?.mode, 'COMPLIANCE');
    const days = ((lock?.retainUntil.getTime() ?? 0) - started) / DAY_MS;
    assert.ok(days > 364.9 && days < 365.1, `locked for ${days} days`);

    const payload = verifyCallback(receiver.requests[0]?.body ?? Buffer.alloc(0), receiver.requests[0]?.headers ?? {}, SECRET) as unknown as {
      data: { object: { key: string; sha256: string; encryption: unknown; retention: { mode: string; until: string } } };
    };
    assert.equal(payload.data.object.key, stored);
    assert.deepEqual(payload.data.object.encryption, { format: 'age', recipients: [key?.recipient] });
    assert.equal(payload.data.object.retention.mode, 'compliance');
    assert.equal(new Date(payload.data.object.retention.until).getTime(), lock?.retainUntil.getTime());

    const sealed = (await s3.read(LOCKED, stored ?? '')) ?? Buffer.alloc(0);
    assert.equal(payload.data.object.sha256, createHash('sha256').update(sealed).digest('hex'), 'the checksum is of the encrypted object');
    const file = join(work, 'stored.age');
    await writeFile(file, sealed);
    const dump = execFileSync('zstd', ['-dc'], { input: execFileSync('age', ['-d', '-i', key?.identityFile ?? '', file]) }).toString();
    assert.match(dump, /INSERT INTO entries VALUES\(1,'Zoë 🚀'\);/);
  });

  test('into a bucket without Object Lock fails with exit 73, says what to enable, and stores nothing', async (t) => {
    if (!requireBinaries(t, ['sqlite3', 'age', 'age-keygen', 'zstd']) || !requireS3rver(t)) return;
    s3 ??= await startS3Server({ buckets: [LOCKED, PLAIN], objectLockBuckets: [LOCKED] });
    const result = await runJob(env(s3, PLAIN));
    assert.equal(result.code, EXIT_CODES.STORAGE_DENIED.code, result.stdout);
    assert.match(result.lines.at(-1)?.message ?? '', /Bucket is missing Object Lock Configuration.*STORAGE_RETAIN_DAYS needs a bucket with Object Lock enabled/);
    assert.deepEqual(await s3.list(PLAIN, ''), []);
  });

  test('with a local folder, STORAGE_RETAIN_DAYS is a configuration error before any work', async (t) => {
    if (!requireBinaries(t, ['sqlite3'])) return;
    const result = await runJob({ DB_TYPE: 'sqlite', DB_NAME: join(work, 'ledger.db'), STORAGE_TYPE: 'local', STORAGE_BUCKET: join(work, 'folder'), STORAGE_RETAIN_DAYS: '7' });
    assert.equal(result.code, EXIT_CODES.CONFIG.code, result.stdout);
    assert.match(result.stdout, /STORAGE_RETAIN_DAYS: STORAGE_TYPE=local has no write-once retention/);
  });
});
