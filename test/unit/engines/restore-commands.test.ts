// Every restorer's command is pure: these tests pin the exact argv, check that no secret is in it, and
// pin how a key names its format and compression and how JOB_MODE settings are validated.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../../src/config.ts';
import { ConfigError } from '../../../src/errors.ts';
import { parseKeyCount } from '../../../src/engines/etcd.ts';
import { parseKeyspace } from '../../../src/engines/redis.ts';
import { ENGINES } from '../../../src/engines/registry.ts';
import type { DbConfig, RestoreContext } from '../../../src/engines/types.ts';
import { describeKey } from '../../../src/restore.ts';

const SECRET = 'S3cr:et\\"pw';
const dir = '/tmp/planb-abc123';

function db(overrides: Partial<DbConfig>): DbConfig {
  return {
    type: 'postgresql', host: 'db.internal', port: 5432, name: 'shop', username: 'backup', password: SECRET,
    tls: undefined, tlsCaFile: undefined, allDatabases: false, extraArgs: [], sqliteQuickCheck: true, ...overrides,
  };
}

const context = (overrides: Partial<RestoreContext> = {}): RestoreContext => ({ secretsDir: dir, tool: '/usr/bin/tool', format: 'custom', force: false, scratch: false, ...overrides });

function command(database: DbConfig, ctx: RestoreContext) {
  const built = ENGINES[database.type].restorer.command(database, ctx);
  assert.ok(built, 'a command');
  assert.ok(!built.args.join(' ').includes(SECRET), 'the password is not in argv');
  return built;
}

describe('restore commands', () => {
  test('pg_restore loads one database all or nothing, the password in a PGPASSFILE', () => {
    const built = command(db({}), context());
    assert.deepEqual(built.args, ['--no-password', '--host=db.internal', '--port=5432', '--username=backup', '--dbname=shop', '--single-transaction', '--exit-on-error']);
    assert.equal(built.env.PGPASSFILE, `${dir}/pgpass`);
    assert.deepEqual(built.files, [{ path: `${dir}/pgpass`, content: '*:*:*:*:S3cr\\:et\\\\"pw\n' }]);
  });

  test('RESTORE_FORCE makes pg_restore replace what the dump holds; a throw-away server takes no owners or grants', () => {
    assert.deepEqual(command(db({}), context({ force: true })).args.slice(-2), ['--clean', '--if-exists']);
    assert.deepEqual(command(db({}), context({ scratch: true })).args.slice(-2), ['--no-owner', '--no-privileges']);
  });

  test('a pg_dumpall script goes to psql on the postgres database, and only its two expected errors are benign', () => {
    const built = command(db({ allDatabases: true, name: undefined }), context({ format: 'sql' }));
    assert.deepEqual(built.args, ['-X', '-q', '--no-password', '--host=db.internal', '--port=5432', '--username=backup', '--dbname=postgres']);
    const rule = ENGINES.postgresql.restorer.errorLines?.('sql');
    assert.ok(rule);
    const failing = (line: string) => rule.match.test(line) && !rule.benign.test(line);
    assert.equal(failing('psql:<stdin>:14: ERROR:  current user cannot be dropped'), false);
    assert.equal(failing('psql:<stdin>:15: ERROR:  role "postgres" already exists'), false);
    assert.equal(failing('psql:<stdin>:90: ERROR:  relation "orders" already exists'), true);
    assert.equal(failing('NOTICE:  database "shop" does not exist, skipping'), false);
    assert.equal(ENGINES.postgresql.restorer.errorLines?.('custom'), undefined);
  });

  test('mariadb reads the dump in binary mode into DB_NAME, the password in an option file given first', () => {
    const built = command(db({ type: 'mariadb', port: 3306 }), context({ format: 'sql', tool: '/usr/bin/mariadb' }));
    assert.deepEqual(built.args, [
      `--defaults-extra-file=${dir}/my.cnf`, '--host=db.internal', '--protocol=TCP', '--port=3306', '--user=backup',
      '--default-character-set=utf8mb4', '--binary-mode', '--', 'shop',
    ]);
    assert.deepEqual(built.files, [{ path: `${dir}/my.cnf`, content: '[client]\npassword="S3cr:et\\\\\\"pw"\n' }]);
  });

  test('a mysql/mariadb server on a unix socket is reached through --socket', () => {
    const built = command(db({ type: 'mysql', host: '/tmp/x/mysqld.sock', port: undefined, username: 'root', password: undefined }), context({ format: 'sql', tool: '/usr/bin/mysql' }));
    assert.deepEqual(built.args, [`--defaults-extra-file=${dir}/my.cnf`, '--socket=/tmp/x/mysqld.sock', '--user=root', '--default-character-set=utf8mb4', '--binary-mode', '--', 'shop']);
  });

  test('sqlite runs the script with -bail into the given file; redis has no tool: the RDB is the restored file', () => {
    assert.deepEqual(command(db({ type: 'sqlite', name: '/data/.app.db.partial-1', host: undefined }), context({ format: 'sql', tool: 'sqlite3' })).args, ['-bail', '/data/.app.db.partial-1']);
    assert.equal(ENGINES.redis.restorer.command(db({ type: 'redis' }), context({ format: 'rdb' })), undefined);
  });

  test('mongorestore reads the archive from stdin, limited to DB_NAME, the password in its --config file', () => {
    const built = command(db({ type: 'mongodb', port: 27017 }), context({ format: 'archive', tool: '/usr/bin/mongorestore', force: true }));
    assert.deepEqual(built.args, [`--config=${dir}/mongorestore.yaml`, '--host=db.internal', '--port=27017', '--username=backup', '--nsInclude=shop.*', '--drop', '--archive']);
    assert.deepEqual(built.files, [{ path: `${dir}/mongorestore.yaml`, content: `password: ${JSON.stringify(SECRET)}\n` }]);
  });

  test('INFO keyspace becomes keys per database', () => {
    assert.deepEqual(parseKeyspace('# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\ndb3:keys=1,expires=1,avg_ttl=5\r\n'), { db0: 2, db3: 1 });
    assert.deepEqual(parseKeyspace('# Keyspace\r\n'), {});
  });
});

