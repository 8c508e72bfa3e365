// The engines whose tool cannot write to stdout (etcd, arangodb, cassandra, mssql): their commands are
// pure too; these tests pin the argv of every spool step and of the streaming command, check that no
// secret is in any argv, and check etcd's completeness mark on real and damaged snapshots.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parseTableNames } from '../../../src/engines/cassandra.ts';
import { snapshotHashCheck } from '../../../src/engines/etcd.ts';
import { bakHeadCheck } from '../../../src/engines/mssql.ts';
import { tarEndCheck } from '../../../src/engines/spooled.ts';
import { ENGINES } from '../../../src/engines/registry.ts';
import type { DbConfig, DumpCommand, SpoolStep } from '../../../src/engines/types.ts';

const SECRET = 'S3cr:et\\"pw';
const dir = '/tmp/planb-abc123';

function db(overrides: Partial<DbConfig>): DbConfig {
  return {
    type: 'etcd', host: 'db.internal', port: undefined, name: undefined, username: 'backup', password: SECRET,
    tls: undefined, tlsCaFile: undefined, allDatabases: false, extraArgs: [], sqliteQuickCheck: false, ...overrides,
  };
}

// Every argv the command would run: the spool's steps (and what a `then` derives from `listing`), then the stream.
function allArgs(command: DumpCommand, listing = ''): string[][] {
  const expand = (steps: readonly SpoolStep[]): string[][] => steps.flatMap((step) => [[step.file, ...step.args], ...(step.then ? expand(step.then(listing)) : [])]);
  return [...expand(command.spool?.steps ?? []), [command.file, ...command.args]];
}

function assertNoSecret(command: DumpCommand, listing = ''): void {
  for (const argv of allArgs(command, listing)) assert.ok(!argv.join(' ').includes(SECRET), `the password is not in argv: ${argv.join(' ')}`);
}

describe('etcd', () => {
  test('etcdctl saves the snapshot into the private directory with the user and password in its env, and cat streams it', () => {
    const command = ENGINES.etcd.command(db({ port: 2379 }), { secretsDir: dir, tool: '/usr/bin/etcdctl', compression: 'zstd' });
    assert.deepEqual(command.spool, {
      path: `${dir}/snapshot.db`,
      kind: 'file',
      steps: [{
        file: '/usr/bin/etcdctl',
        args: ['--endpoints=http://db.internal:2379', '--dial-timeout=10s', '--command-timeout=24h', 'snapshot', 'save', `${dir}/snapshot.db`],
        env: { ETCDCTL_API: '3', ETCDCTL_USER: 'backup', ETCDCTL_PASSWORD: SECRET },
      }],
    });
    assert.deepEqual([command.file, ...command.args], ['cat', `${dir}/snapshot.db`]);
    assert.deepEqual(command.files, []);
    assertNoSecret(command);
  });

  test('DB_TLS makes the endpoint https; require skips verification, a CA file is passed on', () => {
    const args = (tls: DbConfig['tls'], tlsCaFile?: string) => ENGINES.etcd.command(db({ tls, tlsCaFile, host: '::1' }), { secretsDir: dir, tool: 'etcdctl', compression: 'zstd' }).spool?.steps[0]?.args ?? [];
    assert.equal(args('require')[0], '--endpoints=https://[::1]:2379');
    assert.ok(args('require').includes('--insecure-skip-tls-verify=true'));
    assert.ok(args('verify-full', '/ca.pem').includes('--cacert=/ca.pem'));
    assert.ok(!args('verify-full').includes('--insecure-skip-tls-verify=true'));
  });

  test('etcd takes no database name, needs a host, and a user needs a password (etcdctl would prompt)', () => {
    assert.deepEqual(ENGINES.etcd.validate(db({})), []);
    assert.deepEqual(ENGINES.etcd.validate(db({ username: undefined, password: undefined })), []);
    assert.equal(ENGINES.etcd.validate(db({ name: 'x', allDatabases: true, host: undefined })).length, 3);
    assert.match(ENGINES.etcd.validate(db({ password: undefined })).join(), /DB_PASSWORD/);
    assert.match(ENGINES.etcd.validate(db({ username: undefined })).join(), /DB_USERNAME/);
  });

  test('etcd failures are classified from etcdctl’s messages', () => {
    assert.equal(ENGINES.etcd.classify('Error: etcdserver: authentication failed, invalid user ID or password'), 'auth');
    assert.equal(ENGINES.etcd.classify('Error: context deadline exceeded'), 'unreachable');
    assert.equal(ENGINES.etcd.classify('Error: snapshot missing hash but --skip-hash-check=false'), 'failed');
  });

  // A snapshot as the server sends it: bolt pages, then the SHA-256 of those pages.
  const pages = Buffer.alloc(4096 * 3, 7);
  pages.write('bolt page data', 100);
  const good = Buffer.concat([pages, createHash('sha256').update(pages).digest()]);
  const verdict = (bytes: Buffer, chunk: number) => {
    const check = snapshotHashCheck();
    for (let at = 0; at < bytes.length; at += chunk) check.write(bytes.subarray(at, at + chunk));
    return check.verdict();
  };

  test('a whole snapshot passes the hash check, fed whole or in pieces of any size', () => {
    for (const chunk of [1, 7, 31, 32, 33, 4096, good.length]) assert.equal(verdict(good, chunk), undefined, `chunks of ${chunk}`);
  });

  test('a truncated, hashless or altered snapshot fails the hash check', () => {
    assert.match(verdict(good.subarray(0, good.length - 1), 100) ?? '', /truncated/);
    assert.match(verdict(pages, 100) ?? '', /without its hash/);
    const altered = Buffer.from(good);
    altered.writeUInt8((altered.readUInt8(5000) ^ 1), 5000);
    assert.match(verdict(altered, 1000) ?? '', /does not match/);
    assert.match(verdict(Buffer.alloc(0), 1) ?? '', /0 bytes/);
  });
});

