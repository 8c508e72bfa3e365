// JOB_MODE=restore and verify, and BACKUP_VERIFY, end to end with the bundled job and real servers:
// each engine that runs here is backed up, then restored by the job itself into a fresh database and
// compared; a non-empty target is refused and left alone; verification passes on a good object and
// fails on one that was altered or truncated in storage.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { EXIT_CODES } from '../../src/exit-codes.ts';
import { findBinary, requireBinaries } from '../support/require-binary.ts';
import { runJob, type JobResult } from '../support/job.ts';
import { postgresJobEnv, startMariadb, startPostgres, startRedis, type MariadbServer, type PostgresServer, type RedisServer } from '../support/servers.ts';
import { requireS3rver, startS3Server, type S3TestServer } from '../support/s3-server.ts';

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'planb-restore-'));
});
after(() => rm(work, { recursive: true, force: true }));

// The uid:gid throw-away servers run as when the tests run as root (servers refuse root).
function runAs(): Record<string, string> {
  if (process.getuid?.() !== 0) return {};
  const account = execFileSync('getent', ['passwd', 'postgres']).toString().split(':');
  return { VERIFY_RUN_AS: `${account[2]}:${account[3]}` };
}

// The keys of the backups in a local bucket (no facts sidecars, no temporary names).
async function backups(bucket: string): Promise<string[]> {
  const keys = await readdir(bucket, { recursive: true });
  return keys.filter((key) => /\.(dump|sql|rdb)(\.zst)?$/.test(key)).sort();
}

function lastLine(result: JobResult) {
  return result.lines.at(-1) ?? { severity: '', message: '' };
}

