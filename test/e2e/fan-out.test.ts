// DB_NAMES end to end with the bundled job: several databases of real PostgreSQL and MariaDB servers,
// each stored as its own object that restores alone, split over simulated Cloud Run and Kubernetes
// tasks; one database failing while the others are stored; SIGTERM skipping the rest; per-database
// and summary callbacks checked by a signing receiver; the upload sized from the database's own size.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { zstdDecompressSync } from 'node:zlib';
import { verifyCallback, type CallbackPayload, type CallbackSummary } from '../../src/callback/verify.ts';
import { EXIT_CODES } from '../../src/exit-codes.ts';
import { fakeToolDir, runJob, type JobResult } from '../support/job.ts';
import { findBinary, requireBinaries } from '../support/require-binary.ts';
import { requireS3rver, startS3Server } from '../support/s3-server.ts';
import { postgresJobEnv, startMariadb, startPostgres, type MariadbServer, type PostgresServer } from '../support/servers.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';

const SECRET = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;
const PG_DATABASES = ['alpha', 'beta', 'delta', 'epsilon', 'gamma'];

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'planb-fan-out-'));
});
after(() => rm(work, { recursive: true, force: true }));

// The database name in each stored key (`<prefix><type>-<name>-<runId>.<ext>.zst`), sorted.
async function storedNames(bucket: string): Promise<string[]> {
  const keys = await readdir(bucket, { recursive: true }).catch(() => []);
  return keys
    .filter((key) => key.endsWith('.zst'))
    .map((key) => /(?:^|\/)(?:postgresql|mariadb)-(.+)-\d{8}T\d{6}Z-[0-9a-f]{8}\./.exec(key)?.[1] ?? `unparsed:${key}`)
    .sort();
}

async function storedObject(bucket: string, name: string): Promise<Buffer> {
  const keys = (await readdir(bucket, { recursive: true })).filter((key) => key.includes(`-${name}-`) && key.endsWith('.zst'));
  assert.equal(keys.length, 1, `one object for ${name}: ${keys.join(', ')}`);
  return zstdDecompressSync(await readFile(join(bucket, keys[0] ?? '')));
}

// Every callback the receiver got, each checked as Standard Webhooks would: signed with our secret.
function callbacks(receiver: WebhookReceiver): CallbackPayload[] {
  return receiver.requests.map((request) => verifyCallback(request.body, request.headers as Record<string, string>, SECRET));
}

function summaryOf(payloads: CallbackPayload[]): CallbackSummary['data'] {
  const last = payloads.at(-1);
  assert.equal(last?.type, 'backup.summary', 'the summary comes last');
  return last.data;
}

function finalLine(result: JobResult): string {
  return result.lines.filter((line) => /^run (finished|failed)/.test(line.message)).map((line) => line.message).join('\n');
}