describe('arangodb', () => {
  test('arangodump writes a directory in the private one, the password in its --configuration file, and tar streams it', () => {
    const command = ENGINES.arangodb.command(db({ type: 'arangodb', name: 'shop', port: 8529 }), { secretsDir: dir, tool: '/usr/bin/arangodump', compression: 'zstd' });
    assert.deepEqual(command.spool?.steps, [{
      file: '/usr/bin/arangodump',
      args: [`--configuration=${dir}/arangodump.conf`, '--server.endpoint=tcp://db.internal:8529', '--server.username=backup', '--server.database=shop', '--compress-output=false', `--output-directory=${dir}/dump`, '--overwrite=true'],
      env: {},
    }]);
    assert.equal(command.spool?.kind, 'directory');
    assert.deepEqual([command.file, ...command.args], ['tar', '-cf', '-', '-C', `${dir}/dump`, '.']);
    assert.deepEqual(command.files, [{ path: `${dir}/arangodump.conf`, content: `[server]\npassword = ${SECRET}\n` }]);
    assertNoSecret(command);
  });

  test('all databases, TLS and no password: --all-databases, an ssl endpoint, and an empty password instead of a prompt', () => {
    const command = ENGINES.arangodb.command(db({ type: 'arangodb', allDatabases: true, tls: 'require', password: undefined }), { secretsDir: dir, tool: 'arangodump', compression: 'zstd' });
    const args = command.spool?.steps[0]?.args ?? [];
    assert.ok(args.includes('--all-databases=true') && args.includes('--server.endpoint=ssl://db.internal:8529'));
    assert.equal(command.files[0]?.content, '[server]\npassword = \n');
  });

  test('arangodb refuses what its tool cannot do or its configuration file would change', () => {
    assert.deepEqual(ENGINES.arangodb.validate(db({ type: 'arangodb', name: 'shop' })), []);
    assert.equal(ENGINES.arangodb.validate(db({ type: 'arangodb', name: undefined })).length, 1);
    assert.match(ENGINES.arangodb.validate(db({ type: 'arangodb', name: 'shop', tls: 'verify-full' })).join(), /does not verify/);
    for (const password of ['a\nb', ' lead', 'x@HOME@y']) assert.equal(ENGINES.arangodb.validate(db({ type: 'arangodb', name: 'shop', password })).length, 1, JSON.stringify(password));
  });
});

