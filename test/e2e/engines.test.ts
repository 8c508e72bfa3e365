// Each real database end to end: seed data that breaks naive dumps (unicode, binary, NULLs, a large
// row, several tables), back it up with the bundled job, restore the object with the stock tool into a
// fresh database, and compare. Then the ways a dump fails: wrong password, no server, server killed.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { zstdDecompressSync } from 'node:zlib';
import { EXIT_CODES } from '../../src/exit-codes.ts';
import { freePort } from '../support/ports.ts';
import { requireBinaries } from '../support/require-binary.ts';
import { runJob, type JobResult } from '../support/job.ts';
import { postgresJobEnv, startMariadb, startPostgres, startRedis, type MariadbServer, type PostgresServer } from '../support/servers.ts';

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'planb-engines-'));
});
after(() => rm(work, { recursive: true, force: true }));

// The one object in a bucket, decompressed.
async function storedDump(bucket: string): Promise<{ key: string; data: Buffer }> {
  const keys = await readdir(bucket, { recursive: true });
  const files = keys.filter((key) => !key.endsWith('/') && key.includes('.'));
  assert.equal(files.length, 1, `one object: ${files.join(', ')}`);
  const key = files[0] ?? '';
  return { key, data: zstdDecompressSync(await readFile(join(bucket, key))) };
}

function assertNoSecret(result: JobResult, secret: string): void {
  assert.ok(!result.stdout.includes(secret), 'the password never appears in the logs');
}

async function emptyBucket(bucket: string): Promise<void> {
  assert.deepEqual(await readdir(bucket, { recursive: true }).catch(() => []), [], 'no object and no temporary file');
}

describe('postgresql', () => {
  let pg: PostgresServer;
  before(async () => {
    if (!findTools(['initdb', 'pg_dump', 'pg_restore', 'psql'])) return;
    pg = await startPostgres();
    await pg.createDatabase('shop');
    await pg.sql(
      `CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, avatar bytea, note text, born date);
       CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers(id), total numeric(12,2), payload bytea, tags text[], meta jsonb);
       CREATE INDEX orders_customer ON orders(customer_id);
       CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
       INSERT INTO customers (name, avatar, note, born) VALUES
         ('Zoë “quotes” O''Brien', '\\x00ff00ff7f', NULL, '1970-01-01'), ('田中 太郎 🚀', NULL, E'line1\\nline2\\ttab', NULL), ('', '\\x', '', '2000-02-29');
       INSERT INTO orders (customer_id, total, payload, tags, meta) VALUES (1, 12.5, NULL, '{a,b}', '{"k": [1, null]}'),
         (2, 1e6, decode(repeat('00ff10', 1000000), 'hex'), NULL, NULL);
       INSERT INTO orders (customer_id, total, payload) SELECT 3, i * 1.25, decode(md5(i::text), 'hex') FROM generate_series(1, 20000) i;`,
      'shop',
    );
  });
  after(() => pg?.stop());

  const env = (bucket: string, extra: Record<string, string> = {}) => ({
    ...postgresJobEnv(pg),
    // The alias: DB_TYPE=postgres is postgresql.
    DB_TYPE: 'postgres',
    DB_NAME: 'shop',
    STORAGE_TYPE: 'local',
    STORAGE_BUCKET: bucket,
    BACKUP_PATH: 'daily/',
    ...extra,
  });
  const contents = (database: string) =>
    pg.sql(
      `SELECT md5(string_agg(c::text, '|' ORDER BY id)) FROM customers c;
       SELECT md5(string_agg(o::text, '|' ORDER BY id)) FROM orders o;
       SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_customer';
       SELECT definition FROM pg_views WHERE viewname = 'big_orders';`,
      database,
    );

  test('a postgresql backup restores with pg_restore to identical contents', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_dump', 'pg_restore', 'psql'])) return;
    const bucket = join(work, 'pg');
    const result = await runJob(env(bucket));
    assert.equal(result.code, 0, result.stdout);
    assertNoSecret(result, pg.password);
    const { key, data } = await storedDump(bucket);
    assert.match(key, /^daily\/postgresql-shop-\d{8}T\d{6}Z-[0-9a-f]{8}\.dump\.zst$/);
    assert.equal(data.subarray(0, 5).toString(), 'PGDMP', 'a pg_dump custom-format archive');

    await pg.createDatabase('restored');
    execFileSync(join(pg.binDir, 'pg_restore'), ['--no-owner', '--exit-on-error', `--host=${pg.host}`, `--port=${pg.port}`, `--username=${pg.user}`, '--dbname=restored'], {
      input: data,
      env: { PATH: process.env.PATH, PGPASSFILE: pg.passFile },
    });
    assert.equal(await contents('restored'), await contents('shop'));
  });

  test('a wrong postgresql password exits with the auth code and leaves nothing', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_dump'])) return;
    const bucket = join(work, 'pg-auth');
    const result = await runJob(env(bucket, { DB_PASSWORD: 'wrong-password-123' }));
    assert.equal(result.code, EXIT_CODES.DB_AUTH.code, result.stdout);
    assert.match(result.lines.at(-1)?.message ?? '', /password authentication failed/);
    assert.ok(!result.stdout.includes('wrong-password-123'));
    await emptyBucket(bucket);
  });

  test('a postgresql server that is not there exits with the unreachable code', async (t) => {
    if (!requireBinaries(t, ['pg_dump'])) return;
    const bucket = join(work, 'pg-down');
    const result = await runJob(env(bucket, { DB_PORT: String(await freePort()) }));
    assert.equal(result.code, EXIT_CODES.DB_UNREACHABLE.code, result.stdout);
    await emptyBucket(bucket);
  });

  test('a postgresql server killed mid-dump leaves nothing', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_dump'])) return;
    const victim = await startPostgres();
    try {
      await victim.createDatabase('big');
      await victim.sql(`CREATE TABLE t AS SELECT i, repeat(md5(i::text), 20) AS s FROM generate_series(1, 400000) i;`, 'big');
      const bucket = join(work, 'pg-killed');
      let killed: Promise<void> | undefined;
      const result = await runJob(
        { ...env(bucket), DB_PORT: String(victim.port), DB_NAME: 'big', DB_USERNAME: victim.user, DB_PASSWORD: victim.password },
        {
          onLine: (line) => {
            if (line.message === 'backup started') killed = victim.kill();
            return undefined;
          },
        },
      );
      await killed;
      assert.ok(([EXIT_CODES.DB_UNREACHABLE.code, EXIT_CODES.DUMP_FAILED.code] as number[]).includes(result.code ?? -1), `exit ${result.code}: ${result.lines.at(-1)?.message}`);
      await emptyBucket(bucket);
    } finally {
      await victim.stop();
    }
  });
});