describe('postgresql', () => {
  let pg: PostgresServer;
  before(async () => {
    if (!['initdb', 'pg_dump', 'pg_restore', 'psql'].every((name) => findBinary(name))) return;
    pg = await startPostgres();
    for (const name of [...PG_DATABASES, 'closed']) {
      await pg.createDatabase(name);
      if (name !== 'closed') await pg.sql(`CREATE TABLE t (v text); INSERT INTO t VALUES ('${name}'); GRANT SELECT ON t TO PUBLIC;`, name);
    }
    // A table the reader may not read: pg_dump of gamma fails with "permission denied".
    await pg.sql(`CREATE TABLE secret (v text); REVOKE ALL ON secret FROM PUBLIC;`, 'gamma');
    await pg.sql(`ALTER DATABASE closed ALLOW_CONNECTIONS false; CREATE ROLE reader LOGIN PASSWORD 'reader-pass-123';`);
  });
  after(() => pg?.stop());

  const env = (bucket: string, extra: Record<string, string> = {}) => ({
    ...postgresJobEnv(pg),
    STORAGE_TYPE: 'local',
    STORAGE_BUCKET: bucket,
    BACKUP_PATH: 'pg/',
    ...extra,
  });

  test('DB_NAMES=* stores each database the server lists, minus DB_EXCLUDE, as its own object with its own signed callback, then a summary', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_dump', 'pg_restore', 'psql'])) return;
    const receiver = await startWebhookReceiver();
    try {
      const bucket = join(work, 'pg-all');
      const result = await runJob(env(bucket, { DB_NAMES: '*', DB_EXCLUDE: 'postgres,epsilon', CALLBACK_URL: receiver.url, CALLBACK_SECRET: SECRET }));
      assert.equal(result.code, 0, result.stdout);
      const expected = ['alpha', 'beta', 'delta', 'gamma'];
      assert.deepEqual(await storedNames(bucket), expected, 'no template, not the closed database, nothing excluded');
      assert.ok(!result.stdout.includes(pg.password), 'the password never appears in the logs');

      // Each object restores alone.
      await pg.createDatabase('restored_beta');
      execFileSync(join(pg.binDir, 'pg_restore'), ['--no-owner', '--exit-on-error', `--host=${pg.host}`, `--port=${pg.port}`, `--username=${pg.user}`, '--dbname=restored_beta'], {
        input: await storedObject(bucket, 'beta'),
        env: { PATH: process.env.PATH, PGPASSFILE: pg.passFile },
      });
      assert.equal((await pg.sql('SELECT v FROM t', 'restored_beta')).trim(), 'beta');
      await pg.sql('DROP DATABASE restored_beta');

      // Each database's log lines carry its name; one summary line ends the run.
      for (const name of expected) {
        assert.ok(result.lines.some((line) => line.database === name && line.message === 'backup stored'), `a "backup stored" line for ${name}`);
      }
      assert.match(finalLine(result), /^run finished: 4 stored, 0 failed, 0 skipped of 4$/);

      const payloads = callbacks(receiver);
      assert.deepEqual(payloads.slice(0, -1).map((p) => [p.type, p.type === 'backup.summary' ? '' : p.data.database.name]), expected.map((name) => ['backup.succeeded', name]));
      const summary = summaryOf(payloads);
      assert.equal(summary.status, 'succeeded');
      assert.equal(summary.exitCode, 0);
      assert.deepEqual(summary.counts, { selected: 4, stored: 4, failed: 0, skipped: 0 });
      assert.deepEqual(summary.task, { index: 0, count: 1 });
      assert.deepEqual(summary.databases.map((entry) => entry.runId), payloads.slice(0, -1).map((p) => p.data.runId), 'each entry points to its own callback');
      assert.equal(new Set(receiver.requests.map((r) => r.headers['webhook-id'])).size, 5, 'five events, five webhook ids');
    } finally {
      await receiver.close();
    }
  });

  test('split over 1, 2, 3 and 5 tasks, every database is stored exactly once; a task left with nothing exits 0 and says so', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_dump', 'psql'])) return;
    for (const count of [1, 2, 3, 5]) {
      const bucket = join(work, `pg-split-${count}`);
      const perTask: string[][] = [];
      for (let index = 0; index < count; index += 1) {
        const before = await storedNames(bucket);
        // Cloud Run's variables, except for 2 tasks: a Kubernetes Indexed Job's.
        const split: Record<string, string> = count === 2 ? { JOB_COMPLETION_INDEX: String(index), JOB_COMPLETION_COUNT: '2' } : { CLOUD_RUN_TASK_INDEX: String(index), CLOUD_RUN_TASK_COUNT: String(count) };
        const result = await runJob(env(bucket, { DB_NAMES: '*', DB_EXCLUDE: 'postgres', ...split }));
        assert.equal(result.code, 0, result.stdout);
        const after = await storedNames(bucket);
        perTask.push(after.filter((name) => !before.includes(name)));
      }
      t.diagnostic(`${count} task(s): ${perTask.map((names, index) => `${index}=[${names.join(',')}]`).join(' ')}`);
      assert.deepEqual(perTask.flat().sort(), PG_DATABASES, `${count} tasks cover every database once`);
      assert.deepEqual(perTask, Array.from({ length: count }, (_, index) => PG_DATABASES.filter((_, position) => position % count === index)));
    }
    const idle = await runJob(env(join(work, 'pg-split-idle'), { DB_NAMES: '*', DB_EXCLUDE: 'postgres', CLOUD_RUN_TASK_INDEX: '6', CLOUD_RUN_TASK_COUNT: '7' }));
    assert.equal(idle.code, 0, idle.stdout);
    assert.ok(idle.lines.some((line) => line.message === 'nothing to do: task 6 of 7 has no database (5 in all)'), idle.stdout);
    assert.deepEqual(await storedNames(join(work, 'pg-split-idle')), []);
  });

  test('one database failing leaves the others stored; of two failures no retry fixes (a permission, a missing database) the first decides the exit code', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_dump', 'psql'])) return;
    const receiver = await startWebhookReceiver();
    try {
      const bucket = join(work, 'pg-partial');
      const result = await runJob(
        env(bucket, { DB_USERNAME: 'reader', DB_PASSWORD: 'reader-pass-123', DB_NAMES: 'nosuch,gamma,beta,alpha', CALLBACK_URL: receiver.url, CALLBACK_SECRET: SECRET }),
      );
      assert.equal(result.code, EXIT_CODES.DB_AUTH.code, result.stdout);
      assert.deepEqual(await storedNames(bucket), ['alpha', 'beta'], 'the databases after a failure are still backed up');
      assert.match(finalLine(result), /^run finished: 2 stored, 2 failed, 0 skipped of 4; exit 77 \(DB_AUTH\)$/);

      const payloads = callbacks(receiver);
      assert.deepEqual(
        payloads.slice(0, -1).map((p) => [p.type === 'backup.summary' ? '' : p.data.database.name, p.data.exitName]),
        [['alpha', 'OK'], ['beta', 'OK'], ['gamma', 'DB_AUTH'], ['nosuch', 'DB_INVALID']],
      );
      const summary = summaryOf(payloads);
      assert.equal(summary.status, 'failed');
      assert.equal(summary.exitName, 'DB_AUTH');
      assert.deepEqual(summary.counts, { selected: 4, stored: 2, failed: 2, skipped: 0 });
      assert.deepEqual(summary.databases.map((entry) => [entry.name, entry.status]), [['alpha', 'stored'], ['beta', 'stored'], ['gamma', 'failed'], ['nosuch', 'failed']]);
    } finally {
      await receiver.close();
    }
  });

  test('a refused discovery fails the run with the auth code and a summary callback saying why', async (t) => {
    if (!requireBinaries(t, ['initdb', 'psql'])) return;
    const receiver = await startWebhookReceiver();
    try {
      const result = await runJob(env(join(work, 'pg-refused'), { DB_PASSWORD: 'wrong-password-123', DB_NAMES: '*', CALLBACK_URL: receiver.url, CALLBACK_SECRET: SECRET }));
      assert.equal(result.code, EXIT_CODES.DB_AUTH.code, result.stdout);
      assert.ok(!result.stdout.includes('wrong-password-123'));
      const summary = summaryOf(callbacks(receiver));
      assert.equal(receiver.requests.length, 1);
      assert.equal(summary.error?.code, 'DB_AUTH');
      assert.match(summary.error?.message ?? '', /password authentication failed/);
    } finally {
      await receiver.close();
    }
  });

  test('without BACKUP_EXPECTED_SIZE the S3 upload is planned from pg_database_size, and a failed size probe only warns', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_dump', 'psql']) || !requireS3rver(t)) return;
    const s3 = await startS3Server({ buckets: ['backups'] });
    const onlyDump = await mkdtemp(join(work, 'bin-'));
    await symlink(join(pg.binDir, 'pg_dump'), join(onlyDump, 'pg_dump'));
    try {
      const s3Env = {
        STORAGE_TYPE: 's3', STORAGE_BUCKET: 'backups', STORAGE_ENDPOINT: s3.endpoint, STORAGE_REGION: s3.region,
        STORAGE_ACCESS_KEY_ID: s3.credentials.accessKeyId, STORAGE_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey, DB_NAME: 'alpha',
      };
      const sized = await runJob({ ...env('unused'), ...s3Env });
      assert.equal(sized.code, 0, sized.stdout);
      const planned = sized.lines.find((line) => line.sizeSource === 'pg_database_size');
      const actual = Number((await pg.sql(`SELECT pg_database_size('alpha')`)).trim());
      const hint = Number(planned?.sizeHint);
      assert.ok(Math.abs(hint - actual) < actual / 10, `planned for ${hint}, the database has ${actual}`);
      const plan = sized.lines.find((line) => typeof line.capacity === 'number');
      assert.equal(plan?.sizeHint, hint, 'the S3 plan is made for that size');
      assert.match(plan?.message ?? '', /up to 78\.1 GiB$/, 'and says what it holds');

      const unsized = await runJob({ ...env('unused'), ...s3Env, PATH: onlyDump });
      assert.equal(unsized.code, 0, unsized.stdout);
      assert.ok(unsized.lines.some((line) => line.severity === 'WARNING' && /could not read the database's size \(pg_database_size\)/.test(line.message)), unsized.stdout);
      assert.equal((await s3.list('backups', '')).length, 2);
    } finally {
      await s3.stop();
    }
  });
});