describe('cassandra', () => {
  const listing = '\n table_name\n------------\n     orders\n  customers\n\n(2 rows)\n';

  test('cqlsh writes the schema, lists the tables and exports each one as CSV, the credentials in a cqlshrc', () => {
    const command = ENGINES.cassandra.command(db({ type: 'cassandra', name: 'shop' }), { secretsDir: dir, tool: '/usr/bin/cqlsh', compression: 'zstd' });
    const common = [`--cqlshrc=${dir}/cqlshrc`, '--connect-timeout=30', '--request-timeout=120'];
    assert.deepEqual(allArgs(command, listing), [
      ['/usr/bin/cqlsh', ...common, '-e', 'DESCRIBE KEYSPACE "shop"', 'db.internal', '9042'],
      ['/usr/bin/cqlsh', ...common, '-e', "SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'shop'", 'db.internal', '9042'],
      ['/usr/bin/cqlsh', ...common, '-e', `COPY "shop"."orders" TO '${dir}/dump/orders.csv' WITH HEADER = true`, 'db.internal', '9042'],
      ['/usr/bin/cqlsh', ...common, '-e', `COPY "shop"."customers" TO '${dir}/dump/customers.csv' WITH HEADER = true`, 'db.internal', '9042'],
      ['tar', '-cf', '-', '-C', `${dir}/dump`, '.'],
    ]);
    assert.equal(command.spool?.steps[0]?.stdoutTo, `${dir}/dump/schema.cql`);
    assert.deepEqual(command.files, [{ path: `${dir}/cqlshrc`, content: `[authentication]\nusername = backup\npassword = ${SECRET}\n` }]);
    assertNoSecret(command, listing);
  });

  test('quotes in names are escaped, and TLS settings go to the cqlshrc', () => {
    const command = ENGINES.cassandra.command(db({ type: 'cassandra', name: `o'"k`, tls: 'verify-full', tlsCaFile: '/ca.pem' }), { secretsDir: dir, tool: 'cqlsh', compression: 'zstd' });
    const [schema, list] = command.spool?.steps ?? [];
    assert.ok(schema?.args.includes('--ssl'));
    assert.ok(schema?.args.includes(`DESCRIBE KEYSPACE "o'""k"`));
    assert.ok(list?.args.includes(`SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'o''"k'`));
    assert.match(command.files[0]?.content ?? '', /\[ssl\]\nvalidate = true\ncertfile = \/ca\.pem\n/);
  });

  test('the table list is read from cqlsh’s printout, and a printout it cannot read is an error, not a skipped table', () => {
    assert.deepEqual(parseTableNames(listing), ['orders', 'customers']);
    assert.deepEqual(parseTableNames('\n table_name\n------------\n\n(0 rows)\n'), []);
    assert.throws(() => parseTableNames(''), /not understood/);
    assert.throws(() => parseTableNames('\n table_name\n------------\n a\n\n(2 rows)\n'), /said 2 tables but listed 1/);
    assert.throws(() => parseTableNames('\n table_name\n------------\n ../x\n\n(1 rows)\n'), /not a Cassandra table name/);
  });

  test('cassandra needs a keyspace and one per job', () => {
    assert.deepEqual(ENGINES.cassandra.validate(db({ type: 'cassandra', name: 'shop' })), []);
    assert.equal(ENGINES.cassandra.validate(db({ type: 'cassandra', allDatabases: true })).length, 2);
    assert.equal(ENGINES.cassandra.validate(db({ type: 'cassandra', name: 'shop', password: 'a\nb' })).length, 1);
  });
});

