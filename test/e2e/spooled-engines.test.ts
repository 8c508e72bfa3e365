// The process path of the engines whose tool writes to disk, through the fake tool linked as etcdctl,
// arangodump, cqlsh and sqlcmd: the job runs every spool step, streams what they wrote (a file as it
// is, a directory as tar), stores it, and removes it; a failing step stores nothing and leaves no file.
// Real servers: etcd in etcd.test.ts; ArangoDB, Cassandra and SQL Server only in the image test.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { zstdDecompressSync } from 'node:zlib';
import { EXIT_CODES } from '../../src/exit-codes.ts';
import { fakeToolDir, runJob, type JobOptions } from '../support/job.ts';

const PASSWORD = 'fake-Secret-9z';
let work: string;
let bin: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'planb-spooled-'));
  bin = await fakeToolDir(['etcdctl', 'arangodump', 'cqlsh', 'sqlcmd']);
});
after(async () => {
  await rm(work, { recursive: true, force: true });
  await rm(bin, { recursive: true, force: true });
});

type Run = { code: number | null; stdout: string; stored: Buffer | undefined; temp: string[]; record: string };

// `fake` becomes DB_EXTRA_ARGS (a JSON list: arguments may hold spaces).
async function backup(name: string, env: Record<string, string>, fake: string[] = [], options: JobOptions = {}): Promise<Run> {
  const bucket = join(work, `${name}-bucket`);
  const temp = join(work, `${name}-tmp`);
  await mkdir(temp);
  const record = join(work, `${name}-record.json`);
  const result = await runJob({
    PATH: `${bin}:${process.env.PATH ?? ''}`, DB_HOST: 'db.invalid', DB_USERNAME: 'backup', DB_PASSWORD: PASSWORD,
    STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket, TMPDIR: temp, ...env,
    DB_EXTRA_ARGS: JSON.stringify([...fake, `--fake-record=${record}`]),
  }, options);
  const keys = await readdir(bucket).catch(() => []);
  assert.ok(keys.length <= 1, `at most one object: ${keys.join(', ')}`);
  const stored = keys[0] === undefined ? undefined : zstdDecompressSync(await readFile(join(bucket, keys[0])));
  return { code: result.code, stdout: result.stdout, stored, temp: await readdir(temp), record: await readFile(record, 'utf8').catch(() => '') };
}

function assertSecretKept(run: Run): void {
  assert.ok(!run.stdout.includes(PASSWORD), 'not in the logs');
  const recorded = JSON.parse(run.record) as { argv: string[] };
  assert.ok(!recorded.argv.join(' ').includes(PASSWORD), 'not in argv');
}