describe('mariadb', () => {
  let maria: MariadbServer;
  before(async () => {
    if (!['mariadbd', 'mariadb', 'mariadb-dump'].every((name) => findBinary(name))) return;
    maria = await startMariadb();
    for (const name of ['crm', 'shop', 'web']) {
      await maria.createDatabase(name);
      await maria.sql(`CREATE TABLE t (v VARCHAR(20)); INSERT INTO t VALUES ('${name}');`, name);
    }
  });
  after(() => maria?.stop());
  const env = (bucket: string, extra: Record<string, string>) => ({
    DB_TYPE: 'mariadb', DB_HOST: maria.host, DB_PORT: String(maria.port), DB_USERNAME: maria.user, DB_PASSWORD: maria.password,
    STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket, ...extra,
  });

  test('DB_NAMES=* leaves out the system databases and DB_EXCLUDE; each object restores alone', async (t) => {
    if (!requireBinaries(t, ['mariadbd', 'mariadb', 'mariadb-dump'])) return;
    const bucket = join(work, 'maria-all');
    const result = await runJob(env(bucket, { DB_NAMES: '*', DB_EXCLUDE: 'web' }));
    assert.equal(result.code, 0, result.stdout);
    assert.deepEqual(await storedNames(bucket), ['crm', 'shop']);
    await maria.createDatabase('restored_shop');
    execFileSync('mariadb', [`--host=${maria.host}`, `--port=${maria.port}`, '--protocol=TCP', `--user=${maria.user}`, `--password=${maria.password}`, 'restored_shop'], {
      input: await storedObject(bucket, 'shop'),
    });
    assert.equal((await maria.sql('SELECT v FROM t', 'restored_shop')).trim(), 'shop');
  });

  test('a database that is not there fails alone, with the code no retry fixes', async (t) => {
    if (!requireBinaries(t, ['mariadbd', 'mariadb', 'mariadb-dump'])) return;
    const bucket = join(work, 'maria-missing');
    const result = await runJob(env(bucket, { DB_NAMES: '["web", "gone", "crm"]' }));
    assert.equal(result.code, EXIT_CODES.DB_INVALID.code, result.stdout);
    assert.deepEqual(await storedNames(bucket), ['crm', 'web']);
    assert.ok(result.lines.some((line) => line.database === 'gone' && /Unknown database/.test(line.message)), result.stdout);
  });
});