for (const flavour of ['mariadb', 'mysql'] as const) {
  describe(`${flavour} (MariaDB server and client tools)`, () => {
    let db: MariadbServer;
    before(async () => {
      if (!findTools(['mariadbd', 'mariadb'])) return;
      db = await startMariadb();
      await db.createDatabase('shop');
      await db.sql(
        `CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(200) CHARACTER SET utf8mb4 NOT NULL, avatar BLOB, note TEXT) ENGINE=InnoDB;
         CREATE TABLE orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, customer_id INT, total DECIMAL(12,2), payload LONGBLOB, FOREIGN KEY (customer_id) REFERENCES customers(id)) ENGINE=InnoDB;
         CREATE TRIGGER orders_touch BEFORE INSERT ON orders FOR EACH ROW SET NEW.total = COALESCE(NEW.total, 0);
         CREATE PROCEDURE count_orders() SELECT COUNT(*) FROM orders;
         INSERT INTO customers (name, avatar, note) VALUES ('Zoë “quotes” O''Brien', 0x00ff00ff7f, NULL), ('田中 太郎 🚀', NULL, 'line1\\nline2'), ('', '', '');
         INSERT INTO orders (customer_id, total, payload) VALUES (1, 12.5, NULL), (2, 1000000, REPEAT(0x00ff10, 1000000)), (3, NULL, UNHEX(MD5('x')));`,
        'shop',
      );
    });
    after(() => db?.stop());

    const contents = (database: string) =>
      db.sql(
        `SELECT id, name, HEX(avatar), note FROM customers ORDER BY id;
         SELECT id, customer_id, total, MD5(payload), LENGTH(payload) FROM orders ORDER BY id;
         SELECT COUNT(*) FROM information_schema.triggers WHERE trigger_schema = DATABASE();
         SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = DATABASE();`,
        database,
      );

    test(`a ${flavour} backup restores with the mariadb client to identical contents`, async (t) => {
      if (!requireBinaries(t, ['mariadbd', 'mariadb', 'mysqldump'])) return;
      const bucket = join(work, flavour);
      const result = await runJob({
        DB_TYPE: flavour,
        DB_HOST: db.host,
        DB_PORT: String(db.port),
        DB_NAME: 'shop',
        DB_USERNAME: db.user,
        DB_PASSWORD: db.password,
        STORAGE_TYPE: 'local',
        STORAGE_BUCKET: bucket,
      });
      assert.equal(result.code, 0, result.stdout);
      assertNoSecret(result, db.password);
      const started = result.lines.find((line) => line.message === 'backup started') as unknown as { tool: { name: string } };
      assert.equal(started.tool.name, flavour === 'mariadb' ? 'mariadb-dump' : 'mysqldump');
      const { key, data } = await storedDump(bucket);
      assert.match(key, new RegExp(`^${flavour}-shop-.*\\.sql\\.zst$`));

      const restored = `restored_${flavour}`;
      await db.createDatabase(restored);
      const defaults = join(work, `${flavour}.cnf`);
      await writeFile(defaults, `[client]\npassword=${db.password}\n`, { mode: 0o600 });
      execFileSync('mariadb', [`--defaults-extra-file=${defaults}`, `--host=${db.host}`, `--port=${db.port}`, '--protocol=TCP', `--user=${db.user}`, restored], { input: data });
      assert.equal(await contents(restored), await contents('shop'));
    });

    test(`a wrong ${flavour} password exits with the auth code and leaves nothing`, async (t) => {
      if (!requireBinaries(t, ['mariadbd', 'mysqldump'])) return;
      const bucket = join(work, `${flavour}-auth`);
      const result = await runJob({
        DB_TYPE: flavour, DB_HOST: db.host, DB_PORT: String(db.port), DB_NAME: 'shop', DB_USERNAME: db.user, DB_PASSWORD: 'not-the-password',
        STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket,
      });
      assert.equal(result.code, EXIT_CODES.DB_AUTH.code, result.stdout);
      await emptyBucket(bucket);
    });
  });
}