describe('engines that write to disk, through a fake tool', () => {
  test('etcd: the snapshot file etcdctl saved is stored byte for byte and removed', async () => {
    const run = await backup('etcd', { DB_TYPE: 'etcd' }, ['--fake-bytes=3000000']);
    assert.equal(run.code, 0, run.stdout);
    // The fake writes whole 512-byte blocks and their SHA-256, as etcd does.
    assert.equal(run.stored?.length, 2_999_808 + 32);
    assert.deepEqual(run.temp, [], 'the private directory and the snapshot are gone');
    assertSecretKept(run);
    assert.equal((JSON.parse(run.record) as { env: Record<string, string> }).env.ETCDCTL_PASSWORD, PASSWORD, 'the password reached etcdctl in its env');
    assert.match(run.stdout, /"spoolBytes":2999840/);
  });

  test('etcd: a snapshot whose hash does not match what it holds is refused as an incomplete dump', async () => {
    const run = await backup('etcd-cut', { DB_TYPE: 'etcd' }, ['--fake-bytes=100000', '--fake-truncate=7']);
    assert.equal(run.code, EXIT_CODES.DUMP_FAILED.code, run.stdout);
    assert.match(run.stdout, /etcd snapshot is \d+ bytes, not whole bolt pages/);
    assert.equal(run.stored, undefined);
    assert.deepEqual(run.temp, []);
  });

  test('etcd: etcdctl failing after writing part of the file stores nothing and leaves nothing', async () => {
    const run = await backup('etcd-fail', { DB_TYPE: 'etcd' }, ['--fake-exit=1', '--fake-stderr=Error: etcdserver: authentication failed, invalid user ID or password']);
    assert.equal(run.code, EXIT_CODES.DB_AUTH.code, run.stdout);
    assert.equal(run.stored, undefined);
    assert.deepEqual(run.temp, []);
  });

  test('etcd: SIGTERM while etcdctl is still writing stops it, stores nothing and removes the half-written file', async () => {
    const run = await backup('etcd-sigterm', { DB_TYPE: 'etcd' }, ['--fake-bytes=100000', '--fake-stderr=snapshot file written, waiting', '--fake-hang'], {
      onLine: (line) => (line.message === 'dump tool stderr' ? 'SIGTERM' : undefined),
    });
    assert.equal(run.code, EXIT_CODES.SIGTERM.code, run.stdout);
    assert.equal(run.stored, undefined);
    assert.deepEqual(run.temp, [], 'the half-written snapshot and the private directory are gone');
  });

  test('arangodb: arangodump’s directory is stored as a tar archive, the password only in its 0600 configuration file', async () => {
    const run = await backup('arangodb', { DB_TYPE: 'arangodb', DB_NAME: 'shop' }, ['--fake-bytes=5000']);
    assert.equal(run.code, 0, run.stdout);
    const tar = join(work, 'arangodb.tar');
    execFileSync('sh', ['-c', 'cat > "$1"', 'sh', tar], { input: run.stored });
    assert.deepEqual(execFileSync('tar', ['-tf', tar], { encoding: 'utf8' }).split('\n').filter(Boolean).sort(), ['./', './fake.data.json']);
    assert.deepEqual(run.temp, []);
    assertSecretKept(run);
    const recorded = JSON.parse(run.record) as { files: Record<string, { content: string; mode: string }> };
    const config = Object.values(recorded.files)[0];
    assert.equal(config?.mode, '600');
    assert.ok(config?.content.includes(PASSWORD));
  });

  test('cassandra: the schema and one CSV per listed table are stored as a tar archive', async () => {
    const run = await backup('cassandra', { DB_TYPE: 'cassandra', DB_NAME: 'shop' }, ['--fake-bytes=100', '--fake-tables=orders,customers']);
    assert.equal(run.code, 0, run.stdout);
    const tar = join(work, 'cassandra.tar');
    execFileSync('sh', ['-c', 'cat > "$1"', 'sh', tar], { input: run.stored });
    assert.deepEqual(execFileSync('tar', ['-tf', tar], { encoding: 'utf8' }).split('\n').filter(Boolean).sort(), ['./', './customers.csv', './orders.csv', './schema.cql']);
    assert.deepEqual(run.temp, []);
    assert.ok(!run.stdout.includes(PASSWORD));
  });

  test('mssql: the .bak the server wrote is stored after the verify step; a refused login stores nothing', async () => {
    const run = await backup('mssql', { DB_TYPE: 'mssql', DB_NAME: 'shop' }, ['--fake-bytes=70000']);
    assert.equal(run.code, 0, run.stdout);
    assert.equal(run.stored?.length, 70_000);
    assert.equal(run.stored?.subarray(0, 4).toString('latin1'), 'TAPE');
    assert.deepEqual(run.temp, []);
    assertSecretKept(run);
    assert.equal((JSON.parse(run.record) as { env: Record<string, string> }).env.SQLCMDPASSWORD, PASSWORD);

    const refused = await backup('mssql-refused', { DB_TYPE: 'mssql', DB_NAME: 'shop' }, ['--fake-exit=1', "--fake-stderr=Login failed for user 'backup'."]);
    assert.equal(refused.code, EXIT_CODES.DB_AUTH.code, refused.stdout);
    assert.equal(refused.stored, undefined);
    assert.deepEqual(refused.temp, []);
  });
});