describe('without a server', () => {
  test('SIGTERM stops the current database and skips the rest, each skipped one reported', async () => {
    const bin = await fakeToolDir(['pg_dump']);
    const receiver = await startWebhookReceiver();
    try {
      const bucket = join(work, 'sigterm');
      let sent = false;
      const result = await runJob(
        {
          PATH: `${bin}:${process.env.PATH ?? ''}`, DB_TYPE: 'postgresql', DB_HOST: '127.0.0.1', DB_NAMES: 'one,two,three', DB_EXTRA_ARGS: '--fake-hang',
          STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket, CALLBACK_URL: receiver.url, CALLBACK_SECRET: SECRET,
        },
        {
          onLine: (line) => {
            if (sent || line.message !== 'backup started') return undefined;
            sent = true;
            return 'SIGTERM';
          },
        },
      );
      assert.equal(result.code, EXIT_CODES.SIGTERM.code, result.stdout);
      assert.deepEqual(await storedNames(bucket), []);
      const skipped = result.lines.filter((line) => /^skipped /.test(line.message)).map((line) => line.database);
      assert.deepEqual(skipped, ['three', 'two']);
      const summary = summaryOf(callbacks(receiver));
      assert.deepEqual(summary.counts, { selected: 3, stored: 0, failed: 1, skipped: 2 });
      assert.deepEqual(summary.databases.map((entry) => [entry.name, entry.status, entry.runId === null]), [['one', 'failed', false], ['three', 'skipped', true], ['two', 'skipped', true]]);
    } finally {
      await receiver.close();
      await rm(bin, { recursive: true, force: true });
    }
  });

  test('DB_NAMES with DB_NAME, or for redis, is a configuration error', async () => {
    const common = { STORAGE_TYPE: 'local', STORAGE_BUCKET: join(work, 'none') };
    const both = await runJob({ ...common, DB_TYPE: 'postgresql', DB_NAME: 'a', DB_NAMES: 'a,b' });
    assert.equal(both.code, EXIT_CODES.CONFIG.code);
    assert.match(both.stdout, /DB_NAMES and DB_NAME exclude each other/);
    const redis = await runJob({ ...common, DB_TYPE: 'redis', DB_HOST: '127.0.0.1', DB_NAMES: '*' });
    assert.equal(redis.code, EXIT_CODES.CONFIG.code);
    assert.match(redis.stdout, /DB_NAMES does not apply to redis/);
  });
});