describe('mssql', () => {
  test('sqlcmd has the server back up into the private directory with a checksum, verifies it, and cat streams it; the password in SQLCMDPASSWORD', () => {
    const command = ENGINES.mssql.command(db({ type: 'mssql', name: "sh]o'p", port: 1433 }), { secretsDir: dir, tool: '/opt/mssql-tools18/bin/sqlcmd', compression: 'zstd' });
    const base = ['-S', 'tcp:db.internal,1433', '-U', 'backup', '-l', '30', '-b', '-d', 'master'];
    assert.deepEqual(command.spool?.steps, [
      { file: '/opt/mssql-tools18/bin/sqlcmd', args: [...base, '-Q', `BACKUP DATABASE [sh]]o'p] TO DISK = N'${dir}/backup.bak' WITH COPY_ONLY, CHECKSUM, FORMAT, INIT`], env: { SQLCMDPASSWORD: SECRET } },
      { file: '/opt/mssql-tools18/bin/sqlcmd', args: [...base, '-Q', `RESTORE VERIFYONLY FROM DISK = N'${dir}/backup.bak' WITH CHECKSUM`], env: { SQLCMDPASSWORD: SECRET } },
    ]);
    assert.deepEqual([command.file, ...command.args], ['cat', `${dir}/backup.bak`]);
    assertNoSecret(command);
  });

  test('DB_TLS maps onto sqlcmd’s encryption flags', () => {
    const args = (tls: DbConfig['tls']) => ENGINES.mssql.command(db({ type: 'mssql', name: 'shop', tls }), { secretsDir: dir, tool: 'sqlcmd', compression: 'zstd' }).spool?.steps[0]?.args ?? [];
    assert.ok(args('disable').join(' ').includes('-N o'));
    assert.ok(args('require').includes('-C'));
    assert.ok(!args('verify-full').includes('-C') && !args('verify-full').includes('-N'));
  });

  test('mssql needs one database and no CA file', () => {
    assert.deepEqual(ENGINES.mssql.validate(db({ type: 'mssql', name: 'shop' })), []);
    assert.equal(ENGINES.mssql.validate(db({ type: 'mssql', allDatabases: true, tlsCaFile: '/ca.pem' })).length, 3);
  });
});

describe('completeness marks of the disk-writing engines', () => {
  const feed = (check: { write(chunk: Buffer): void; verdict(): string | undefined }, bytes: Buffer, chunk: number) => {
    for (let at = 0; at < bytes.length; at += chunk) check.write(bytes.subarray(at, at + chunk));
    return check.verdict();
  };

  test('a tar archive made by tar passes, fed in pieces; cut anywhere, it fails', () => {
    const folder = mkdtempSync(join(tmpdir(), 'planb-tar-'));
    try {
      writeFileSync(join(folder, 'a.csv'), 'id,name\n1,Zoë\n'.repeat(500));
      writeFileSync(join(folder, 'schema.cql'), 'CREATE TABLE t (id int PRIMARY KEY);\n');
      const tar = execFileSync('tar', ['-cf', '-', '-C', folder, '.']);
      for (const chunk of [1, 100, 512, 10_240, tar.length]) assert.equal(feed(tarEndCheck(), tar, chunk), undefined, `chunks of ${chunk}`);
      // A cut inside the zero padding after the end loses nothing and cannot be seen; these lose data.
      for (const cut of [tar.length - 1, 4096, 600, 0]) assert.match(feed(tarEndCheck(), tar.subarray(0, cut), 333) ?? '', /truncated/, `cut at ${cut}`);
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  test('a SQL Server backup must start with its TAPE block', () => {
    const bak = Buffer.concat([Buffer.from('TAPE', 'latin1'), Buffer.alloc(4096, 1)]);
    assert.equal(feed(bakHeadCheck(), bak, 1), undefined);
    assert.equal(feed(bakHeadCheck(), bak, 4096), undefined);
    assert.match(feed(bakHeadCheck(), Buffer.from('<html>'), 2) ?? '', /TAPE/);
    assert.match(feed(bakHeadCheck(), Buffer.alloc(0), 1) ?? '', /TAPE/);
  });
});
