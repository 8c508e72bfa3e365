// Every engine's probes (the databases DB_NAMES=* stands for, a database's own size) are pure like
// its dump command: these tests pin the argv, check that no secret is in it, and read sample answers.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { arangodb } from '../../../src/engines/arangodb.ts';
import { cassandra } from '../../../src/engines/cassandra.ts';
import { etcd } from '../../../src/engines/etcd.ts';
import { connectionUri, mongodb } from '../../../src/engines/mongodb.ts';
import { mssql } from '../../../src/engines/mssql.ts';
import { postgresql } from '../../../src/engines/postgresql.ts';
import { redis } from '../../../src/engines/redis.ts';
import { ENGINES } from '../../../src/engines/registry.ts';
import type { DbConfig, DumpCommand } from '../../../src/engines/types.ts';

const SECRET = 'S3cr:et\\"pw@/?';
const dir = '/tmp/planb-abc123';

function db(overrides: Partial<DbConfig>): DbConfig {
  return {
    type: 'postgresql', host: 'db.internal', port: 5432, name: 'shop', username: 'backup', password: SECRET,
    tls: undefined, tlsCaFile: undefined, allDatabases: false, extraArgs: [], sqliteQuickCheck: false, ...overrides,
  };
}

function assertNoSecret(command: DumpCommand): void {
  assert.ok(!command.args.join(' ').includes(SECRET), 'the password is not in argv');
  assert.ok(!command.args.join(' ').includes(encodeURIComponent(SECRET)), 'not even encoded');
}

describe('postgresql', () => {
  test('discovery asks pg_database through psql with the same PGPASSFILE as pg_dump, NUL-separated', () => {
    const probe = postgresql.discover(db({ name: undefined }));
    assert.deepEqual(probe.tools, ['psql']);
    const command = probe.command({ secretsDir: dir, tool: '/usr/bin/psql' });
    assert.deepEqual(command.args, [
      '--no-password', '--host=db.internal', '--port=5432', '--username=backup', '--no-psqlrc', '--tuples-only', '--no-align', '--record-separator-zero',
      '--dbname=postgres',
      "--command=SELECT datname FROM pg_database WHERE NOT datistemplate AND datallowconn AND has_database_privilege(datname, 'CONNECT') ORDER BY datname",
    ]);
    assert.equal(command.env.PGPASSFILE, `${dir}/pgpass`);
    assert.deepEqual(command.files, ENGINES.postgresql.command(db({}), { secretsDir: dir, tool: 'pg_dump', compression: 'zstd' }).files);
    assertNoSecret(command);
    assert.deepEqual(probe.parse('app\0my\ndb\0shop\0'), ['app', 'my\ndb', 'shop'], 'a name may hold a newline');
  });

  test('the size is pg_database_size of the database itself, or of all of them for pg_dumpall', () => {
    const probe = ENGINES.postgresql.size(db({}));
    const command = probe.command({ secretsDir: dir, tool: 'psql' });
    assert.ok(command.args.includes('--dbname=shop'));
    assert.ok(command.args.includes('--command=SELECT pg_database_size(current_database())'));
    assert.equal(probe.parse('7654321\0'), 7_654_321);
    assert.throws(() => probe.parse('ERROR\0'), /expected a whole number/);
    const all = ENGINES.postgresql.size(db({ name: undefined, allDatabases: true })).command({ secretsDir: dir, tool: 'psql' });
    assert.ok(all.args.includes('--dbname=postgres'));
    assert.match(all.args.at(-1) ?? '', /sum\(pg_database_size\(datname\)\)/);
  });
});