describe('postgresql', () => {
  let pg: PostgresServer;
  let bucket: string;
  let key: string;
  before(async () => {
    if (!findAll(['initdb', 'pg_dump', 'pg_restore', 'psql'])) return;
    pg = await startPostgres();
    await pg.createDatabase('shop');
    await pg.sql(
      `CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, avatar bytea);
       CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers(id), total numeric(12,2), meta jsonb);
       CREATE SCHEMA audit; CREATE TABLE audit."odd | name" (at timestamptz DEFAULT now());
       INSERT INTO customers (name, avatar) VALUES ('Zoë O''Brien', '\\x00ff'), ('田中 🚀', NULL), ('', '\\x');
       INSERT INTO orders (customer_id, total, meta) SELECT 1 + i % 3, i * 1.25, jsonb_build_object('i', i) FROM generate_series(1, 5000) i;
       INSERT INTO audit."odd | name" SELECT now() FROM generate_series(1, 7);`,
      'shop',
    );
    bucket = join(work, 'pg');
  });
  after(() => pg?.stop());

  const env = (extra: Record<string, string> = {}) => ({
    ...postgresJobEnv(pg),
    DB_NAME: 'shop',
    STORAGE_TYPE: 'local',
    STORAGE_BUCKET: bucket,
    BACKUP_PATH: 'daily/',
    ...runAs(),
    ...extra,
  });
  const contents = (database: string) =>
    pg.sql(`SELECT md5(string_agg(c::text, '|' ORDER BY id)) FROM customers c; SELECT md5(string_agg(o::text, '|' ORDER BY id)) FROM orders o; SELECT count(*) FROM audit."odd | name";`, database);

  test('BACKUP_VERIFY=true backs up, stores the facts beside the object, and verifies it in a throw-away server', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_dump', 'pg_restore', 'psql'])) return;
    const result = await runJob(env({ BACKUP_VERIFY: 'true' }));
    assert.equal(result.code, 0, result.stdout);
    [key = ''] = await backups(bucket);
    const facts = JSON.parse(await readFile(join(bucket, `${key}.facts.json`), 'utf8')) as { consistency: string; counts: Record<string, number> };
    assert.equal(facts.consistency, 'snapshot');
    assert.deepEqual(facts.counts, { 'audit.odd | name': 7, 'public.customers': 3, 'public.orders': 5000 });
    const verified = result.lines.find((line) => line.message.startsWith('verification passed'));
    assert.ok(verified, result.stdout);
    assert.deepEqual(verified.counts, facts.counts);
    assert.ok(!result.stdout.includes(pg.password), 'no password in the log');
  });

  test('JOB_MODE=restore RESTORE_KEY=latest restores the newest backup into an empty database, identical', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_dump', 'pg_restore', 'psql']) || !key) return;
    await pg.createDatabase('restored');
    const result = await runJob(env({ JOB_MODE: 'restore', RESTORE_KEY: 'latest', RESTORE_SOURCE: 'shop', DB_NAME: 'restored' }));
    assert.equal(result.code, 0, result.stdout);
    assert.equal(lastLine(result).message, 'restore finished');
    assert.equal((lastLine(result).object as { key: string }).key, key);
    assert.equal(await contents('restored'), await contents('shop'));
  });

  test('a restore into a database that holds tables is refused with the config code, and the database is left as it was', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_restore', 'psql']) || !key) return;
    await pg.createDatabase('busy');
    await pg.sql('CREATE TABLE keep (v int); INSERT INTO keep VALUES (42);', 'busy');
    const result = await runJob(env({ JOB_MODE: 'restore', RESTORE_KEY: key, DB_NAME: 'busy' }));
    assert.equal(result.code, EXIT_CODES.CONFIG.code, result.stdout);
    assert.match(lastLine(result).message, /already holds 1 tables \(public\.keep\).*RESTORE_FORCE=true/);
    assert.equal(await pg.sql("SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'", 'busy'), 'keep');
  });

  test('RESTORE_FORCE=true restores over an older copy, replacing what the dump holds', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_restore', 'psql']) || !key) return;
    await pg.sql("DELETE FROM orders WHERE id > 10; UPDATE customers SET name = 'changed';", 'restored');
    const result = await runJob(env({ JOB_MODE: 'restore', RESTORE_KEY: key, DB_NAME: 'restored', RESTORE_FORCE: 'true' }));
    assert.equal(result.code, 0, result.stdout);
    assert.equal(await contents('restored'), await contents('shop'));
  });

  test('JOB_MODE=verify passes on the stored object, and fails with VERIFY_FAILED once it was truncated or altered', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_restore', 'psql']) || !key) return;
    const good = await runJob(env({ JOB_MODE: 'verify', RESTORE_KEY: key }));
    assert.equal(good.code, 0, good.stdout);

    // Truncated: the compressed object cut in half.
    const original = await readFile(join(bucket, key));
    const truncatedKey = key.replace('.dump.zst', '-cut.dump.zst');
    await writeFile(join(bucket, truncatedKey), original.subarray(0, Math.floor(original.length / 2)));
    await writeFile(join(bucket, `${truncatedKey}.facts.json`), await readFile(join(bucket, `${key}.facts.json`)));
    const cut = await runJob(env({ JOB_MODE: 'verify', RESTORE_KEY: truncatedKey }));
    assert.equal(cut.code, EXIT_CODES.VERIFY_FAILED.code, cut.stdout);

    // Altered: a valid archive whose facts no longer match (a table lost rows after the dump was taken).
    const facts = JSON.parse(await readFile(join(bucket, `${key}.facts.json`), 'utf8')) as { counts: Record<string, number> };
    facts.counts['public.orders'] = 5001;
    const alteredKey = key.replace('.dump.zst', '-altered.dump.zst');
    await writeFile(join(bucket, alteredKey), original);
    await writeFile(join(bucket, `${alteredKey}.facts.json`), JSON.stringify(facts));
    const altered = await runJob(env({ JOB_MODE: 'verify', RESTORE_KEY: alteredKey }));
    assert.equal(altered.code, EXIT_CODES.VERIFY_FAILED.code, altered.stdout);
    assert.match(lastLine(altered).message, /public\.orders: expected 5001, restored 5000/);
  });

  test('a pg_dumpall backup verifies, and restores every database into a fresh cluster (its DROP ROLE of the restoring user is expected, any other error is not)', async (t) => {
    if (!requireBinaries(t, ['initdb', 'pg_dumpall', 'psql'])) return;
    const allBucket = join(work, 'pg-all');
    const allEnv: Record<string, string> = env({ DB_ALL_DATABASES: 'true', STORAGE_BUCKET: allBucket });
    delete allEnv.DB_NAME;
    const backup = await runJob(allEnv);
    assert.equal(backup.code, 0, backup.stdout);
    const verify = await runJob({ ...allEnv, JOB_MODE: 'verify', RESTORE_KEY: 'latest' });
    assert.equal(verify.code, 0, verify.stdout);
    assert.equal((lastLine(verify).verification as { factsFound: boolean }).factsFound, false, 'BACKUP_FACTS was off');

    const fresh = await startPostgres();
    try {
      // The script gives every role its password from the source cluster, the restoring role too, and
      // then reconnects: the restoring role must already have that password.
      await fresh.sql(`ALTER ROLE postgres PASSWORD '${pg.password}'`);
      const restored = await runJob({ ...allEnv, JOB_MODE: 'restore', RESTORE_KEY: 'latest', DB_PORT: String(fresh.port) });
      assert.equal(restored.code, 0, restored.stdout);
      const orders = `SELECT md5(string_agg(o::text, '|' ORDER BY id)) FROM orders o`;
      // The fresh cluster's postgres now has the source's password: read it with the source's passfile.
      const copied = execFileSync(join(pg.binDir, 'psql'), ['-XAtq', '-h', fresh.host, '-p', String(fresh.port), '-U', 'postgres', '-d', 'shop', '-c', orders], { env: { PGPASSFILE: pg.passFile } });
      assert.equal(copied.toString().trim(), await pg.sql(orders, 'shop'));
      const again = await runJob({ ...allEnv, JOB_MODE: 'restore', RESTORE_KEY: 'latest', DB_PORT: String(fresh.port) });
      assert.equal(again.code, EXIT_CODES.CONFIG.code, 'a cluster that holds databases is refused');
    } finally {
      await fresh.stop();
    }
  });

  test('a verification as root without VERIFY_RUN_AS says it cannot run, and is not a success', async (t) => {
    if (process.getuid?.() !== 0 || !key) return t.skip('only meaningful as root');
    const asRoot: Record<string, string> = env({ JOB_MODE: 'verify', RESTORE_KEY: key });
    delete asRoot.VERIFY_RUN_AS;
    const result = await runJob(asRoot);
    assert.equal(result.code, EXIT_CODES.VERIFY_UNAVAILABLE.code, result.stdout);
    assert.match(lastLine(result).message, /runs as root.*VERIFY_RUN_AS/);
  });
});

