// Every engine's command is pure: these tests pin the exact argv, and check that no secret is in it.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ENGINES } from '../../../src/engines/registry.ts';
import type { DbConfig } from '../../../src/engines/types.ts';

const SECRET = 'S3cr:et\\"pw';
const dir = '/tmp/planb-abc123';

function db(overrides: Partial<DbConfig>): DbConfig {
  return {
    type: 'postgresql',
    host: 'db.internal',
    port: 5432,
    name: 'shop',
    username: 'backup',
    password: SECRET,
    tls: undefined,
    tlsCaFile: undefined,
    allDatabases: false,
    extraArgs: [],
    sqliteQuickCheck: true,
    ...overrides,
  };
}

function assertNoSecret(args: readonly string[]): void {
  assert.ok(!args.join(' ').includes(SECRET), 'the password is not in argv');
}

describe('postgresql', () => {
  test('pg_dump writes custom format uncompressed when the pipeline compresses, password in a PGPASSFILE', () => {
    const command = ENGINES.postgresql.command(db({}), { secretsDir: dir, tool: '/usr/bin/pg_dump', compression: 'zstd' });
    assert.equal(command.file, '/usr/bin/pg_dump');
    assert.deepEqual(command.args, ['--no-password', '--host=db.internal', '--port=5432', '--username=backup', '--format=custom', '--compress=0', '--dbname=shop']);
    assert.equal(command.env.PGPASSFILE, `${dir}/pgpass`);
    assert.deepEqual(command.files, [{ path: `${dir}/pgpass`, content: '*:*:*:*:S3cr\\:et\\\\"pw\n' }]);
    assertNoSecret(command.args);
    assert.ok(!Object.values(command.env).includes(SECRET), 'not PGPASSWORD either');
  });

  test('pg_dump keeps its own compression when the pipeline does not compress', () => {
    const command = ENGINES.postgresql.command(db({}), { secretsDir: dir, tool: 'pg_dump', compression: 'none' });
    assert.ok(!command.args.includes('--compress=0'));
  });

  test('all databases use pg_dumpall, plain SQL, and DB_TLS becomes PGSSLMODE', () => {
    const config = db({ allDatabases: true, name: undefined, tls: 'verify-full', tlsCaFile: '/ca.pem', extraArgs: ['--no-owner'] });
    assert.deepEqual(ENGINES.postgresql.tools(config), ['pg_dumpall']);
    assert.equal(ENGINES.postgresql.extension(config), '.sql');
    const command = ENGINES.postgresql.command(config, { secretsDir: dir, tool: 'pg_dumpall', compression: 'zstd' });
    assert.deepEqual(command.args, ['--no-password', '--host=db.internal', '--port=5432', '--username=backup', '--clean', '--if-exists', '--no-owner']);
    assert.equal(command.env.PGSSLMODE, 'verify-full');
    assert.equal(command.env.PGSSLROOTCERT, '/ca.pem');
  });

  test('a database name is required unless all databases are dumped', () => {
    assert.deepEqual(ENGINES.postgresql.validate(db({})), []);
    assert.equal(ENGINES.postgresql.validate(db({ name: undefined })).length, 1);
  });

  test('stderr is read as unreachable, auth or other failure', () => {
    assert.equal(ENGINES.postgresql.classify('pg_dump: error: connection to server at "127.0.0.1", port 1 failed: Connection refused'), 'unreachable');
    assert.equal(ENGINES.postgresql.classify('FATAL:  password authentication failed for user "backup"'), 'auth');
    assert.equal(ENGINES.postgresql.classify('pg_dump: error: query failed: ERROR:  out of memory'), 'failed');
  });
});

describe('mysql and mariadb', () => {
  test('mysql passes the password in an option file given first, not in argv', () => {
    const command = ENGINES.mysql.command(db({ type: 'mysql', port: 3306 }), { secretsDir: dir, tool: 'mysqldump', compression: 'zstd' });
    assert.deepEqual(command.args, [
      `--defaults-extra-file=${dir}/my.cnf`,
      '--host=db.internal',
      '--protocol=TCP',
      '--port=3306',
      '--user=backup',
      '--single-transaction',
      '--quick',
      '--routines',
      '--triggers',
      '--events',
      '--hex-blob',
      '--default-character-set=utf8mb4',
      '--',
      'shop',
    ]);
    assert.deepEqual(command.files, [{ path: `${dir}/my.cnf`, content: '[client]\npassword="S3cr:et\\\\\\"pw"\n' }]);
    assertNoSecret(command.args);
  });

  test('mariadb prefers mariadb-dump and speaks MariaDB TLS options', () => {
    const config = db({ type: 'mariadb', tls: 'verify-full', allDatabases: true, name: undefined });
    assert.deepEqual(ENGINES.mariadb.tools(config), ['mariadb-dump', 'mysqldump']);
    const command = ENGINES.mariadb.command(config, { secretsDir: dir, tool: 'mariadb-dump', compression: 'zstd' });
    assert.ok(command.args.includes('--ssl') && command.args.includes('--ssl-verify-server-cert'));
    assert.equal(command.args.at(-1), '--all-databases');
  });

  test('mysql maps DB_TLS onto --ssl-mode', () => {
    const command = ENGINES.mysql.command(db({ type: 'mysql', tls: 'verify-ca' }), { secretsDir: dir, tool: 'mysqldump', compression: 'zstd' });
    assert.ok(command.args.includes('--ssl-mode=VERIFY_CA'));
  });

  test('access denied is auth, cannot connect is unreachable', () => {
    assert.equal(ENGINES.mysql.classify("mysqldump: Got error: 1045: \"Access denied for user 'backup'@'localhost'\""), 'auth');
    assert.equal(ENGINES.mariadb.classify("mariadb-dump: Got error: 2002: \"Can't connect to server on '127.0.0.1' (115)\""), 'unreachable');
  });

  test('a password with a line break and quotes stays one quoted, escaped option-file value', () => {
    const command = ENGINES.mariadb.command(db({ type: 'mariadb', password: 'a\nuser=root\'"\\' }), { secretsDir: dir, tool: 'mariadb-dump', compression: 'zstd' });
    assert.equal(command.files[0]?.content, '[client]\npassword="a\\nuser=root\\\'\\"\\\\"\n');
    assert.deepEqual(ENGINES.mariadb.validate(db({ type: 'mariadb', password: 'a\0b' })), ['DB_PASSWORD holds a NUL character, which no tool can be given']);
  });
});