describe('mysql and mariadb', () => {
  test('discovery is SHOW DATABASES through the client, with the option file first and system databases left out', () => {
    const engine = ENGINES.mariadb;
    assert.ok(engine.discover !== undefined);
    const probe = engine.discover(db({ type: 'mariadb', port: 3306, name: undefined }));
    assert.deepEqual(probe.tools, ['mariadb', 'mysql']);
    const command = probe.command({ secretsDir: dir, tool: '/usr/bin/mariadb' });
    assert.deepEqual(command.args, [
      `--defaults-extra-file=${dir}/my.cnf`, '--host=db.internal', '--protocol=TCP', '--port=3306', '--user=backup',
      '--batch', '--skip-column-names', '--raw', '--execute=SHOW DATABASES',
    ]);
    assert.deepEqual(command.files, [{ path: `${dir}/my.cnf`, content: '[client]\npassword="S3cr:et\\\\\\"pw@/?"\n' }]);
    assertNoSecret(command);
    assert.deepEqual(probe.parse('crm\ninformation_schema\nmysql\nperformance_schema\nshop\nsys\n'), ['crm', 'shop']);
  });

  test('the size sums data_length and index_length of the database, and the Oracle MySQL client gets its own TLS flags', () => {
    const probe = ENGINES.mysql.size(db({ type: 'mysql', port: 3306, tls: 'require' }));
    assert.deepEqual(probe.tools, ['mariadb', 'mysql']);
    const command = probe.command({ secretsDir: dir, tool: '/usr/bin/mysql' });
    assert.ok(command.args.includes('--database=shop'));
    assert.ok(command.args.includes('--ssl-mode=REQUIRED'));
    assert.equal(command.args.at(-1), '--execute=SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables WHERE table_schema = DATABASE()');
    assert.equal(probe.parse('123456\n'), 123_456);
  });
});

describe('redis', () => {
  test('the size is INFO memory with the password in REDISCLI_AUTH, dataset bytes preferred', () => {
    const probe = ENGINES.redis.size(db({ type: 'redis', port: 6379, name: undefined, username: undefined }));
    const command = probe.command({ secretsDir: dir, tool: '/usr/bin/redis-cli' });
    assert.deepEqual(command.args, ['-h', 'db.internal', '-p', '6379', 'INFO', 'memory']);
    assert.deepEqual(command.env, { REDISCLI_AUTH: SECRET });
    assertNoSecret(command);
    assert.equal(probe.parse('# Memory\r\nused_memory:2000000\r\nused_memory_human:1.91M\r\nused_memory_dataset:1500000\r\n'), 1_500_000);
    assert.equal(probe.parse('# Memory\r\nused_memory:2000000\r\n'), 2_000_000);
  });

  test('has no discovery: one RDB snapshot holds every database', () => {
    assert.equal('discover' in redis, false);
    assert.match(redis.namesUnsupported, /same snapshot once per name/);
  });
});

describe('sqlite', () => {
  test('the size is page_count × page_size, read through the read-only shell', () => {
    const probe = ENGINES.sqlite.size(db({ type: 'sqlite', name: '/data/app.db' }));
    const command = probe.command({ secretsDir: dir, tool: 'sqlite3' });
    assert.deepEqual(command.args, ['-bail', '-readonly', '-noheader', '-list', '/data/app.db', 'SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()']);
    assert.equal(probe.parse('8192\n'), 8192);
  });
});