describe('object keys', () => {
  test('the suffixes name the encryption, the compression and the dump format', () => {
    assert.deepEqual(describeKey('daily/postgresql-shop-20261122T043300Z-3f9a1c2e.dump.zst'), { compression: 'zstd', format: 'custom', encrypted: false });
    assert.deepEqual(describeKey('mariadb-shop-20261122T043300Z-3f9a1c2e.sql.gz'), { compression: 'gzip', format: 'sql', encrypted: false });
    assert.deepEqual(describeKey('redis-0-20261122T043300Z-3f9a1c2e.rdb'), { compression: 'none', format: 'rdb', encrypted: false });
    assert.deepEqual(describeKey('sqlite-app-20261122T043300Z-3f9a1c2e.sql.zst.age'), { compression: 'zstd', format: 'sql', encrypted: true });
    assert.deepEqual(describeKey('postgresql-shop-20261122T043300Z-3f9a1c2e.dump.age'), { compression: 'none', format: 'custom', encrypted: true });
    assert.equal(describeKey('x.sql.zst.age.facts.json'), undefined);
    assert.equal(describeKey('x.sql.zst.age.facts.json.age'), undefined);
    assert.equal(describeKey('notes.txt'), undefined);
    assert.equal(describeKey('x.dump.zst.facts.json'), undefined);
  });
});

describe('etcd restore', () => {
  test('the snapshot, written to the private directory first, becomes a new data directory; DB_EXTRA_ARGS name the member', () => {
    const built = command(
      db({ type: 'etcd', port: 2379, name: undefined, extraArgs: ['--name=etcd-0'] }),
      context({ format: 'snapshot', tool: '/usr/local/bin/etcdutl', dumpFile: `${dir}/dump.db`, into: '/var/lib/etcd/new' }),
    );
    assert.deepEqual(built.args, ['snapshot', 'restore', `${dir}/dump.db`, '--data-dir=/var/lib/etcd/new', '--name=etcd-0']);
    assert.deepEqual(built.env, { ETCDCTL_API: '3' }, 'no credentials: the restore never talks to a server');
    assert.equal(ENGINES.etcd.restorer.input, 'file');
    assert.deepEqual(ENGINES.etcd.restorer.tools(db({ type: 'etcd' }), 'snapshot'), ['etcdutl', 'etcdctl']);
  });

  test('keys are counted from the count etcdctl reports for the whole keyspace', () => {
    assert.deepEqual(parseKeyCount('{"header":{"revision":4},"kvs":[{"key":"azE="}],"more":true,"count":3}'), { keys: 3 });
    assert.deepEqual(parseKeyCount('{"header":{"revision":1}}'), { keys: 0 }, 'an empty keyspace has no count field');
    assert.throws(() => parseKeyCount('Error: permission denied'), /could not read/);
  });

  test('a snapshot, a tar and a SQL Server backup are told by their keys', () => {
    assert.deepEqual(describeKey('etcd-etcd-20260101T000000Z-0123abcd.db.zst'), { compression: 'zstd', format: 'snapshot', encrypted: false });
    assert.deepEqual(describeKey('etcd-etcd-20260101T000000Z-0123abcd.db.zst.age'), { compression: 'zstd', format: 'snapshot', encrypted: true });
    assert.deepEqual(describeKey('arangodb-shop-20260101T000000Z-0123abcd.tar.gz'), { compression: 'gzip', format: 'tar', encrypted: false });
    assert.deepEqual(describeKey('mssql-shop-20260101T000000Z-0123abcd.bak'), { compression: 'none', format: 'bak', encrypted: false });
  });
});

