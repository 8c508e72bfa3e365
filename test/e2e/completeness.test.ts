// A stored backup is a complete dump: for every engine that runs here, damaged, partial, locked and
// unauthorised dumps fail through the bundled job with nothing stored, and so do compressors that fail
// after writing everything. Real servers where the failure is real; the fake tools where it is the
// tool's output itself that is wrong.
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EXIT_CODES } from '../../src/exit-codes.ts';
import { findBinary, requireBinaries } from '../support/require-binary.ts';
import { fakeToolDir, ROOT, runJob, type JobResult } from '../support/job.ts';
import { startMariadb, type MariadbServer } from '../support/servers.ts';

const FAKE_COMPRESSOR = join(ROOT, 'test/fixtures/bin/fake-compressor.mjs');

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'planb-complete-'));
});
after(() => rm(work, { recursive: true, force: true }));

async function assertNothingStored(bucket: string): Promise<void> {
  assert.deepEqual(await readdir(bucket, { recursive: true }).catch(() => []), [], 'no object and no temporary file');
}

// The failure line's message, for matching the reason.
function failure(result: JobResult): string {
  return String(result.lines.find((line) => line.severity === 'ERROR')?.message ?? result.stdout);
}

// A job run against a fake tool (linked under `tool`) with DB_EXTRA_ARGS `args`.
async function runFake(type: string, tool: string, args: string[], extra: Record<string, string> = {}): Promise<{ result: JobResult; bucket: string }> {
  // For mysql the fake also stands in for the client that the privileges preflight asks.
  const bin = await fakeToolDir(type === 'mysql' ? [tool, 'mariadb'] : [tool]);
  const bucket = join(work, `${type}-${Math.random().toString(36).slice(2)}`);
  const result = await runJob({
    PATH: `${bin}:${process.env.PATH ?? ''}`,
    DB_TYPE: type, DB_HOST: '127.0.0.1', DB_NAME: type === 'redis' ? '0' : 'shop', DB_EXTRA_ARGS: JSON.stringify(args),
    STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket,
    ...extra,
  });
  return { result, bucket };
}

describe('sqlite', () => {
  const sqlite = (file: string, input: string) => execFileSync('sqlite3', ['-bail', file], { input }).toString();
  const run = (name: string, extra: Record<string, string> = {}) => {
    const bucket = join(work, `sqlite-${Math.random().toString(36).slice(2)}`);
    return runJob({ DB_TYPE: 'sqlite', DB_NAME: name, STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket, ...extra }).then((result) => ({ result, bucket }));
  };

  // 20,000 rows and an index over ~4 MiB, then two stretches of pages overwritten with junk.
  async function damagedDatabase(): Promise<string> {
    const file = join(work, `damaged-${Math.random().toString(36).slice(2)}.db`);
    sqlite(file, `CREATE TABLE t (a, b);
      WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) INSERT INTO t SELECT i, randomblob(100) FROM n;
      CREATE INDEX tb ON t(b);`);
    const bytes = await readFile(file);
    bytes.fill(0xde, 4096 * 5, 4096 * 6);
    bytes.fill(0x00, 4096 * 50 + 100, 4096 * 50 + 1100);
    await writeFile(file, bytes);
    return file;
  }

  test('a database with damaged pages fails its quick_check, and nothing is stored', async (t) => {
    if (!requireBinaries(t, ['sqlite3'])) return;
    const { result, bucket } = await run(await damagedDatabase());
    assert.equal(result.code, EXIT_CODES.DUMP_FAILED.code, result.stdout);
    assert.match(failure(result), /quick_check .* failed: .*(out of order|Extends off end|malformed)/);
    await assertNothingStored(bucket);
  });

  test('with DB_SQLITE_QUICK_CHECK=false the damaged pages are caught in the dump stream', async (t) => {
    if (!requireBinaries(t, ['sqlite3'])) return;
    const { result, bucket } = await run(await damagedDatabase(), { DB_SQLITE_QUICK_CHECK: 'false' });
    assert.equal(result.code, EXIT_CODES.DUMP_FAILED.code, result.stdout);
    assert.match(failure(result), /sqlite3 exited 0, but its dump is not complete: .*(CORRUPTION ERROR|ERROR:|ROLLBACK)/);
    await assertNothingStored(bucket);
  });

  test('a file that is not a database fails before the dump, and nothing is stored', async (t) => {
    if (!requireBinaries(t, ['sqlite3'])) return;
    for (const content of ['hello, this is a text file\n', '']) {
      const file = join(work, `text-${content.length}.db`);
      await writeFile(file, content);
      const { result, bucket } = await run(file, { DB_SQLITE_QUICK_CHECK: 'false' });
      assert.equal(result.code, EXIT_CODES.DUMP_FAILED.code, result.stdout);
      assert.match(failure(result), /is not an SQLite database/);
      assert.ok(!result.lines.some((line) => line.message === 'backup started'), 'the dump never started');
      await assertNothingStored(bucket);
    }
  });

  test('a database held locked by a writer past the busy timeout fails, and nothing is stored', async (t) => {
    if (!requireBinaries(t, ['sqlite3'])) return;
    const file = join(work, 'locked.db');
    sqlite(file, 'CREATE TABLE t (a); INSERT INTO t VALUES (1);');
    // A writer that takes the exclusive lock and keeps its transaction open until the test ends it.
    const writer: ChildProcess = spawn('sqlite3', [file], { stdio: ['pipe', 'ignore', 'ignore'] });
    try {
      writer.stdin?.write('BEGIN EXCLUSIVE; INSERT INTO t VALUES (2); SELECT 1;\n');
      await new Promise((resolve) => setTimeout(resolve, 300));
      const busy = ['-cmd', '.timeout 200'];
      for (const quickCheck of ['true', 'false']) {
        const { result, bucket } = await run(file, { DB_EXTRA_ARGS: JSON.stringify(busy), DB_SQLITE_QUICK_CHECK: quickCheck });
        assert.equal(result.code, EXIT_CODES.DUMP_FAILED.code, result.stdout);
        assert.match(failure(result), /database is locked/, `DB_SQLITE_QUICK_CHECK=${quickCheck}`);
        await assertNothingStored(bucket);
      }
    } finally {
      writer.kill('SIGKILL');
    }
  });
});