describe('mongodb', () => {
  test('mongosh connects inside its script with a URI from the env, so the password is not in argv', () => {
    const config = db({ type: 'mongodb', port: 27017, name: undefined, tls: 'require', tlsCaFile: '/ca.pem' });
    const probe = mongodb.discover(config);
    const command = probe.command({ secretsDir: dir, tool: '/usr/bin/mongosh' });
    assert.deepEqual(command.args.slice(0, 4), ['--nodb', '--quiet', '--norc', '--eval']);
    assert.match(command.args[4] ?? '', /new Mongo\(process\.env\.PLANB_MONGODB_URI\).*listDatabases: 1, nameOnly: true, authorizedDatabases: true/);
    assert.equal(command.env.PLANB_MONGODB_URI, connectionUri(config));
    assertNoSecret(command);
    assert.deepEqual(probe.parse('admin\nconfig\nlocal\nshop\ncrm\n'), ['shop', 'crm']);
  });

  test('the URI percent-encodes the credentials and carries the TLS settings', () => {
    const uri = connectionUri(db({ type: 'mongodb', port: 27018, tls: 'require', tlsCaFile: '/ca.pem' }));
    assert.equal(uri, `mongodb://backup:${encodeURIComponent(SECRET)}@db.internal:27018/?tls=true&tlsInsecure=true&tlsCAFile=%2Fca.pem`);
    assert.equal(new URL(uri).password, encodeURIComponent(SECRET));
    assert.equal(connectionUri(db({ type: 'mongodb', port: undefined, username: undefined, password: undefined })), 'mongodb://db.internal:27017/');
  });

  test('the size is dbStats dataSize of the database, or listDatabases totalSize for all', () => {
    const one = ENGINES.mongodb.size(db({ type: 'mongodb' }));
    assert.match(one.command({ secretsDir: dir, tool: 'mongosh' }).args[4] ?? '', /getDB\("shop"\)\.stats\(\)\.dataSize/);
    assert.equal(one.parse('Current Mongosh Log ID: x\n4096\n'), 4096);
    const all = ENGINES.mongodb.size(db({ type: 'mongodb', name: undefined, allDatabases: true }));
    assert.match(all.command({ secretsDir: dir, tool: 'mongosh' }).args[4] ?? '', /totalSize/);
  });
});

describe('etcd', () => {
  test('has no DB_NAMES: a snapshot holds the whole keyspace', () => {
    assert.match(etcd.namesUnsupported, /whole keyspace/);
    assert.equal('discover' in ENGINES.etcd, false);
  });

  test('the size is endpoint status dbSize, the user and password in etcdctl’s env', () => {
    const probe = ENGINES.etcd.size(db({ type: 'etcd', port: 2379, name: undefined }));
    assert.deepEqual(probe.tools, ['etcdctl']);
    const command = probe.command({ secretsDir: dir, tool: '/usr/bin/etcdctl' });
    assert.deepEqual(command.args, ['--endpoints=http://db.internal:2379', '--dial-timeout=10s', 'endpoint', 'status', '--write-out=json']);
    assert.deepEqual(command.env, { ETCDCTL_API: '3', ETCDCTL_USER: 'backup', ETCDCTL_PASSWORD: SECRET });
    assertNoSecret(command);
    const answer = '[{"Endpoint":"http://db.internal:2379","Status":{"header":{"revision":2},"version":"3.4.23","dbSize":20480,"dbSizeInUse":16384}}]';
    assert.equal(probe.parse(answer), 20480);
    assert.throws(() => probe.parse('[]'), /no dbSize/);
  });
});

describe('arangodb', () => {
  test('discovery runs arangosh against _system with the password in its configuration file, _system left out', () => {
    const probe = arangodb.discover(db({ type: 'arangodb', port: 8529 }));
    assert.deepEqual(probe.tools, ['arangosh']);
    const command = probe.command({ secretsDir: dir, tool: '/usr/bin/arangosh' });
    assert.deepEqual(command.args, [
      `--configuration=${dir}/arangosh.conf`, '--server.endpoint=tcp://db.internal:8529', '--server.username=backup', '--server.database=_system', '--quiet',
      "--javascript.execute-string=db._databases().filter((name) => name !== '_system').forEach((name) => print(name));",
    ]);
    assert.deepEqual(command.files, [{ path: `${dir}/arangosh.conf`, content: `[server]\npassword = ${SECRET}\n` }]);
    assertNoSecret(command);
    assert.deepEqual(probe.parse('app\nshop\n'), ['app', 'shop']);
  });

  test('the size sums the documents of every collection of the database, or of every database', () => {
    const one = ENGINES.arangodb.size(db({ type: 'arangodb' })).command({ secretsDir: dir, tool: 'arangosh' });
    assert.ok(one.args.includes('--server.database=shop'));
    assert.match(one.args.at(-1) ?? '', /figures\(\)\.documentsSize/);
    const all = ENGINES.arangodb.size(db({ type: 'arangodb', name: undefined, allDatabases: true })).command({ secretsDir: dir, tool: 'arangosh' });
    assert.ok(all.args.includes('--server.database=_system'));
    assert.match(all.args.at(-1) ?? '', /_useDatabase/);
    assert.equal(ENGINES.arangodb.size(db({ type: 'arangodb' })).parse('12345\n'), 12345);
  });
});