describe('JOB_MODE settings', () => {
  const base = { DB_TYPE: 'postgres', DB_NAME: 'shop', STORAGE_TYPE: 'local', STORAGE_BUCKET: '/backups' };
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      return error.problems.join('\n');
    }
    return '';
  };

  test('backup is the default mode, and restore and verify need RESTORE_KEY', () => {
    assert.equal(loadConfig(base).job.mode, 'backup');
    assert.match(problems({ ...base, JOB_MODE: 'restore' }), /RESTORE_KEY is required with JOB_MODE=restore/);
    assert.match(problems({ ...base, JOB_MODE: 'verify' }), /RESTORE_KEY is required with JOB_MODE=verify/);
    assert.equal(loadConfig({ ...base, JOB_MODE: 'restore', RESTORE_KEY: 'latest' }).job.restoreKey, 'latest');
  });

  test('settings that do not apply to the mode are named, all at once', () => {
    const found = problems({ ...base, RESTORE_KEY: 'a.dump', BACKUP_VERIFY: 'true', RESTORE_RDB_PATH: '/x', VERIFY_RUN_AS: '0' });
    assert.match(found, /RESTORE_KEY applies only/);
    assert.match(found, /RESTORE_RDB_PATH applies only/);
    assert.match(found, /VERIFY_RUN_AS must be a non-root uid/);
    assert.match(problems({ ...base, JOB_MODE: 'verify', RESTORE_KEY: '../etc/x.dump' }), /no leading \/ and no \.\. segments/);
    assert.match(problems({ ...base, JOB_MODE: 'restore', RESTORE_KEY: 'a.rdb', DB_TYPE: 'redis', DB_HOST: 'r', DB_NAME: '' }), /RESTORE_RDB_PATH is required to restore redis/);
    assert.match(problems({ ...base, DB_TYPE: 'mongodb', DB_HOST: 'm', BACKUP_VERIFY: 'true' }), /not available for mongodb/);
  });

  test('etcd restores need RESTORE_DATA_DIR, which applies to nothing else', () => {
    const etcd = { DB_TYPE: 'etcd', DB_HOST: 'e', STORAGE_TYPE: 'local', STORAGE_BUCKET: '/backups', JOB_MODE: 'restore', RESTORE_KEY: 'latest' };
    assert.match(problems(etcd), /RESTORE_DATA_DIR is required to restore etcd/);
    assert.equal(loadConfig({ ...etcd, RESTORE_DATA_DIR: '/var/lib/etcd/new' }).job.restoreDataDir, '/var/lib/etcd/new');
    assert.match(problems({ ...base, RESTORE_DATA_DIR: '/x' }), /RESTORE_DATA_DIR applies only to JOB_MODE=restore with DB_TYPE=etcd/);
    assert.equal(loadConfig({ ...etcd, JOB_MODE: 'verify' }).job.mode, 'verify', 'a verification restores into a directory of its own');
  });

  test('arangodb, cassandra and mssql back up only: restore, verify and facts are refused at configuration, each saying why', () => {
    for (const type of ['arangodb', 'cassandra', 'mssql']) {
      const env = { DB_TYPE: type, DB_HOST: 'h', DB_NAME: 'shop', STORAGE_TYPE: 'local', STORAGE_BUCKET: '/backups' };
      assert.equal(problems(env), '', `${type} backs up`);
      assert.match(problems({ ...env, JOB_MODE: 'restore', RESTORE_KEY: 'latest' }), new RegExp(`JOB_MODE=restore is not available for ${type}: .+docs/databases\\.md`));
      assert.match(problems({ ...env, JOB_MODE: 'verify', RESTORE_KEY: 'latest' }), new RegExp(`not available for ${type}: the job has no throw-away`));
      assert.match(problems({ ...env, BACKUP_FACTS: 'true' }), new RegExp(`BACKUP_FACTS are not available for ${type}`));
    }
  });

  test('BACKUP_VERIFY captures the facts, and VERIFY_RUN_AS takes uid or uid:gid', () => {
    const config = loadConfig({ ...base, BACKUP_VERIFY: 'true', VERIFY_RUN_AS: '10001' });
    assert.equal(config.job.captureFacts, true);
    assert.deepEqual(config.job.verifyRunAs, { uid: 10001, gid: 10001 });
    assert.deepEqual(loadConfig({ ...base, VERIFY_RUN_AS: '101:104' }).job.verifyRunAs, { uid: 101, gid: 104 });
  });
});
