// The engines' probes against real servers: DB_NAMES=* lists what the user can dump (no templates,
// no system databases, nothing it may not connect to), and the size a database reports is of the
// order of what its dump holds. Both use the dump's own way of passing the password.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { ENGINES } from '../../src/engines/registry.ts';
import type { DbConfig } from '../../src/engines/types.ts';
import { DumpError } from '../../src/errors.ts';
import { runProbe } from '../../src/probe.ts';
import { findBinary, requireBinaries } from '../support/require-binary.ts';
import { startMariadb, startPostgres, startRedis, type MariadbServer, type PostgresServer, type RedisServer } from '../support/servers.ts';

const silent = pino({ level: 'silent' });
const MB = 1_000_000;

function dbConfig(overrides: Partial<DbConfig> & Pick<DbConfig, 'type'>): DbConfig {
  return { host: undefined, port: undefined, name: undefined, username: undefined, password: undefined, tls: undefined, tlsCaFile: undefined, allDatabases: false, extraArgs: [], sqliteQuickCheck: false, ...overrides };
}

function probeOptions(db: DbConfig, path = process.env.PATH ?? '') {
  const scrub = (text: string) => (db.password ? text.split(db.password).join('[redacted]') : text);
  return { db, toolEnv: { PATH: path }, signal: AbortSignal.timeout(60_000), scrub, log: silent };
}

async function discover(db: DbConfig, path?: string): Promise<string[]> {
  const engine = ENGINES[db.type];
  assert.ok(engine.discover !== undefined);
  return runProbe(engine.discover(db), probeOptions(db, path));
}

// Whether a describe's servers can start; each test then skips (or fails in CI) on its own.
function present(names: readonly string[]): boolean {
  return names.every((name) => findBinary(name) !== undefined);
}

// The estimate is an order of magnitude: within 10× of what the dump really holds, either way.
function assertSameOrder(t: TestContext, estimate: number, actual: number, what: string): void {
  t.diagnostic(`${what}: estimate ${estimate} bytes, dump ${actual} bytes (${(estimate / actual).toFixed(2)}×)`);
  assert.ok(estimate > actual / 10 && estimate < actual * 10, `${what}: estimate ${estimate} vs dump ${actual}`);
}

describe('postgresql', () => {
  let pg: PostgresServer;
  let path: string;
  before(async () => {
    if (!present(['initdb', 'psql', 'pg_dump'])) return;
    pg = await startPostgres();
    path = `${pg.binDir}:${process.env.PATH ?? ''}`;
    for (const name of ['alpha', 'beta', 'closed', 'private']) await pg.createDatabase(name);
    await pg.sql(`ALTER DATABASE closed ALLOW_CONNECTIONS false; REVOKE CONNECT ON DATABASE private FROM PUBLIC;
      CREATE ROLE reader LOGIN PASSWORD 'reader-pass-123';`);
    await pg.sql(`CREATE TABLE big (id int PRIMARY KEY, body text); INSERT INTO big SELECT i, md5(i::text) || repeat('x', 400) FROM generate_series(1, 50000) i;`, 'alpha');
  });
  after(() => pg?.stop());
  const as = (user: string, password: string, name?: string) =>
    dbConfig({ type: 'postgresql', host: pg.host, port: pg.port, username: user, password, name });

  test('discovery lists the databases, not the templates nor one that allows no connections', async (t) => {
    if (!requireBinaries(t, ['initdb', 'psql'])) return;
    assert.deepEqual(await discover(as(pg.user, pg.password), path), ['alpha', 'beta', 'postgres', 'private']);
  });

  test('discovery leaves out a database the user may not connect to', async (t) => {
    if (!requireBinaries(t, ['initdb', 'psql'])) return;
    assert.deepEqual(await discover(as('reader', 'reader-pass-123'), path), ['alpha', 'beta', 'postgres']);
  });

  test('a wrong password is an auth failure that does not show the password', async (t) => {
    if (!requireBinaries(t, ['initdb', 'psql'])) return;
    const failure = await discover(as(pg.user, 'not-the-password-42'), path).then(() => undefined, (error: unknown) => error);
    assert.ok(failure instanceof DumpError, String(failure));
    assert.equal(failure.kind, 'auth');
    assert.match(failure.message, /psql \(pg_database\) exited with code 2: .*password authentication failed/);
    assert.ok(!failure.message.includes('not-the-password-42'));
  });

  test('pg_database_size is of the order of the dump', async (t) => {
    if (!requireBinaries(t, ['initdb', 'psql', 'pg_dump'])) return;
    const estimate = await runProbe(ENGINES.postgresql.size(as(pg.user, pg.password, 'alpha')), probeOptions(as(pg.user, pg.password, 'alpha'), path));
    const dump = execFileSync(join(pg.binDir, 'pg_dump'), ['--host', pg.host, '--port', String(pg.port), '--username', pg.user, 'alpha'], {
      env: { PGPASSFILE: pg.passFile }, maxBuffer: 1e9,
    });
    assert.ok(dump.length > 20 * MB, `a dump of ${dump.length} bytes`);
    assertSameOrder(t, estimate, dump.length, 'pg_database_size');
  });
});