describe('redis', () => {
  test('a redis RDB backup loads into a fresh server with identical keys', async (t) => {
    if (!requireBinaries(t, ['redis-server', 'redis-cli'])) return;
    const source = await startRedis();
    try {
      await source.cli('SET', 'plain', 'héllo 🚀');
      await source.cli('SET', 'big', 'x'.repeat(100_000));
      await source.cli('HSET', 'user:1', 'name', 'Zoë', 'age', '42');
      await source.cli('RPUSH', 'queue', 'a', 'b', '', 'c');
      await source.cli('SADD', 'tags', 'red', 'green');
      await source.cli('ZADD', 'scores', '1.5', 'alice', '-2', 'bob');
      await source.cli('SET', 'expiring', 'soon', 'EX', '3600');
      await source.cli('SELECT', '3');
      const bucket = join(work, 'redis');
      const result = await runJob({
        DB_TYPE: 'redis', DB_HOST: source.host, DB_PORT: String(source.port), DB_PASSWORD: source.password,
        STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket,
      });
      assert.equal(result.code, 0, result.stdout);
      assertNoSecret(result, source.password);
      const { key, data } = await storedDump(bucket);
      assert.match(key, /^redis-redis-.*\.rdb\.zst$/);
      assert.equal(data.subarray(0, 5).toString(), 'REDIS', 'an RDB file');

      const restoreDir = await mkdtemp(join(work, 'redis-restore-'));
      await writeFile(join(restoreDir, 'restored.rdb'), data);
      const restored = await startRedis({ dir: restoreDir, dbfilename: 'restored.rdb' });
      try {
        const snapshot = async (server: typeof source) => {
          const keys = (await server.cli('KEYS', '*')).split('\n').filter(Boolean).sort();
          const values = [];
          for (const k of keys) {
            const type = (await server.cli('TYPE', k)).trim();
            const read = { string: ['GET', k], hash: ['HGETALL', k], list: ['LRANGE', k, '0', '-1'], set: ['SMEMBERS', k], zset: ['ZRANGE', k, '0', '-1', 'WITHSCORES'] }[type] ?? ['TYPE', k];
            const value = await server.cli(...read);
            values.push([k, type, type === 'set' ? value.split('\n').sort().join('\n') : value]);
          }
          return values;
        };
        const expected = await snapshot(source);
        assert.equal(expected.length, 7);
        assert.deepEqual(await snapshot(restored), expected);
        assert.ok(Number(await restored.cli('TTL', 'expiring')) > 0, 'expiry survives');
      } finally {
        await restored.stop();
      }

      // The same server through its unix socket: DB_HOST is the socket's path.
      const overSocket = join(work, 'redis-socket');
      const bySocket = await runJob({ DB_TYPE: 'redis', DB_HOST: source.socket, DB_PASSWORD: source.password, STORAGE_TYPE: 'local', STORAGE_BUCKET: overSocket });
      assert.equal(bySocket.code, 0, bySocket.stdout);
      assert.deepEqual(bySocket.lines.find((line) => line.message === 'backup started')?.args, ['-s', source.socket, '--rdb', '-']);
      assert.equal((await storedDump(overSocket)).data.subarray(0, 5).toString(), 'REDIS', 'an RDB file');
    } finally {
      await source.stop();
    }
  });

  test('a wrong redis password exits with the auth code and leaves nothing', async (t) => {
    if (!requireBinaries(t, ['redis-server', 'redis-cli'])) return;
    const server = await startRedis();
    try {
      const bucket = join(work, 'redis-auth');
      const result = await runJob({
        DB_TYPE: 'redis', DB_HOST: server.host, DB_PORT: String(server.port), DB_PASSWORD: 'nope-nope',
        STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket,
      });
      assert.equal(result.code, EXIT_CODES.DB_AUTH.code, result.stdout);
      await emptyBucket(bucket);
    } finally {
      await server.stop();
    }
  });
});

// Server setup in before() needs the binaries too; the tests themselves report the skip (or CI failure).
function findTools(names: string[]): boolean {
  return names.every((name) => {
    try {
      execFileSync('sh', ['-c', `command -v ${name} || ls /usr/lib/postgresql/*/bin/${name} /usr/sbin/${name}`], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  });
}