describe('sqlite', () => {
  const sqlite = (file: string, sql: string) => execFileSync('sqlite3', ['-bail', file], { input: sql }).toString();
  const contents = (file: string) => sqlite(file, "SELECT * FROM items ORDER BY id; SELECT count(*) FROM \"odd table\"; SELECT sql FROM sqlite_schema ORDER BY name;");
  let dir: string;
  let source: string;
  let key = '';
  before(async () => {
    dir = await mkdtemp(join(work, 'sqlite-'));
    source = join(dir, 'app.db');
    if (!findAll(['sqlite3'])) return;
    sqlite(source, `CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, data BLOB);
      CREATE TABLE "odd table" (v);
      INSERT INTO items (name, data) VALUES ('a''b', x'00ff'), ('🚀', NULL), ('line1' || char(10) || 'line2', zeroblob(3));
      WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) INSERT INTO "odd table" SELECT i FROM n;`);
  });
  const env = (extra: Record<string, string> = {}) => ({ DB_TYPE: 'sqlite', DB_NAME: source, STORAGE_TYPE: 'local', STORAGE_BUCKET: join(dir, 'bucket'), ...extra });

  test('a sqlite backup verified right after it is taken, restored by the job into a new file, identical', async (t) => {
    if (!requireBinaries(t, ['sqlite3'])) return;
    const backup = await runJob(env({ BACKUP_VERIFY: 'true' }));
    assert.equal(backup.code, 0, backup.stdout);
    [key = ''] = await backups(join(dir, 'bucket'));
    const verified = backup.lines.find((line) => line.message.startsWith('verification passed'));
    assert.deepEqual(verified?.counts, { items: 3, 'odd table': 300 }, backup.stdout);

    const target = join(dir, 'restored.db');
    const restored = await runJob(env({ JOB_MODE: 'restore', RESTORE_KEY: key, DB_NAME: target }));
    assert.equal(restored.code, 0, restored.stdout);
    assert.equal(contents(target), contents(source));
    assert.deepEqual((await readdir(dir)).filter((name) => name.includes('partial')), [], 'no temporary file left');
  });

  test('a sqlite restore onto a file that holds tables is refused and the file is untouched', async (t) => {
    if (!requireBinaries(t, ['sqlite3']) || !key) return;
    const target = join(dir, 'busy.db');
    sqlite(target, 'CREATE TABLE keep (v); INSERT INTO keep VALUES (1);');
    const before = await readFile(target);
    const result = await runJob(env({ JOB_MODE: 'restore', RESTORE_KEY: key, DB_NAME: target }));
    assert.equal(result.code, EXIT_CODES.CONFIG.code, result.stdout);
    assert.deepEqual(await readFile(target), before);

    const forced = await runJob(env({ JOB_MODE: 'restore', RESTORE_KEY: key, DB_NAME: target, RESTORE_FORCE: 'true' }));
    assert.equal(forced.code, 0, forced.stdout);
    assert.equal(contents(target), contents(source), 'RESTORE_FORCE replaces the file as a whole');
  });

  test('a sqlite object truncated in storage fails verification and its restore leaves no file', async (t) => {
    if (!requireBinaries(t, ['sqlite3']) || !key) return;
    const bucket = join(dir, 'bucket');
    const cutKey = key.replace('.sql.zst', '-cut.sql.zst');
    const original = await readFile(join(bucket, key));
    await writeFile(join(bucket, cutKey), original.subarray(0, original.length - 20));
    const verify = await runJob(env({ JOB_MODE: 'verify', RESTORE_KEY: cutKey }));
    assert.equal(verify.code, EXIT_CODES.VERIFY_FAILED.code, verify.stdout);
    assert.match(lastLine(verify).message, /did not restore.*does not decompress/);

    const target = join(dir, 'never.db');
    const restore = await runJob(env({ JOB_MODE: 'restore', RESTORE_KEY: cutKey, DB_NAME: target }));
    assert.equal(restore.code, EXIT_CODES.DUMP_FAILED.code, restore.stdout);
    assert.deepEqual((await readdir(dir)).filter((name) => name.includes('never')), []);
  });
});

