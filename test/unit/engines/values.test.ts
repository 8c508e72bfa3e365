// Values that reach a tool's argv or option file are refused at configuration when they could become
// an option, a connection string or a second option-file line; messages never quote the value.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DB_TYPES, ENGINES } from '../../../src/engines/registry.ts';
import type { DbConfig, DbType } from '../../../src/engines/types.ts';


function db(type: DbType, overrides: Partial<DbConfig>): DbConfig {
  // Redis takes a database index; an etcd snapshot has no database name.
  const name = type === 'redis' ? '0' : type === 'etcd' ? undefined : 'shop';
  return { type, host: 'db.internal', port: 1, name, username: 'backup', password: 'ok', tls: undefined, tlsCaFile: undefined, allDatabases: false, extraArgs: [], sqliteQuickCheck: true, ...overrides };
}

const BAD: [string, Partial<DbConfig>, RegExp][] = [
  ['a host that starts with -', { host: '--socket=/tmp/other.sock' }, /DB_HOST starts with "-"/],
  ['a host with =', { host: 'host=evil dbname=x' }, /DB_HOST contains "="/],
  ['a host that is a URI', { host: 'mongodb://evil.example' }, /DB_HOST is a URI/],
  ['a user that starts with -', { username: '-hevil' }, /DB_USERNAME starts with "-"/],
  ['a password with a NUL', { password: 'evil\0pw' }, /DB_PASSWORD holds a NUL/],
  ['a user with a NUL', { username: 'a\0b' }, /DB_USERNAME contains a newline, carriage return or NUL/],
  ['an extra argument with a newline', { extraArgs: ['--where=1\n2'] }, /DB_EXTRA_ARGS \(item 1\) contains a newline/],
];

for (const type of DB_TYPES) {
  for (const [what, overrides, message] of BAD) {
    test(`${type}: ${what} is a config error naming the variable`, () => {
      const problems = ENGINES[type].validate(db(type, overrides));
      assert.ok(problems.some((p) => message.test(p)), problems.join('\n'));
      assert.ok(!problems.join('\n').includes('evil'), 'the value is not quoted');
    });
  }
  test(`${type}: ordinary values pass`, () => {
    assert.deepEqual(ENGINES[type].validate(db(type, type === 'sqlite' ? { name: '/data/app.db', host: undefined } : {})), []);
  });
}

test('sqlite: a database path that starts with - is refused (the shell would read it as an option)', () => {
  assert.match(ENGINES.sqlite.validate(db('sqlite', { name: '-init' })).join('\n'), /DB_NAME starts with "-"/);
});

test('postgresql: a database name that libpq would read as connection settings is refused', () => {
  for (const name of ['host=evil dbname=shop', 'postgresql://evil/shop', 'postgres://evil/shop']) {
    assert.match(ENGINES.postgresql.validate(db('postgresql', { name })).join('\n'), /DB_NAME looks like a connection string/, name);
  }
});

test('postgresql: formats that cannot be streamed and checked are refused', () => {
  assert.match(ENGINES.postgresql.validate(db('postgresql', { extraArgs: ['--format=directory'] })).join('\n'), /only the custom \(default\) and plain formats/);
  assert.deepEqual(ENGINES.postgresql.validate(db('postgresql', { extraArgs: ['--format=plain'] })), []);
});

test('postgresql: a password with a line break is refused (a password file holds one per line), mariadb escapes it', () => {
  assert.ok(ENGINES.postgresql.validate(db('postgresql', { password: 'pw\nhost=evil.example' })).some((p) => /DB_PASSWORD contains a line break/.test(p)));
  assert.deepEqual(ENGINES.mariadb.validate(db('mariadb', { password: 'pw\nhost=evil.example' })), []);
});