describe('mariadb: an account that cannot see what the dump asks for', () => {
  let db: MariadbServer;
  before(async () => {
    if (!findBinary('mariadbd') || !findBinary('mariadb')) return;
    db = await startMariadb();
    await db.createDatabase('shop');
    await db.sql(
      `CREATE TABLE t (a INT) ENGINE=InnoDB; INSERT INTO t VALUES (1);
       CREATE TRIGGER t_touch BEFORE INSERT ON t FOR EACH ROW SET NEW.a = NEW.a;
       CREATE PROCEDURE count_t() SELECT COUNT(*) FROM t;
       CREATE USER 'weak'@'%' IDENTIFIED BY 'weak-password';
       GRANT SELECT, LOCK TABLES, SHOW VIEW, EVENT, TRIGGER ON shop.* TO 'weak'@'%';`,
      'shop',
    );
  });
  after(() => db?.stop());

  const env = (bucket: string, extra: Record<string, string> = {}) => ({
    DB_TYPE: 'mariadb', DB_HOST: db.host, DB_PORT: String(db.port), DB_NAME: 'shop', DB_USERNAME: 'weak', DB_PASSWORD: 'weak-password',
    STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket, ...extra,
  });

  test('a user who cannot read routine bodies is refused with the missing privilege named, and nothing is stored', async (t) => {
    if (!requireBinaries(t, ['mariadbd', 'mariadb', 'mariadb-dump'])) return;
    const bucket = join(work, 'mariadb-weak');
    const result = await runJob(env(bucket));
    assert.equal(result.code, EXIT_CODES.DB_AUTH.code, result.stdout);
    assert.match(failure(result), /lacks SELECT on mysql\.proc .*\(for --routines\) on shop/);
    assert.ok(!result.stdout.includes('weak-password'));
    await assertNothingStored(bucket);
  });

  test('the same user dumps once routines are left out on purpose', async (t) => {
    if (!requireBinaries(t, ['mariadbd', 'mariadb', 'mariadb-dump'])) return;
    const bucket = join(work, 'mariadb-skip-routines');
    const result = await runJob(env(bucket, { DB_EXTRA_ARGS: '--skip-routines' }));
    assert.equal(result.code, 0, result.stdout);
    assert.equal((await readdir(bucket)).length, 1);
  });

  test('DB_HOST=localhost reaches the server on DB_PORT over TCP, not a local socket', async (t) => {
    if (!requireBinaries(t, ['mariadbd', 'mariadb', 'mariadb-dump'])) return;
    await db.sql("GRANT SELECT ON mysql.proc TO 'weak'@'%'");
    const bucket = join(work, 'mariadb-localhost');
    const result = await runJob(env(bucket, { DB_HOST: 'localhost' }));
    assert.equal(result.code, 0, result.stdout);
    assert.equal((await readdir(bucket)).length, 1);
  });
});

