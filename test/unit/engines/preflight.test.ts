// The engines' preflights decide from what the tools answer; here the answers are given, so every
// rule is pinned without a server (test/e2e/completeness.test.ts asks real ones).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sqlite } from '../../../src/engines/sqlite.ts';
import { ENGINES } from '../../../src/engines/registry.ts';
import type { DbConfig, DumpCommand, PreflightContext, ToolAnswer } from '../../../src/engines/types.ts';

const SECRET = 'pre-flight-secret';

function db(overrides: Partial<DbConfig>): DbConfig {
  return { type: 'mariadb', host: '10.0.0.5', port: 3306, name: 'shop', username: 'backup', password: SECRET, tls: undefined, tlsCaFile: undefined, allDatabases: false, extraArgs: [], sqliteQuickCheck: true, ...overrides };
}

// A context whose tools answer `answer` and whose files start with `head`; records what was asked.
function context(answer: ToolAnswer, head: Buffer | string = Buffer.alloc(0), clients = ['/usr/bin/mariadb']) {
  const asked: DumpCommand[] = [];
  const skipped: string[] = [];
  const value: PreflightContext = {
    secretsDir: '/tmp/planb-x',
    tool: '/usr/bin/tool',
    compression: 'zstd',
    ask: (command) => {
      asked.push(command);
      return Promise.resolve(answer);
    },
    readHead: () => Promise.resolve(head),
    which: (names) => clients.find((client) => names.some((name) => client.endsWith(`/${name}`))),
    skipped: (reason) => skipped.push(reason),
  };
  return { value, asked, skipped };
}

const rows = (...pairs: [string, string][]) => ({ exitCode: 0, stdout: pairs.map((pair) => pair.join('\t')).join('\n'), stderr: '' });

describe('mysql/mariadb privileges', () => {
  const preflight = (config: DbConfig, ctx: PreflightContext) => {
    const engine = ENGINES.mariadb;
    if (!engine.preflight) throw new Error('mariadb has a preflight');
    return engine.preflight(config, ctx);
  };

  test('asks with the password in an option file given first, over TCP, never in argv', async () => {
    const ctx = context(rows(['SELECT', '*'], ['TRIGGER', '*'], ['EVENT', '*']));
    assert.equal(await preflight(db({}), ctx.value), undefined);
    const [command] = ctx.asked;
    assert.equal(command?.args[0], '--defaults-extra-file=/tmp/planb-x/preflight.cnf');
    assert.ok(command?.args.includes('--protocol=TCP'));
    assert.ok(!command?.args.join(' ').includes(SECRET));
    assert.match(command?.files[0]?.content ?? '', new RegExp(`password="${SECRET}"`));
  });

  test('SELECT on the dumped database alone does not show routine bodies', async () => {
    const problem = await preflight(db({}), context(rows(['SELECT', 'shop'], ['TRIGGER', 'shop'], ['EVENT', 'shop'])).value);
    assert.equal(problem?.kind, 'auth');
    assert.match(problem?.message ?? '', /lacks SELECT on mysql\.proc .*\(for --routines\) on shop/);
    assert.doesNotMatch(problem?.message ?? '', /--triggers|--events\)/);
  });

  test('each way of seeing routines is enough', async () => {
    for (const grant of [['SELECT', 'mysql.proc'], ['SELECT', 'mysql'], ['SHOW CREATE ROUTINE', 'shop'], ['SHOW_ROUTINE', '*']] as [string, string][]) {
      assert.equal(await preflight(db({}), context(rows(grant, ['TRIGGER', 'shop'], ['EVENT', 'shop'])).value), undefined, grant.join(' on '));
    }
  });

  test('every missing privilege is named, with the option that leaves its objects out', async () => {
    const problem = await preflight(db({}), context(rows(['SELECT', 'shop'])).value);
    assert.match(problem?.message ?? '', /--routines.*TRIGGER \(for --triggers\).*EVENT \(for --events\)/);
    assert.match(problem?.message ?? '', /--skip-routines --skip-triggers --skip-events to DB_EXTRA_ARGS/);
  });

  test('objects skipped on purpose need no privilege', async () => {
    const config = db({ extraArgs: ['--skip-routines', '--skip-triggers', '--skip-events'] });
    assert.equal(await preflight(config, context(rows(['SELECT', 'shop'])).value), undefined);
  });

  test('all databases need the privileges globally', async () => {
    const problem = await preflight(db({ name: undefined, allDatabases: true }), context(rows(['SELECT', 'mysql'], ['TRIGGER', 'shop'], ['EVENT', 'shop'])).value);
    assert.match(problem?.message ?? '', /TRIGGER \(for --triggers\), EVENT \(for --events\) on \*\.\*/);
  });

  test('a refused login is an auth problem, an absent server an unreachable one', async () => {
    const denied = await preflight(db({}), context({ exitCode: 1, stdout: '', stderr: "ERROR 1045 (28000): Access denied for user 'backup'" }).value);
    assert.equal(denied?.kind, 'auth');
    const away = await preflight(db({}), context({ exitCode: 1, stdout: '', stderr: "ERROR 2002 (HY000): Can't connect to server" }).value);
    assert.equal(away?.kind, 'unreachable');
  });

  test('without a client in the image the preflight is skipped, and says so', async () => {
    const ctx = context(rows(), Buffer.alloc(0), []);
    assert.equal(await preflight(db({}), ctx.value), undefined);
    assert.equal(ctx.asked.length, 0);
    assert.match(ctx.skipped[0] ?? '', /no mariadb or mysql client/);
  });
});

