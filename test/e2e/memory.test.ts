// Memory regression test: multi-GB dumps from the fake dump tool through the bundled job. The job's
// peak RSS (VmHWM of its process) must stay under the ceilings issue 6 sets, and must not grow with the
// size of the dump. Times are not asserted here: they belong in the benchmark (npm run bench).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { STORAGE_TYPES } from '../../src/storage/registry.ts';
import { fakeToolDir, runJob, type JobResult } from '../support/job.ts';
import { requireS3rver, startS3Server, type S3TestServer } from '../support/s3-server.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
// Issue 6: peak RSS at default settings for any dump up to 50 GiB.
const CEILING = 200 * MiB;
// Issue 6: any dump up to the target's limit, whatever the settings.
const HARD_CEILING = 256 * MiB;
// Issue 6: a smaller and a larger dump peak at the same figure, within 10 %. The smaller one is 4 GiB,
// not 100 MB: V8's young generation grows during the first seconds of a run (a 50 MB dump peaks ~20 MiB
// lower, BENCHMARKS.md), and that warm-up is not what this test guards against.
const FLATNESS = 0.1;
const WARM_DUMP = 4 * GiB;
// Large enough that anything kept per chunk or per byte would show: ~40× the ceiling.
const LARGE_DUMP = 8 * GiB;
// Every byte passes through JavaScript without compression: keep the disk traffic moderate.
const UNCOMPRESSED_DUMP = 2 * GiB;
const GZIP_DUMP = GiB;
const BUCKET = 'memory';

let bin: string;
let work: string;

before(async () => {
  bin = await fakeToolDir(['pg_dump']);
  work = await mkdtemp(join(tmpdir(), 'planb-memory-'));
});
after(async () => {
  await rm(bin, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
});

function jobEnv(bytes: number, storage: Record<string, string>, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: `${bin}:${process.env.PATH ?? ''}`,
    TMPDIR: work,
    DB_TYPE: 'postgresql',
    DB_HOST: '127.0.0.1',
    DB_NAME: 'fake',
    DB_EXTRA_ARGS: JSON.stringify([`--fake-bytes=${bytes}`]),
    ...storage,
    ...extra,
  };
}

function localStorage(name: string): Record<string, string> {
  return { STORAGE_TYPE: 'local', STORAGE_BUCKET: join(work, name) };
}

// Runs the job and checks it stored the whole dump; the caller asserts on memory.
async function backup(env: Record<string, string>, bytes: number): Promise<JobResult> {
  const result = await runJob(env);
  assert.equal(result.code, 0, result.stdout.slice(-2000));
  const stored = result.lines.find((line) => line.message === 'backup stored');
  assert.equal(stored?.rawBytes, bytes, 'the whole dump was read');
  assert.ok(result.peakRss > 0, 'the peak was sampled');
  return result;
}

function mib(bytes: number): string {
  return `${(bytes / MiB).toFixed(0)} MiB`;
}

// A 4 GiB and an 8 GiB dump at default settings into `storage`: the larger must peak under the ceiling
// and no higher than the smaller (within FLATNESS).
async function assertFlat(t: TestContext, storage: (name: string) => Record<string, string>): Promise<void> {
  const warm = await backup(jobEnv(WARM_DUMP, storage('warm')), WARM_DUMP);
  await rm(join(work, 'warm'), { recursive: true, force: true });
  const large = await backup(jobEnv(LARGE_DUMP, storage('large')), LARGE_DUMP);
  await rm(join(work, 'large'), { recursive: true, force: true });
  t.diagnostic(`peak RSS: 4 GiB dump ${mib(warm.peakRss)}, 8 GiB dump ${mib(large.peakRss)}`);
  assert.ok(large.peakRss <= CEILING, `peak ${mib(large.peakRss)} is over the ${mib(CEILING)} ceiling`);
  assert.ok(
    large.peakRss <= warm.peakRss * (1 + FLATNESS),
    `an 8 GiB dump peaks at ${mib(large.peakRss)}, a 4 GiB one at ${mib(warm.peakRss)}: memory grows with the dump`,
  );
}