describe('fake tools whose output is not a complete dump', () => {
  test('redis: bytes that are not an RDB are refused, nothing stored', async () => {
    const { result, bucket } = await runFake('redis', 'redis-cli', ['--fake-format=garbage', '--fake-bytes=300000']);
    assert.equal(result.code, EXIT_CODES.DUMP_FAILED.code, result.stdout);
    assert.match(failure(result), /not an RDB file/);
    await assertNothingStored(bucket);
  });

  test('redis: a truncated RDB is refused, nothing stored', async () => {
    const { result, bucket } = await runFake('redis', 'redis-cli', ['--fake-bytes=300000', '--fake-truncate=5']);
    assert.equal(result.code, EXIT_CODES.DUMP_FAILED.code, result.stdout);
    assert.match(failure(result), /does not end with its EOF opcode/);
    await assertNothingStored(bucket);
  });

  test('redis: the same fake RDB, complete, is stored (the fixture is not always refused)', async () => {
    const { result } = await runFake('redis', 'redis-cli', ['--fake-bytes=300000']);
    assert.equal(result.code, 0, result.stdout);
  });

  for (const compression of ['zstd', 'gzip', 'none']) {
    test(`postgresql: a pg_dump that writes no PGDMP archive is refused, nothing stored (${compression})`, async () => {
      const { result, bucket } = await runFake('postgresql', 'pg_dump', ['--fake-format=garbage', '--fake-bytes=3000000'], { BACKUP_COMPRESSION: compression });
      assert.equal(result.code, EXIT_CODES.DUMP_FAILED.code, result.stdout);
      assert.match(failure(result), /does not start with "PGDMP"/);
      await assertNothingStored(bucket);
    });
  }

  test('mongodb: an archive without its terminator is refused, nothing stored', async () => {
    const { result, bucket } = await runFake('mongodb', 'mongodump', ['--fake-bytes=300000', '--fake-truncate=4']);
    assert.equal(result.code, EXIT_CODES.DUMP_FAILED.code, result.stdout);
    assert.match(failure(result), /lacks its terminator/);
    await assertNothingStored(bucket);
  });

  test('mysql: a dump without its trailer is refused, nothing stored', async () => {
    const { result, bucket } = await runFake('mysql', 'mysqldump', ['--fake-bytes=300000', '--fake-truncate=30']);
    assert.equal(result.code, EXIT_CODES.DUMP_FAILED.code, result.stdout);
    assert.match(failure(result), /lacks its final "-- Dump completed"/);
    await assertNothingStored(bucket);
  });
});

describe('a compressor that writes its output and then exits non-zero', () => {
  for (const [compression, name] of [['zstd', 'zstd'], ['gzip', 'pigz']] as const) {
    test(`${name} failing after its last byte fails the run, nothing stored`, async () => {
      const bin = await fakeToolDir(['mongodump']);
      await symlink(FAKE_COMPRESSOR, join(bin, name));
      const bucket = join(work, `compressor-${name}`);
      const result = await runJob({
        PATH: `${bin}:${process.env.PATH ?? ''}`,
        DB_TYPE: 'mongodb', DB_HOST: '127.0.0.1', DB_EXTRA_ARGS: '--fake-bytes=2000000',
        BACKUP_COMPRESSION: compression, STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket,
      });
      assert.equal(result.code, EXIT_CODES.DUMP_FAILED.code, result.stdout);
      assert.match(failure(result), new RegExp(`${name} failed \\(exit code 1\\)`));
      await assertNothingStored(bucket);
    });
  }
});

test('a bad value is a config error naming its variable, and no tool runs', async () => {
  const record = join(work, 'never-written.json');
  const { result, bucket } = await runFake('mysql', 'mysqldump', [`--fake-record=${record}`], { DB_HOST: '--socket=/tmp/other.sock', DB_USERNAME: 'backup\nhost=elsewhere' });
  assert.equal(result.code, EXIT_CODES.CONFIG.code, result.stdout);
  assert.match(result.stdout, /DB_HOST starts with \\"-\\"/);
  assert.match(result.stdout, /DB_USERNAME contains a newline/);
  assert.ok(!result.stdout.includes('elsewhere'), 'the value is not echoed');
  await assert.rejects(readFile(record), { code: 'ENOENT' });
  await assertNothingStored(bucket);
});
