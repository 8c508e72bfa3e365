import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { findBinary, postgresBinDirs, requireBinaries } from '../support/require-binary.ts';
import { startMariadb, startPostgres, startRedis, type TestServer } from '../support/servers.ts';

const POSTGRES_BINARIES = ['initdb', 'postgres', 'psql', 'setpriv'] as const;
const MARIADB_BINARIES = ['mariadbd', 'mariadb-install-db', 'mariadb', 'setpriv'] as const;
const REDIS_BINARIES = ['redis-server', 'redis-cli'] as const;
const SERVERS_MODULE = fileURLToPath(new URL('../support/servers.ts', import.meta.url));
const NODE = process.execPath;

// Living (not zombie) processes from /proc: a killed server's orphans may wait a while for init to reap them.
function livingProcesses(): { pid: number; pgrp: number }[] {
  const found: { pid: number; pgrp: number }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue; // exited while we listed
      throw error;
    }
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (state !== 'Z' && state !== 'X') found.push({ pid: Number(entry), pgrp: Number(pgrp) });
  }
  return found;
}

function isRunning(pid: number): boolean {
  return livingProcesses().some((process) => process.pid === pid);
}

// True while any process of the server's group (the postmaster's backends, say) is alive.
function groupIsRunning(pid: number): boolean {
  return livingProcesses().some((process) => process.pgrp === pid);
}

async function assertGone(server: TestServer): Promise<void> {
  await server.stop();
  assert.equal(groupIsRunning(server.pid), false, `a process of server ${server.pid} is still running`);
  assert.equal(existsSync(server.tempDir), false, `${server.tempDir} was not removed`);
}