describe('mariadb', () => {
  let maria: MariadbServer;
  before(async () => {
    if (!present(['mariadbd', 'mariadb', 'mariadb-dump'])) return;
    maria = await startMariadb();
    for (const name of ['crm', 'shop']) await maria.createDatabase(name);
    await maria.sql(
      `CREATE TABLE big (id INT PRIMARY KEY, body TEXT) ENGINE=InnoDB;
       INSERT INTO big SELECT seq, CONCAT(MD5(seq), REPEAT('x', 400)) FROM seq_1_to_50000;
       ANALYZE TABLE big;`,
      'shop',
    );
  });
  after(() => maria?.stop());
  const config = (name?: string) => dbConfig({ type: 'mariadb', host: maria.host, port: maria.port, username: maria.user, password: maria.password, name });

  test('discovery lists the user databases, not sys, mysql, performance_schema nor information_schema', async (t) => {
    if (!requireBinaries(t, ['mariadbd', 'mariadb'])) return;
    assert.deepEqual((await discover(config())).sort(), ['crm', 'shop']);
  });

  // InnoDB's figures are statistics: a table loaded a moment ago may show little until they are
  // recalculated (in the background, or by ANALYZE TABLE as here).
  test('data_length + index_length is of the order of the dump', async (t) => {
    if (!requireBinaries(t, ['mariadbd', 'mariadb', 'mariadb-dump'])) return;
    const estimate = await runProbe(ENGINES.mariadb.size(config('shop')), probeOptions(config('shop')));
    const dump = execFileSync('mariadb-dump', [`--host=${maria.host}`, `--port=${maria.port}`, '--protocol=TCP', `--user=${maria.user}`, `--password=${maria.password}`, 'shop'], { maxBuffer: 1e9 });
    assert.ok(dump.length > 20 * MB, `a dump of ${dump.length} bytes`);
    assertSameOrder(t, estimate, dump.length, 'information_schema');
  });
});

describe('redis', () => {
  let redis: RedisServer;
  let work: string;
  before(async () => {
    if (!present(['redis-server', 'redis-cli'])) return;
    redis = await startRedis();
    work = await mkdtemp(join(tmpdir(), 'planb-probe-'));
    // Values RDB's LZF cannot shrink much (hex digests), so that the RDB is of the dataset's size.
    await redis.cli('EVAL', "for i = 1, 10000 do local v = {} for j = 1, 25 do v[j] = redis.sha1hex(i .. ':' .. j) end redis.call('SET', 'key:' .. i, table.concat(v)) end return 1", '0');
  });
  after(async () => {
    await redis?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('INFO memory is of the order of the RDB', async (t) => {
    if (!requireBinaries(t, ['redis-server', 'redis-cli'])) return;
    const db = dbConfig({ type: 'redis', host: redis.host, port: redis.port, password: redis.password });
    const estimate = await runProbe(ENGINES.redis.size(db), probeOptions(db));
    const rdb = join(work, 'dump.rdb');
    execFileSync('redis-cli', ['-h', redis.host, '-p', String(redis.port), '--rdb', rdb], { env: { ...process.env, REDISCLI_AUTH: redis.password }, stdio: 'ignore' });
    const actual = (await stat(rdb)).size;
    assert.ok(actual > 1 * MB, `an RDB of ${actual} bytes`);
    assertSameOrder(t, estimate, actual, 'used_memory_dataset');
  });
});

describe('sqlite', () => {
  test('page_count × page_size is the file size exactly', async (t) => {
    if (!requireBinaries(t, ['sqlite3'])) return;
    const work = await mkdtemp(join(tmpdir(), 'planb-probe-'));
    try {
      const file = join(work, 'app.db');
      execFileSync('sqlite3', [file, "CREATE TABLE t (v TEXT); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) INSERT INTO t SELECT hex(randomblob(100)) FROM n;"]);
      const db = dbConfig({ type: 'sqlite', name: file });
      assert.equal(await runProbe(ENGINES.sqlite.size(db), probeOptions(db)), (await stat(file)).size);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
});
