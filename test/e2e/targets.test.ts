// The bundled job end to end against each cloud target's local stand-in, with a real PostgreSQL:
// dump → zstd → S3 (s3rver) / GCS (the in-repo protocol server) / Azure (azurite); the object is read
// back independently, its SHA-256 checked against the log, and restored with pg_restore.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { zstdDecompressSync } from 'node:zlib';
import { EXIT_CODES } from '../../src/exit-codes.ts';
import { azuriteMissing, startAzurite, type Azurite } from '../support/azurite.ts';
import { startGcsServer, type GcsServer } from '../support/gcs-server.ts';
import { runJob, type JobResult } from '../support/job.ts';
import { requireBinaries } from '../support/require-binary.ts';
import { requireS3rver, startS3Server, type S3TestServer } from '../support/s3-server.ts';
import { startPostgres, type PostgresServer } from '../support/servers.ts';

const BUCKET = 'planb-e2e';
let pg: PostgresServer | undefined;
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'planb-targets-'));
  try {
    execFileSync('sh', ['-c', 'command -v pg_dump && ls /usr/lib/postgresql/*/bin/initdb'], { stdio: 'ignore' });
  } catch {
    return; // each test reports the missing binaries (a failure under CI)
  }
  pg = await startPostgres();
  await pg.createDatabase('shop');
  await pg.sql(
    `CREATE TABLE items (id serial PRIMARY KEY, name text, photo bytea);
     INSERT INTO items (name, photo) SELECT 'item ' || i || ' ✓', decode(md5(i::text), 'hex') FROM generate_series(1, 50000) i;
     INSERT INTO items (name, photo) VALUES (NULL, NULL), ('big', decode(repeat('ab01', 2000000), 'hex'));`,
    'shop',
  );
});
after(async () => {
  await pg?.stop();
  await rm(work, { recursive: true, force: true });
});

function pgEnv(server: PostgresServer): Record<string, string> {
  return {
    PATH: `${server.binDir}:${process.env.PATH ?? ''}`,
    DB_TYPE: 'postgresql', DB_HOST: server.host, DB_PORT: String(server.port), DB_NAME: 'shop',
    DB_USERNAME: server.user, DB_PASSWORD: server.password,
    STORAGE_BUCKET: BUCKET, BACKUP_PATH: 'nightly/',
  };
}

function storedObject(result: JobResult): { key: string; sha256: string; bytes: number } {
  const line = result.lines.find((l) => l.message === 'backup stored') as unknown as { object: { key: string; sha256: string; bytes: number } } | undefined;
  assert.ok(line, result.stdout);
  return line.object;
}

// Restores the object's bytes into a fresh database and compares it with the source.
async function assertRestores(server: PostgresServer, data: Buffer, database: string): Promise<void> {
  await server.createDatabase(database);
  execFileSync(join(server.binDir, 'pg_restore'), ['--no-owner', '--exit-on-error', `--host=${server.host}`, `--port=${server.port}`, `--username=${server.user}`, `--dbname=${database}`], {
    input: zstdDecompressSync(data),
    env: { PATH: process.env.PATH, PGPASSFILE: server.passFile },
  });
  const digest = (db: string) => server.sql(`SELECT count(*), md5(string_agg(i::text, '|' ORDER BY id)) FROM items i`, db);
  assert.equal(await digest(database), await digest('shop'));
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('the bundled job with each cloud target', () => {
  test('s3: a PostgreSQL backup lands in s3rver and restores', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_dump', 'pg_restore']) || !requireS3rver(t) || !pg) return;
    const s3: S3TestServer = await startS3Server({ buckets: [BUCKET] });
    try {
      const result = await runJob({
        ...pgEnv(pg), STORAGE_TYPE: 's3', STORAGE_ENDPOINT: s3.endpoint, STORAGE_REGION: s3.region,
        STORAGE_ACCESS_KEY_ID: s3.credentials.accessKeyId, STORAGE_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      });
      assert.equal(result.code, 0, result.stdout);
      const object = storedObject(result);
      const data = await s3.read(BUCKET, object.key);
      assert.ok(data, 'the object is in the bucket');
      assert.equal(sha256(data), object.sha256);
      await assertRestores(pg, data, 'restored_s3');
    } finally {
      await s3.stop();
    }
  });

  test('s3: a missing bucket is a permanent storage failure and leaves nothing', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_dump']) || !requireS3rver(t) || !pg) return;
    const s3 = await startS3Server({ buckets: [BUCKET] });
    try {
      const result = await runJob({
        ...pgEnv(pg), STORAGE_TYPE: 's3', STORAGE_BUCKET: 'no-such-bucket', STORAGE_ENDPOINT: s3.endpoint, STORAGE_REGION: s3.region,
        STORAGE_ACCESS_KEY_ID: s3.credentials.accessKeyId, STORAGE_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      });
      assert.equal(result.code, EXIT_CODES.STORAGE_DENIED.code, result.lines.at(-1)?.message);
    } finally {
      await s3.stop();
    }
  });

  test('gcs: a PostgreSQL backup lands in the GCS protocol server and restores', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_dump', 'pg_restore']) || !pg) return;
    const gcs: GcsServer = await startGcsServer({ buckets: [BUCKET] });
    try {
      const result = await runJob({ ...pgEnv(pg), STORAGE_TYPE: 'gcs', STORAGE_ENDPOINT: gcs.url });
      assert.equal(result.code, 0, result.stdout);
      const object = storedObject(result);
      const info = gcs.objects(BUCKET).find((o) => o.name === object.key);
      assert.equal(info?.sha256, object.sha256, 'the server hashed the same bytes');
      const response = await fetch(`${gcs.url}/storage/v1/b/${BUCKET}/o/${encodeURIComponent(object.key)}?alt=media`);
      assert.equal(response.status, 200);
      const data = Buffer.from(await response.arrayBuffer());
      await assertRestores(pg, data, 'restored_gcs');
    } finally {
      await gcs.close();
    }
  });

  test('azure: a PostgreSQL backup lands in azurite and restores', { skip: azuriteMissing() }, async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_dump', 'pg_restore']) || !pg) return;
    const azure: Azurite = await startAzurite();
    try {
      await azure.createContainer(BUCKET);
      const result = await runJob({ ...pgEnv(pg), STORAGE_TYPE: 'azure', AZURE_STORAGE_CONNECTION_STRING: azure.connectionString });
      assert.equal(result.code, 0, result.stdout);
      assert.ok(!result.stdout.includes(azure.accountKey), 'the account key never appears in the logs');
      const object = storedObject(result);
      const blob = azure.service.getContainerClient(BUCKET).getBlockBlobClient(object.key);
      const data = await blob.downloadToBuffer();
      assert.equal(sha256(data), object.sha256);
      assert.equal((await blob.getProperties()).metadata?.planb_sha256, object.sha256, 'the blob carries the SHA-256 the log reports');
      await assertRestores(pg, data, 'restored_azure');
    } finally {
      await azure.stop();
    }
  });
});