describe('mariadb', () => {
  let db: MariadbServer;
  let bucket: string;
  before(async () => {
    if (!findAll(['mariadbd', 'mariadb-install-db', 'mariadb-dump', 'mariadb'])) return;
    db = await startMariadb();
    await db.createDatabase('shop');
    await db.sql(`CREATE TABLE items (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(100), data BLOB) ENGINE=InnoDB;
      INSERT INTO items (name, data) VALUES ('Zoë', X'00FF'), ('🚀', NULL), ('', '');
      CREATE TABLE \`odd\`\`name\` (v INT); INSERT INTO \`odd\`\`name\` VALUES (1), (2);`, 'shop');
    bucket = join(work, 'mariadb');
  });
  after(() => db?.stop());
  const env = (extra: Record<string, string> = {}) => ({
    DB_TYPE: 'mariadb', DB_HOST: db.host, DB_PORT: String(db.port), DB_NAME: 'shop', DB_USERNAME: db.user, DB_PASSWORD: db.password,
    STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket, ...runAs(), ...extra,
  });
  const contents = (database: string) => db.sql('SELECT id, name, HEX(data) FROM items ORDER BY id; SELECT * FROM `odd``name`;', database);

  test('a mariadb backup verifies in a throw-away mariadbd and restores into an empty database, identical', async (t) => {
    if (!requireBinaries(t, ['mariadbd', 'mariadb-install-db', 'mariadb-dump', 'mariadb'])) return;
    const backup = await runJob(env({ BACKUP_VERIFY: 'true' }));
    assert.equal(backup.code, 0, backup.stdout);
    const verified = backup.lines.find((line) => line.message.startsWith('verification passed'));
    assert.deepEqual(verified?.counts, { items: 3, 'odd`name': 2 }, backup.stdout);

    await db.createDatabase('copy');
    const restored = await runJob(env({ JOB_MODE: 'restore', RESTORE_KEY: 'latest', RESTORE_SOURCE: 'shop', DB_NAME: 'copy' }));
    assert.equal(restored.code, 0, restored.stdout);
    assert.equal(await contents('copy'), await contents('shop'));

    const refused = await runJob(env({ JOB_MODE: 'restore', RESTORE_KEY: 'latest', RESTORE_SOURCE: 'shop', DB_NAME: 'copy' }));
    assert.equal(refused.code, EXIT_CODES.CONFIG.code, refused.stdout);
    assert.ok(!refused.stdout.includes(db.password) && !restored.stdout.includes(db.password), 'no password in the log');
  });
});