describe('cassandra', () => {
  const listing = (rows: string[]) => ` keyspace_name\n---------------\n${rows.map((row) => ` ${row}`).join('\n')}\n\n(${rows.length} rows)\n`;

  test('discovery lists system_schema.keyspaces through cqlsh, credentials in the cqlshrc, system keyspaces left out', () => {
    const probe = cassandra.discover(db({ type: 'cassandra', port: 9042 }));
    assert.deepEqual(probe.tools, ['cqlsh']);
    const command = probe.command({ secretsDir: dir, tool: '/usr/bin/cqlsh' });
    assert.deepEqual(command.args, [`--cqlshrc=${dir}/cqlshrc`, '--connect-timeout=30', '--request-timeout=120', '-e', 'SELECT keyspace_name FROM system_schema.keyspaces', 'db.internal', '9042']);
    assert.deepEqual(command.files, [{ path: `${dir}/cqlshrc`, content: `[authentication]\nusername = backup\npassword = ${SECRET}\n` }]);
    assertNoSecret(command);
    assert.deepEqual(probe.parse(listing(['system', 'shop', 'system_auth', 'app'])), ['shop', 'app']);
    assert.throws(() => probe.parse(' keyspace_name\n------\n shop\n\n(2 rows)\n'), /said 2/);
  });

  test('the size sums partitions × mean partition size from system.size_estimates for the keyspace', () => {
    const probe = ENGINES.cassandra.size(db({ type: 'cassandra', name: "it's" }));
    assert.match(probe.command({ secretsDir: dir, tool: 'cqlsh' }).args.join(' '), /WHERE keyspace_name = 'it''s'/);
    const answer = ' mean_partition_size | partitions_count\n---------------------+------------------\n                 100 |               10\n                  50 |                4\n\n(2 rows)\n';
    assert.equal(probe.parse(answer), 1200);
    assert.equal(probe.parse(' mean_partition_size | partitions_count\n----+----\n\n(0 rows)\n'), 0);
    assert.throws(() => probe.parse('Connection error'), /not understood/);
  });
});

describe('mssql', () => {
  test('discovery reads sys.databases without headers or counts, the password in SQLCMDPASSWORD', () => {
    const probe = mssql.discover(db({ type: 'mssql', port: 1433 }));
    assert.deepEqual(probe.tools, ['sqlcmd']);
    const command = probe.command({ secretsDir: dir, tool: '/opt/mssql-tools18/bin/sqlcmd' });
    assert.deepEqual(command.args, [
      '-S', 'tcp:db.internal,1433', '-U', 'backup', '-l', '30', '-b', '-d', 'master', '-h', '-1', '-W', '-Q',
      "SET NOCOUNT ON; SELECT name FROM sys.databases WHERE database_id > 4 AND state_desc = 'ONLINE' AND HAS_DBACCESS(name) = 1 ORDER BY name",
    ]);
    assert.deepEqual(command.env, { SQLCMDPASSWORD: SECRET });
    assertNoSecret(command);
    assert.deepEqual(probe.parse('app\r\nshop\r\n'), ['app', 'shop']);
  });

  test('the size is the used pages of the database’s allocation units, 8 KiB each', () => {
    const probe = ENGINES.mssql.size(db({ type: 'mssql', name: 'sh]op' }));
    assert.equal(probe.command({ secretsDir: dir, tool: 'sqlcmd' }).args.at(-1), 'SET NOCOUNT ON; SELECT SUM(CAST(used_pages AS bigint)) * 8192 FROM [sh]]op].sys.allocation_units');
    assert.equal(probe.parse('8192000\n'), 8192000);
  });
});