// Waits for a condition a child process or the kernel brings about on its own time.
async function eventually(condition: () => boolean, what: string): Promise<void> {
  for (let waited = 0; waited < 10_000; waited += 50) {
    if (condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`timed out waiting until ${what}`);
}

// Runs body with CI set or unset, restoring the variable afterwards.
async function withCi<T>(value: string | undefined, body: () => T): Promise<T> {
  const saved = process.env.CI;
  if (value === undefined) delete process.env.CI;
  else process.env.CI = value;
  try {
    return await body();
  } finally {
    if (saved === undefined) delete process.env.CI;
    else process.env.CI = saved;
  }
}

await test('requireBinaries skips loudly without CI and fails under CI', async () => {
  const skips: string[] = [];
  const context = { skip: (message: string) => skips.push(message) } as unknown as TestContext;
  assert.equal(await withCi(undefined, () => requireBinaries(context, ['sh', 'planb-no-such-binary'])), false);
  assert.match(skips.join(), /missing: planb-no-such-binary/);
  await withCi('true', () => assert.throws(() => requireBinaries(context, ['planb-no-such-binary']), /planb-no-such-binary/));
  assert.equal(await withCi('true', () => requireBinaries(context, ['sh'])), true);
  assert.equal(skips.length, 1);
});

await test('findBinary finds PostgreSQL server tools off PATH, in their versioned directory', (t) => {
  const [newest] = postgresBinDirs();
  if (newest === undefined || !existsSync(join(newest, 'initdb'))) {
    if (process.env.CI) assert.fail('no /usr/lib/postgresql/<major>/bin/initdb (CI is set)');
    t.skip('missing: /usr/lib/postgresql/<major>/bin/initdb');
    return;
  }
  const saved = process.env.PATH;
  process.env.PATH = '/nonexistent';
  try {
    assert.equal(findBinary('initdb'), join(newest, 'initdb'));
    assert.equal(findBinary('planb-no-such-binary'), undefined);
  } finally {
    process.env.PATH = saved;
  }
});

await test('postgres starts on 127.0.0.1, demands its password and leaves nothing behind', async (t) => {
  if (!requireBinaries(t, POSTGRES_BINARIES)) return;
  const server = await startPostgres();
  t.after(() => server.stop());

  await t.test('the superuser connects over TCP with the password', async () => {
    assert.equal(await server.sql('SELECT current_user'), 'postgres');
    assert.equal(await server.sql('SHOW listen_addresses'), '127.0.0.1');
    assert.equal(await server.sql('SHOW unix_socket_directories'), '');
  });

  await t.test('a wrong password is refused', async () => {
    const result = await execa(join(server.binDir, 'psql'), ['-X', '-w', '-h', server.host, '-p', String(server.port), '-U', server.user, '-d', 'postgres', '-c', 'SELECT 1'], {
      env: { PATH: process.env.PATH ?? '', PGPASSWORD: 'not-the-password' }, extendEnv: false, reject: false,
    });
    assert.notEqual(result.exitCode, 0);
    assert.match(result.stderr, /password authentication failed/);
  });

  await t.test('createDatabase makes a database that sql can use', async () => {
    await server.createDatabase('with "quotes"');
    await server.sql('CREATE TABLE t (v text); INSERT INTO t VALUES ($$hello$$)', 'with "quotes"');
    assert.equal(await server.sql('SELECT v FROM t', 'with "quotes"'), 'hello');
  });

  await t.test('stop leaves no process and no temp dir', async () => {
    await assertGone(server);
  });
});

await test('postgres killed mid-query breaks the client and stop still cleans up', async (t) => {
  if (!requireBinaries(t, POSTGRES_BINARIES)) return;
  const server = await startPostgres();
  t.after(() => server.stop());
  const shmId = readFileSync(join(server.dataDir, 'postmaster.pid'), 'utf8').split('\n')[6]?.trim().split(/\s+/)[1];
  const query = server.sql('SELECT pg_sleep(30)');
  const running = "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'";
  while ((await server.sql(running)) !== '1') await new Promise((resolve) => setTimeout(resolve, 50));

  const broken = assert.rejects(query, /server closed the connection unexpectedly|connection to server was lost/);
  await server.kill();
  await broken;
  assert.equal(groupIsRunning(server.pid), false, 'a backend outlived the SIGKILLed postmaster');
  await assertGone(server);
  if (shmId !== undefined) {
    const { stdout } = await execa('ipcs', ['-m', '-i', shmId], { reject: false });
    assert.doesNotMatch(stdout, /shmid=/, `shared memory segment ${shmId} leaked`);
  }
});

await test('mariadb starts on 127.0.0.1, demands its password and leaves nothing behind', async (t) => {
  if (!requireBinaries(t, MARIADB_BINARIES)) return;
  const server = await startMariadb();
  t.after(() => server.stop());
  const tryLogin = async (user: string, password: string | undefined) => {
    const config = join(server.tempDir, `try-${user}.cnf`);
    await writeFile(config, `[client]\nuser=${user}\n${password === undefined ? '' : `password=${password}\n`}`, { mode: 0o600 });
    return execa('mariadb', [`--defaults-file=${config}`, '--protocol=TCP', '-h', server.host, '-P', String(server.port), '--batch', '--skip-column-names', '-e', 'SELECT CURRENT_USER()'], { reject: false });
  };

  await t.test('the test user and root connect over TCP with the password', async () => {
    assert.equal(await server.sql('SELECT CURRENT_USER()'), 'planb@127.0.0.1');
    assert.equal(await server.sql('SELECT @@bind_address'), '127.0.0.1');
    assert.equal((await tryLogin('root', server.password)).stdout, 'root@127.0.0.1');
  });

  await t.test('a wrong or missing password is refused', async () => {
    for (const [user, password] of [['planb', 'not-the-password'], ['root', 'not-the-password'], ['root', undefined], ['planb', undefined]] as const) {
      const result = await tryLogin(user, password);
      assert.notEqual(result.exitCode, 0, `${user} got in with password ${String(password)}`);
      assert.match(result.stderr, /Access denied/);
    }
  });

  await t.test('createDatabase makes a database that sql can use', async () => {
    await server.createDatabase('with`backtick');
    await server.sql("CREATE TABLE t (v text); INSERT INTO t VALUES ('hello')", 'with`backtick');
    assert.equal(await server.sql('SELECT v FROM t', 'with`backtick'), 'hello');
  });

  await t.test('stop leaves no process and no temp dir', async () => {
    await assertGone(server);
  });
});

await test('redis starts on 127.0.0.1, demands its password and keeps no data of its own', async (t) => {
  if (!requireBinaries(t, REDIS_BINARIES)) return;
  const server = await startRedis();
  t.after(() => server.stop());

  await t.test('cli authenticates with the password', async () => {
    assert.equal(await server.cli('SET', 'greeting', 'hello'), 'OK');
    assert.equal(await server.cli('GET', 'greeting'), 'hello');
    assert.equal(await server.cli('CONFIG', 'GET', 'bind'), 'bind\n127.0.0.1');
    assert.equal(await server.cli('CONFIG', 'GET', 'save'), 'save\n');
  });

  await t.test('a wrong or missing password is refused', async () => {
    for (const auth of [{ REDISCLI_AUTH: 'not-the-password' }, {}]) {
      const result = await execa('redis-cli', ['-e', '-h', server.host, '-p', String(server.port), 'GET', 'greeting'], {
        env: { PATH: process.env.PATH ?? '', ...auth }, extendEnv: false, reject: false,
      });
      assert.notEqual(result.exitCode, 0);
      assert.doesNotMatch(result.stdout, /hello/);
      assert.match(result.stderr, /WRONGPASS|NOAUTH/);
    }
  });

  await t.test('cli rejects on an error reply', async () => {
    await assert.rejects(server.cli('NO-SUCH-COMMAND'), /unknown command/);
  });

  await t.test('stop leaves no process and no temp dir', async () => {
    await assertGone(server);
  });
});

await test('redis restores an RDB from a given dir and leaves that file untouched', async (t) => {
  if (!requireBinaries(t, REDIS_BINARIES)) return;
  const backupDir = await mkdtemp(join(tmpdir(), 'planb-rdb-'));
  t.after(() => rm(backupDir, { recursive: true, force: true }));
  const source = await startRedis();
  t.after(() => source.stop());
  await source.cli('SET', 'kept', 'across restore');
  await source.cli('SAVE');
  await copyFile(join(source.dataDir, 'dump.rdb'), join(backupDir, 'backup.rdb'));
  await source.stop();
  const before = await readFile(join(backupDir, 'backup.rdb'));

  const restored = await startRedis({ dir: backupDir, dbfilename: 'backup.rdb' });
  t.after(() => restored.stop());
  assert.equal(await restored.cli('GET', 'kept'), 'across restore');
  await restored.cli('SET', 'new', 'value');
  await assertGone(restored);
  assert.deepEqual(await readFile(join(backupDir, 'backup.rdb')), before);
});

await test('servers of every kind start side by side on distinct ports', async (t) => {
  if (!requireBinaries(t, [...POSTGRES_BINARIES, ...MARIADB_BINARIES, ...REDIS_BINARIES])) return;
  const started = await Promise.allSettled([startPostgres(), startPostgres(), startMariadb(), startMariadb(), startRedis(), startRedis()]);
  const servers = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  t.after(() => Promise.all(servers.map((server) => server.stop())));
  for (const result of started) if (result.status === 'rejected') throw result.reason;

  assert.equal(new Set(servers.map((server) => server.port)).size, servers.length);
  assert.equal(new Set(servers.map((server) => server.tempDir)).size, servers.length);
  for (const server of servers) await assertGone(server);
});

await test('a test process that exits without stop() takes its server and temp dir with it', async (t) => {
  if (!requireBinaries(t, REDIS_BINARIES)) return;
  const script = `const { startRedis } = await import(${JSON.stringify(SERVERS_MODULE)});
const server = await startRedis();
console.log(JSON.stringify({ pid: server.pid, tempDir: server.tempDir }));`;
  const child = await execa(NODE, ['--input-type=module', '-e', script]);
  const { pid, tempDir } = JSON.parse(child.stdout) as { pid: number; tempDir: string };
  await eventually(() => !isRunning(pid), `redis ${pid} is gone`);
  assert.equal(existsSync(tempDir), false, `${tempDir} was left behind`);
});

await test('a test process killed with SIGKILL still takes its server with it', async (t) => {
  if (!requireBinaries(t, [...REDIS_BINARIES, 'setpriv'])) return;
  const script = `const { startRedis } = await import(${JSON.stringify(SERVERS_MODULE)});
const server = await startRedis();
console.log(JSON.stringify({ pid: server.pid, tempDir: server.tempDir }));
setInterval(() => {}, 1000);`;
  const child = execa(NODE, ['--input-type=module', '-e', script], { reject: false, buffer: false, lines: false });
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString()));
    child.once('exit', () => reject(new Error('the child exited before it started redis')));
  });
  const { pid, tempDir } = JSON.parse(line) as { pid: number; tempDir: string };
  t.after(() => rm(tempDir, { recursive: true, force: true })); // no hook runs on SIGKILL: the dir is ours to remove
  child.kill('SIGKILL');
  await child;
  await eventually(() => !isRunning(pid), `redis ${pid} is gone`);
});