describe('requests no retry can fix', () => {
  // What the real tools print (pg_dump 15, mariadb-dump 10.11, redis-cli 7, sqlite3 3.40).
  test('a missing database or an unknown option is invalid, for every engine', () => {
    assert.equal(ENGINES.postgresql.classify('pg_dump: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  database "nope" does not exist'), 'invalid');
    assert.equal(ENGINES.postgresql.classify("/usr/lib/postgresql/15/bin/pg_dump: unrecognized option '--frobnicate'"), 'invalid');
    assert.equal(ENGINES.mysql.classify("mysqldump: Got error: 1049: \"Unknown database 'nope'\" when selecting the database"), 'invalid');
    assert.equal(ENGINES.mariadb.classify("mariadb-dump: unknown option '--frobnicate'"), 'invalid');
    assert.equal(ENGINES.redis.classify("Unrecognized option or bad number of args for: '--frobnicate'"), 'invalid');
    assert.equal(ENGINES.sqlite.classify('sqlite3: Error: unknown option: -frobnicate'), 'invalid');
    assert.equal(ENGINES.mongodb.classify('error parsing command line options: unknown option "frobnicate"'), 'invalid');
  });
});

describe('redis', () => {
  test('redis-cli streams the RDB to stdout with the password in REDISCLI_AUTH', () => {
    const command = ENGINES.redis.command(db({ type: 'redis', port: 6379, name: undefined, username: undefined }), { secretsDir: dir, tool: 'redis-cli', compression: 'zstd' });
    assert.deepEqual(command.args, ['-h', 'db.internal', '-p', '6379', '--rdb', '-']);
    assert.deepEqual(command.env, { REDISCLI_AUTH: SECRET });
    assert.deepEqual(command.files, []);
    assertNoSecret(command.args);
  });

  test('a DB_HOST that is a path reaches the server on its unix socket', () => {
    const command = ENGINES.redis.command(db({ type: 'redis', host: '/run/redis/redis.sock', name: '1', username: undefined }), { secretsDir: dir, tool: 'redis-cli', compression: 'zstd' });
    assert.deepEqual(command.args, ['-s', '/run/redis/redis.sock', '-n', '1', '--rdb', '-']);
  });

  test('redis needs a host and takes only a numeric database index', () => {
    assert.deepEqual(ENGINES.redis.validate(db({ type: 'redis', name: '2' })), []);
    assert.equal(ENGINES.redis.validate(db({ type: 'redis', name: 'shop', host: undefined })).length, 2);
  });
});

describe('sqlite', () => {
  test('sqlite3 dumps read-only, so a missing file fails instead of creating an empty database', () => {
    const command = ENGINES.sqlite.command(db({ type: 'sqlite', name: '/data/app.db', host: undefined, port: undefined }), { secretsDir: dir, tool: 'sqlite3', compression: 'zstd' });
    assert.deepEqual(command.args, ['-bail', '-readonly', '-cmd', '.timeout 30000', '/data/app.db', '.dump']);
  });
});

describe('mongodb', () => {
  test('mongodump writes an archive to stdout with the password in a --config file', () => {
    const command = ENGINES.mongodb.command(db({ type: 'mongodb', port: 27017 }), { secretsDir: dir, tool: 'mongodump', compression: 'zstd' });
    assert.deepEqual(command.args, [`--config=${dir}/mongodump.yaml`, '--host=db.internal', '--port=27017', '--username=backup', '--db=shop', '--archive']);
    assert.deepEqual(command.files, [{ path: `${dir}/mongodump.yaml`, content: `password: ${JSON.stringify(SECRET)}\n` }]);
    assertNoSecret(command.args);
  });
});

test('every engine names a dump tool, a restore tool and an extension', () => {
  for (const [type, engine] of Object.entries(ENGINES)) {
    const config = db({ type: type as DbConfig['type'] });
    assert.ok(engine.tools(config).length > 0, type);
    assert.ok(engine.restoreTool, type);
    assert.match(engine.extension(config), /^\.[a-z]+$/, type);
  }
});