describe('sqlite file and quick_check', () => {
  const preflight = (config: DbConfig, ctx: PreflightContext) => sqlite.preflight(config, ctx);
  const header = Buffer.from('SQLite format 3\0', 'latin1');
  const sqliteDb = (overrides: Partial<DbConfig> = {}) => db({ type: 'sqlite', host: undefined, name: '/data/app.db', password: undefined, ...overrides });

  test('a database whose quick_check answers ok passes, asked read-only with the busy timeout', async () => {
    const ctx = context({ exitCode: 0, stdout: 'ok\n', stderr: '' }, header);
    assert.equal(await preflight(sqliteDb(), ctx.value), undefined);
    assert.deepEqual(ctx.asked[0]?.args, ['-bail', '-readonly', '-cmd', '.timeout 30000', '/data/app.db', 'PRAGMA quick_check;']);
  });

  test('a file without the SQLite header, or an empty one, is not a database', async () => {
    for (const head of [Buffer.from('hello, world....'), Buffer.alloc(0)]) {
      const problem = await preflight(sqliteDb(), context({ exitCode: 0, stdout: 'ok', stderr: '' }, head).value);
      assert.match(problem?.message ?? '', /is not an SQLite database/);
    }
  });

  test('a missing file is unreachable, an unreadable one refused', async () => {
    assert.equal((await preflight(sqliteDb(), context(rows(), 'ENOENT').value))?.kind, 'unreachable');
    assert.equal((await preflight(sqliteDb(), context(rows(), 'EACCES').value))?.kind, 'auth');
  });

  test('quick_check findings fail the run; DB_SQLITE_QUICK_CHECK=false skips it', async () => {
    const damaged = { exitCode: 0, stdout: '*** in database main ***\nOn tree page 51 cell 35: Rowid 16256 out of order\n', stderr: '' };
    assert.match((await preflight(sqliteDb(), context(damaged, header).value))?.message ?? '', /quick_check on \/data\/app\.db failed: \*\*\* in database main \*\*\*; On tree page 51/);
    const ctx = context(damaged, header);
    assert.equal(await preflight(sqliteDb({ sqliteQuickCheck: false }), ctx.value), undefined);
    assert.equal(ctx.asked.length, 0);
  });
});