describe('redis', () => {
  let redis: RedisServer;
  let bucket: string;
  before(async () => {
    if (!findAll(['redis-server', 'redis-cli'])) return;
    redis = await startRedis();
    await redis.cli('SET', 'greeting', 'hello 🚀');
    await redis.cli('RPUSH', 'list', 'a', 'b', 'c');
    await redis.cli('-n', '3', 'HSET', 'h', 'f', 'v');
    bucket = join(work, 'redis');
  });
  after(() => redis?.stop());
  const env = (extra: Record<string, string> = {}) => ({
    DB_TYPE: 'redis', DB_HOST: redis.host, DB_PORT: String(redis.port), DB_PASSWORD: redis.password,
    STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket, ...runAs(), ...extra,
  });

  test('a redis backup verifies (keys per database) and restores as an RDB file that a server loads with the same keys', async (t) => {
    if (!requireBinaries(t, ['redis-server', 'redis-cli'])) return;
    const backup = await runJob(env({ BACKUP_VERIFY: 'true' }));
    assert.equal(backup.code, 0, backup.stdout);
    const verified = backup.lines.find((line) => line.message.startsWith('verification passed'));
    assert.deepEqual(verified?.counts, { db0: 2, db3: 1 }, backup.stdout);

    const rdbDir = await mkdtemp(join(work, 'rdb-'));
    const rdb = join(rdbDir, 'dump.rdb');
    const restored = await runJob(env({ JOB_MODE: 'restore', RESTORE_KEY: 'latest', RESTORE_RDB_PATH: rdb }));
    assert.equal(restored.code, 0, restored.stdout);
    const loaded = await startRedis({ dir: rdbDir, dbfilename: 'dump.rdb' });
    try {
      assert.equal(await loaded.cli('GET', 'greeting'), 'hello 🚀');
      assert.equal(await loaded.cli('LRANGE', 'list', '0', '-1'), 'a\nb\nc');
      assert.equal(await loaded.cli('-n', '3', 'HGET', 'h', 'f'), 'v');
    } finally {
      await loaded.stop();
    }
    const again = await runJob(env({ JOB_MODE: 'restore', RESTORE_KEY: 'latest', RESTORE_RDB_PATH: rdb }));
    assert.equal(again.code, EXIT_CODES.CONFIG.code, 'an existing RDB file is not replaced without RESTORE_FORCE');
  });

  test('a redis object altered in storage fails verification', async (t) => {
    if (!requireBinaries(t, ['redis-server', 'redis-cli'])) return;
    const [key = ''] = await backups(bucket);
    if (!key) return t.skip('no backup from the previous test');
    const original = await readFile(join(bucket, key));
    const raw = (await import('node:zlib')).zstdDecompressSync(original);
    // One flipped byte inside a stored value: the RDB's checksum no longer matches its content.
    const at = raw.indexOf('hello');
    assert.ok(at > 0, 'the value is in the RDB');
    raw[at] = (raw[at] ?? 0) ^ 0x20;
    const alteredKey = key.replace('.rdb.zst', '-altered.rdb');
    await writeFile(join(bucket, alteredKey), raw);
    await writeFile(join(bucket, `${alteredKey}.facts.json`), await readFile(join(bucket, `${key}.facts.json`)));
    const result = await runJob(env({ JOB_MODE: 'verify', RESTORE_KEY: alteredKey }));
    assert.equal(result.code, EXIT_CODES.VERIFY_FAILED.code, result.stdout);
  });
});

describe('s3', () => {
  let s3: S3TestServer;
  const bucketName = 'planb-restore';
  before(async () => {
    s3 = await startS3Server({ buckets: [bucketName] });
  });
  after(() => s3?.stop());

  test('a sqlite backup stored on S3 restores with the job from S3 (RESTORE_KEY=latest)', async (t) => {
    if (!requireS3rver(t) || !requireBinaries(t, ['sqlite3'])) return;
    const dir = await mkdtemp(join(work, 's3-'));
    const source = join(dir, 'shop.db');
    execFileSync('sqlite3', ['-bail', source], { input: "CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('from s3'), ('two');" });
    const env = {
      DB_TYPE: 'sqlite', DB_NAME: source, STORAGE_TYPE: 's3', STORAGE_BUCKET: bucketName, STORAGE_ENDPOINT: s3.endpoint, STORAGE_REGION: s3.region,
      STORAGE_ACCESS_KEY_ID: s3.credentials.accessKeyId, STORAGE_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey, BACKUP_PATH: 'nightly/', BACKUP_FACTS: 'true',
    };
    const backup = await runJob(env);
    assert.equal(backup.code, 0, backup.stdout);
    const target = join(dir, 'copy.db');
    const restored = await runJob({ ...env, JOB_MODE: 'restore', RESTORE_KEY: 'latest', RESTORE_SOURCE: source, DB_NAME: target });
    assert.equal(restored.code, 0, restored.stdout);
    assert.equal(execFileSync('sqlite3', [target, 'SELECT group_concat(v) FROM t']).toString().trim(), 'from s3,two');
    const verified = await runJob({ ...env, JOB_MODE: 'verify', RESTORE_KEY: 'latest' });
    assert.equal(verified.code, 0, verified.stdout);
    assert.equal((lastLine(verified).verification as { factsFound: boolean }).factsFound, true);

    const missing = await runJob({ ...env, JOB_MODE: 'restore', RESTORE_KEY: 'nightly/nope.sql.zst', DB_NAME: join(dir, 'x.db') });
    assert.equal(missing.code, EXIT_CODES.STORAGE_DENIED.code, missing.stdout);
  });
});

function findAll(names: string[]): boolean {
  return names.every((name) => findBinary(name) !== undefined);
}