// Runs `use` with the job's variables for a throw-away s3rver; skips when this build or machine has no S3.
async function withS3(t: TestContext, use: (storage: Record<string, string>, server: S3TestServer) => Promise<void>): Promise<void> {
  if (!(STORAGE_TYPES as readonly string[]).includes('s3')) {
    t.skip('this build has no S3 target yet');
    return;
  }
  if (!requireS3rver(t)) return;
  let server: S3TestServer | undefined;
  try {
    server = await startS3Server({ buckets: [BUCKET] });
    await use(
      {
        STORAGE_TYPE: 's3',
        STORAGE_BUCKET: BUCKET,
        STORAGE_ENDPOINT: server.endpoint,
        STORAGE_REGION: server.region,
        STORAGE_ACCESS_KEY_ID: server.credentials.accessKeyId,
        STORAGE_SECRET_ACCESS_KEY: server.credentials.secretAccessKey,
      },
      server,
    );
  } finally {
    await server?.stop();
  }
}

describe('memory of the job', () => {
  test('an 8 GiB dump at default settings peaks under 200 MiB, as high as a 4 GiB dump does', async (t) => {
    await assertFlat(t, localStorage);
  });

  // The S3 target holds its parts in buffers allocated once (storage/parts.ts); with a fresh buffer per
  // part its peak grew with the dump (BENCHMARKS.md, bar 3).
  test('an 8 GiB dump to S3 at default settings peaks under 200 MiB, as high as a 4 GiB dump does', async (t) => {
    await withS3(t, (s3) => assertFlat(t, () => s3));
  });

  test('without compression every byte passes through the job, and its peak stays under 200 MiB', async (t) => {
    const result = await backup(jobEnv(UNCOMPRESSED_DUMP, localStorage('plain'), { BACKUP_COMPRESSION: 'none' }), UNCOMPRESSED_DUMP);
    await rm(join(work, 'plain'), { recursive: true, force: true });
    t.diagnostic(`peak RSS ${mib(result.peakRss)}`);
    assert.ok(result.peakRss <= CEILING, `peak ${mib(result.peakRss)} is over the ${mib(CEILING)} ceiling`);
  });

  test('with gzip the dump passes through the job into pigz, and its peak stays under 200 MiB', async (t) => {
    const gzip = { BACKUP_COMPRESSION: 'gzip', BACKUP_COMPRESSION_LEVEL: '1' };
    const result = await backup(jobEnv(GZIP_DUMP, localStorage('gzip'), gzip), GZIP_DUMP);
    await rm(join(work, 'gzip'), { recursive: true, force: true });
    t.diagnostic(`peak RSS ${mib(result.peakRss)}`);
    assert.ok(result.peakRss <= CEILING, `peak ${mib(result.peakRss)} is over the ${mib(CEILING)} ceiling`);
  });

  // Uncompressed (not a default), so that the S3 target cuts and holds every byte: ~130 parts of 8 MiB.
  // It peaks at 187–209 MiB here (BENCHMARKS.md), so the ceiling is the one for any setting.
  test('a 1 GiB uncompressed upload to S3 at default part sizes peaks under 256 MiB', async (t) => {
    await withS3(t, async (s3, server) => {
      const result = await backup(jobEnv(GiB, s3, { BACKUP_COMPRESSION: 'none' }), GiB);
      t.diagnostic(`peak RSS ${mib(result.peakRss)}`);
      assert.ok(result.peakRss <= HARD_CEILING, `peak ${mib(result.peakRss)} is over the ${mib(HARD_CEILING)} ceiling`);
      assert.equal((await server.list(BUCKET, '')).length, 1, 'one object stored');
    });
  });
});
