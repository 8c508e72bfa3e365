import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { loadConfig, secretVariables } from '../../src/config.ts';
import { ConfigError } from '../../src/errors.ts';

const minimal = { DB_TYPE: 'postgres', DB_NAME: 'shop', STORAGE_TYPE: 'local', STORAGE_BUCKET: '/backups', PATH: '/usr/bin' };
const SECRET = 'whsec_' + Buffer.alloc(32, 7).toString('base64');
// Public keys made by age-keygen.
const RECIPIENT_A = 'age12v4gxrjtaee9u3zfyer59d6zulr8xejzv9k5aeffa046hqga5cnqzwnxpn';
const RECIPIENT_B = 'age1njes9wynw565w4utszncle6daj2ya89tp487ehsr92zslghf6ynq30nh5z';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return [...error.problems];
  }
  assert.fail('expected a ConfigError');
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'planb-config-'));
});
after(() => rm(dir, { recursive: true, force: true }));

describe('loadConfig', () => {
  test('postgres is an alias of postgresql and the port defaults per type', () => {
    const config = loadConfig(minimal);
    assert.equal(config.db.type, 'postgresql');
    assert.equal(config.db.port, 5432);
    assert.equal(config.backup.compression, 'zstd');
    assert.equal(config.callback, undefined);
    assert.deepEqual(config.toolEnv, { PATH: '/usr/bin' });
  });

  test('BACKUP_PATH becomes a folder prefix, and cannot escape the bucket', () => {
    assert.equal(loadConfig({ ...minimal, BACKUP_PATH: 'daily' }).backup.prefix, 'daily/');
    assert.equal(loadConfig({ ...minimal, BACKUP_PATH: 'a/b/' }).backup.prefix, 'a/b/');
    assert.match(problemsOf({ ...minimal, BACKUP_PATH: '../etc' })[0] ?? '', /BACKUP_PATH/);
    assert.match(problemsOf({ ...minimal, BACKUP_PATH: '/abs' })[0] ?? '', /BACKUP_PATH/);
  });

  test('every bad or missing variable is named in one error', () => {
    const problems = problemsOf({ DB_TYPE: 'mysql', DB_PORT: '70000', STORAGE_TYPE: 'ftp', BACKUP_COMPRESSION: 'lz4', BACKUP_TIMEOUT: 'later', CALLBACK_SECRET: 'nope', CALLBACK_URL: 'https://cp.example/hook' });
    for (const name of ['DB_PORT', 'STORAGE_TYPE', 'STORAGE_BUCKET', 'BACKUP_COMPRESSION', 'BACKUP_TIMEOUT', 'DB_NAME', 'CALLBACK_SECRET']) {
      assert.ok(problems.some((p) => p.startsWith(name)), `${name} in ${JSON.stringify(problems)}`);
    }
  });

  test('a secret comes from X_FILE with its trailing newline stripped', async () => {
    const file = join(dir, 'pw');
    await writeFile(file, 'from-file\n');
    assert.equal(loadConfig({ ...minimal, DB_PASSWORD_FILE: file }).db.password, 'from-file');
  });

  test('X and X_FILE together, or an unreadable X_FILE, are errors that never echo the secret', () => {
    const problems = problemsOf({ ...minimal, DB_PASSWORD: 'hunter2-secret', DB_PASSWORD_FILE: '/nonexistent/pw', CALLBACK_URL: 'https://cp/h', CALLBACK_SECRET_FILE: '/nonexistent/cb' });
    assert.deepEqual(problems, ['DB_PASSWORD and DB_PASSWORD_FILE are both set; set only one', 'CALLBACK_SECRET_FILE: cannot read /nonexistent/cb (ENOENT)', 'CALLBACK_SECRET (or CALLBACK_SECRET_FILE) is required when CALLBACK_URL is set']);
  });

  test('only allow-listed secrets may come from a file', () => {
    assert.ok(secretVariables().includes('DB_PASSWORD'));
    assert.ok(secretVariables().includes('CALLBACK_SECRET'));
    const config = loadConfig({ ...minimal, DB_NAME_FILE: '/etc/passwd' });
    assert.equal(config.db.name, 'shop', 'DB_NAME_FILE is not read');
  });

  test('callback secrets are Standard Webhooks secrets, several allowed for rotation', () => {
    const config = loadConfig({ ...minimal, CALLBACK_URL: 'https://cp/h', CALLBACK_SECRET: `${SECRET} ${SECRET.replace('Bw', 'Cw')}` });
    assert.equal(config.callback?.secrets.length, 2);
    assert.match(problemsOf({ ...minimal, CALLBACK_URL: 'https://cp/h', CALLBACK_SECRET: 'whsec_c2hvcnQ=' })[0] ?? '', /at least 24 bytes/);
  });

  test('secret values are collected for scrubbing', () => {
    const config = loadConfig({ ...minimal, DB_PASSWORD: 'pw-123456789', CALLBACK_URL: 'https://cp/h', CALLBACK_SECRET: SECRET });
    assert.ok(config.secrets.includes('pw-123456789'));
    assert.ok(config.secrets.includes(SECRET));
  });

  test('the platform context is read from Cloud Run and downward-API variables', () => {
    const config = loadConfig({ ...minimal, CLOUD_RUN_JOB: 'j', CLOUD_RUN_EXECUTION: 'j-abc', CLOUD_RUN_TASK_ATTEMPT: '1', K8S_POD_NAME: 'p', K8S_JOB_NAME: 'b' });
    assert.deepEqual(config.platform.cloudRun, { job: 'j', execution: 'j-abc', taskIndex: undefined, taskAttempt: 1 });
    assert.deepEqual(config.platform.kubernetes, { namespace: undefined, pod: 'p', job: 'b' });
  });

  test('durations and sizes accept human units', () => {
    const config = loadConfig({ ...minimal, BACKUP_TIMEOUT: '1h30m', BACKUP_EXPECTED_SIZE: '50GiB' });
    assert.equal(config.backup.timeoutMs, 5_400_000);
    assert.equal(config.backup.expectedSize, 50 * 1024 ** 3);
  });

  test('durations stay within what a timer can hold, and the stall timeout has a default', () => {
    assert.equal(loadConfig({ ...minimal, BACKUP_TIMEOUT: `${2 ** 31 - 1}ms` }).backup.timeoutMs, 2 ** 31 - 1);
    assert.match(problemsOf({ ...minimal, BACKUP_TIMEOUT: `${2 ** 31}ms` })[0] ?? '', /^BACKUP_TIMEOUT: ".*" is longer than 24 days/);
    assert.match(problemsOf({ ...minimal, CALLBACK_URL: 'https://cp/h', CALLBACK_SECRET: SECRET, CALLBACK_TIMEOUT: '30d' })[0] ?? '', /^CALLBACK_TIMEOUT/);
    assert.equal(loadConfig(minimal).backup.stallTimeoutMs, 300_000);
    assert.match(problemsOf({ ...minimal, BACKUP_STALL_TIMEOUT: '6h1s' })[0] ?? '', /^BACKUP_STALL_TIMEOUT: "6h1s" is longer than 6h/);
  });

  test('an unknown variable with our prefixes is a warning naming the closest known one', () => {
    const config = loadConfig({ ...minimal, BACKUP_TIMOUT: '5m', CALLBACK_HEADER: '{}', DB_PASWORD_FILE: '/x', HOME: '/root', AWS_REGION: 'x' });
    assert.deepEqual(config.warnings, [
      'BACKUP_TIMOUT is not a variable Plan B reads (ignored); did you mean BACKUP_TIMEOUT?',
      'CALLBACK_HEADER is not a variable Plan B reads (ignored); did you mean CALLBACK_HEADERS?',
      'DB_PASWORD_FILE is not a variable Plan B reads (ignored); did you mean DB_PASSWORD_FILE?',
    ]);
    // Every target's own variables and every X_FILE are known, whichever target runs.
    assert.deepEqual(loadConfig({ ...minimal, STORAGE_S3_SSE: 'AES256', AZURE_STORAGE_KEY_FILE: '', GCS_CREDENTIALS_JSON_FILE: '', JOB_COMPLETION_INDEX: '0' }).warnings, []);
  });

  test('the lines of a multi-line secret are collected for scrubbing line by line', () => {
    // MariaDB takes a line break in a password (an escaped option-file value); PostgreSQL's file cannot.
    const config = loadConfig({ ...minimal, DB_TYPE: 'mariadb', DB_PASSWORD: 'first-line\nsecond' });
    assert.ok(config.secrets.includes('first-line\nsecond'));
    assert.ok(config.secrets.includes('first-line'));
    assert.ok(config.secrets.includes('second'));
  });
});

const fanOutBase = { DB_TYPE: 'postgres', STORAGE_TYPE: 'local', STORAGE_BUCKET: '/backups', PATH: '/usr/bin' };

describe('DB_NAMES configuration', () => {
  test('a comma-separated list and a JSON array give the same names, trimmed and unique', () => {
    const fromCommas = loadConfig({ ...fanOutBase, DB_NAMES: ' shop , crm,shop,billing ' }).databases;
    const fromJson = loadConfig({ ...fanOutBase, DB_NAMES: '["shop", "crm", "billing"]' }).databases;
    assert.deepEqual(fromCommas?.names, ['shop', 'crm', 'billing']);
    assert.deepEqual(fromJson?.names, ['shop', 'crm', 'billing']);
    assert.deepEqual(fromCommas?.task, { index: 0, count: 1 }, 'one task takes everything');
    assert.equal(loadConfig({ ...fanOutBase, DB_NAMES: 'shop' }).db.name, undefined, 'each run gets its own name');
  });

  test('* asks the server, DB_EXCLUDE drops names, and without DB_NAMES nothing changes', () => {
    const config = loadConfig({ ...fanOutBase, DB_NAMES: '*', DB_EXCLUDE: 'postgres, scratch' });
    assert.equal(config.databases?.names, '*');
    assert.deepEqual(config.databases?.exclude, ['postgres', 'scratch']);
    assert.equal(loadConfig({ ...fanOutBase, DB_NAME: 'shop' }).databases, undefined);
  });

  test('DB_NAMES excludes DB_NAME and DB_ALL_DATABASES, and DB_EXCLUDE needs DB_NAMES', () => {
    const problems = problemsOf({ ...fanOutBase, DB_NAMES: 'a,b', DB_NAME: 'a', DB_ALL_DATABASES: 'true' });
    assert.ok(problems.some((p) => /DB_NAMES and DB_NAME exclude each other/.test(p)), problems.join('\n'));
    assert.ok(problems.some((p) => /DB_NAMES and DB_ALL_DATABASES=true exclude each other/.test(p)), problems.join('\n'));
    assert.match(problemsOf({ ...fanOutBase, DB_NAME: 'a', DB_EXCLUDE: 'b' }).join('\n'), /DB_EXCLUDE applies only with DB_NAMES/);
  });

  test('bad lists are named: an empty name, a broken JSON array, * mixed with names', () => {
    assert.match(problemsOf({ ...fanOutBase, DB_NAMES: 'a,,b' }).join('\n'), /DB_NAMES: .*empty name/);
    assert.match(problemsOf({ ...fanOutBase, DB_NAMES: '["a", 1]' }).join('\n'), /DB_NAMES: .*JSON array of strings/);
    assert.match(problemsOf({ ...fanOutBase, DB_NAMES: '[a' }).join('\n'), /DB_NAMES: .*not a valid JSON array/);
    assert.match(problemsOf({ ...fanOutBase, DB_NAMES: '*,shop' }).join('\n'), /stands alone/);
    assert.match(problemsOf({ ...fanOutBase, DB_NAMES: 'shop,-x' }).join('\n'), /starts with "-"/, 'every listed name gets the DB_NAME checks');
  });

  test('redis and etcd refuse DB_NAMES (one snapshot holds everything); sqlite takes files but cannot list them; arangodb, cassandra and mssql list theirs', () => {
    assert.match(problemsOf({ ...fanOutBase, DB_TYPE: 'redis', DB_HOST: 'cache', DB_NAMES: '0,1' }).join('\n'), /DB_NAMES does not apply to redis: an RDB snapshot always holds every database/);
    assert.match(problemsOf({ ...fanOutBase, DB_TYPE: 'etcd', DB_HOST: 'etcd', DB_NAMES: '*' }).join('\n'), /DB_NAMES does not apply to etcd: a snapshot always holds the whole keyspace/);
    for (const type of ['arangodb', 'cassandra', 'mssql']) assert.equal(loadConfig({ ...fanOutBase, DB_TYPE: type, DB_HOST: 'h', DB_NAMES: '*' }).db.type, type, `${type} lists its databases`);
    assert.deepEqual(loadConfig({ ...fanOutBase, DB_TYPE: 'sqlite', DB_NAMES: '/data/a.db,/data/b.db' }).databases?.names, ['/data/a.db', '/data/b.db']);
    assert.match(problemsOf({ ...fanOutBase, DB_TYPE: 'sqlite', DB_NAMES: '*' }).join('\n'), /DB_NAMES=\* does not apply to sqlite/);
  });

  test('the engine still checks the rest of DB_* once, with DB_NAMES standing in for DB_NAME', () => {
    const problems = problemsOf({ ...fanOutBase, DB_TYPE: 'mongodb', DB_NAMES: 'a,b,c' });
    assert.deepEqual(problems, ['DB_HOST is required for mongodb']);
  });
});

describe('task split configuration', () => {
  test('Cloud Run task index and count, or a Kubernetes completion index and the count the manifest passes', () => {
    assert.deepEqual(loadConfig({ ...fanOutBase, DB_NAMES: '*', CLOUD_RUN_TASK_INDEX: '2', CLOUD_RUN_TASK_COUNT: '3' }).databases?.task, { index: 2, count: 3 });
    assert.deepEqual(loadConfig({ ...fanOutBase, DB_NAMES: '*', JOB_COMPLETION_INDEX: '1', JOB_COMPLETION_COUNT: '4' }).databases?.task, { index: 1, count: 4 });
  });

  test('an index outside the count, half a pair or both platforms at once are configuration errors', () => {
    assert.match(problemsOf({ ...fanOutBase, DB_NAMES: '*', CLOUD_RUN_TASK_INDEX: '3', CLOUD_RUN_TASK_COUNT: '3' }).join('\n'), /CLOUD_RUN_TASK_INDEX: 3 is not below CLOUD_RUN_TASK_COUNT \(3\)/);
    assert.match(problemsOf({ ...fanOutBase, DB_NAMES: '*', JOB_COMPLETION_INDEX: '0' }).join('\n'), /JOB_COMPLETION_INDEX is set without JOB_COMPLETION_COUNT/);
    assert.match(problemsOf({ ...fanOutBase, DB_NAMES: '*', JOB_COMPLETION_COUNT: '2' }).join('\n'), /JOB_COMPLETION_COUNT is set without JOB_COMPLETION_INDEX/);
    assert.match(problemsOf({ ...fanOutBase, DB_NAMES: '*', JOB_COMPLETION_INDEX: '0', JOB_COMPLETION_COUNT: '0' }).join('\n'), /JOB_COMPLETION_COUNT: 0 is not a whole number of tasks/);
    assert.match(problemsOf({ ...fanOutBase, DB_NAMES: '*', JOB_COMPLETION_INDEX: '1.5', JOB_COMPLETION_COUNT: '3' }).join('\n'), /JOB_COMPLETION_INDEX: 1.5 is not a task position/);
    const both = { CLOUD_RUN_TASK_INDEX: '0', CLOUD_RUN_TASK_COUNT: '2', JOB_COMPLETION_INDEX: '0', JOB_COMPLETION_COUNT: '2' };
    assert.match(problemsOf({ ...fanOutBase, DB_NAMES: '*', ...both }).join('\n'), /both set/);
  });

  test('a one-database run ignores the task variables, as before', () => {
    assert.equal(loadConfig({ ...fanOutBase, DB_NAME: 'shop', JOB_COMPLETION_INDEX: '3' }).databases, undefined);
  });
});

describe('encryption and retention settings', () => {
  test('BACKUP_ENCRYPTION_RECIPIENTS takes age public keys separated by spaces or newlines, with # comments', () => {
    const config = loadConfig({ ...minimal, BACKUP_ENCRYPTION_RECIPIENTS: `${RECIPIENT_A}\n# the escrow key\n  ${RECIPIENT_B} ${RECIPIENT_A}\n` });
    assert.deepEqual(config.backup.encryption, { recipients: [RECIPIENT_A, RECIPIENT_B] });
    assert.equal(loadConfig(minimal).backup.encryption, undefined);
    assert.ok(!config.secrets.includes(RECIPIENT_A), 'public keys are not scrubbed: the log names them');
  });

  test('BACKUP_ENCRYPTION_RECIPIENTS_FILE is read like a secret file', async () => {
    const file = join(dir, 'recipients.txt');
    await writeFile(file, `# backups\n${RECIPIENT_B}\n`);
    assert.deepEqual(loadConfig({ ...minimal, BACKUP_ENCRYPTION_RECIPIENTS_FILE: file }).backup.encryption, { recipients: [RECIPIENT_B] });
    const empty = join(dir, 'empty.txt');
    await writeFile(empty, '# nobody yet\n');
    assert.deepEqual(problemsOf({ ...minimal, BACKUP_ENCRYPTION_RECIPIENTS_FILE: empty }), ['BACKUP_ENCRYPTION_RECIPIENTS_FILE is set but names no age public key (age1…)']);
  });

  test('a recipient that is not an age public key is a config error naming the variable, never echoing a secret key', () => {
    const typo = RECIPIENT_A.slice(0, -1) + (RECIPIENT_A.endsWith('4') ? '5' : '4');
    const secretKey = 'AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ';
    const problems = problemsOf({ ...minimal, BACKUP_ENCRYPTION_RECIPIENTS: `${RECIPIENT_A} ${typo} ssh-ed25519 ${secretKey}`, STORAGE_RETAIN_DAYS: 'ten' });
    assert.equal(problems.filter((p) => p.startsWith('BACKUP_ENCRYPTION_RECIPIENTS: ')).length, 3, JSON.stringify(problems));
    assert.ok(problems.some((p) => p.includes('entry #2') && p.includes('not an age X25519 public key')));
    assert.ok(problems.some((p) => p.includes('entry #4') && p.includes('SECRET key')));
    assert.ok(problems.some((p) => p.startsWith('STORAGE_RETAIN_DAYS')), 'other problems are reported at the same time');
    assert.ok(!problems.join('\n').includes(secretKey.slice(16)), 'the secret key is not echoed');
  });

  test('STORAGE_RETAIN_DAYS locks objects on s3, gcs and azure, governance by default; a local folder cannot', () => {
    const s3 = { ...minimal, STORAGE_TYPE: 's3', STORAGE_BUCKET: 'b', STORAGE_REGION: 'eu-west-1' };
    assert.deepEqual(loadConfig({ ...s3, STORAGE_RETAIN_DAYS: '14' }).storage.retention, { days: 14, mode: 'governance' });
    assert.deepEqual(loadConfig({ ...s3, STORAGE_RETAIN_DAYS: '30', STORAGE_RETAIN_MODE: 'COMPLIANCE' }).storage.retention, { days: 30, mode: 'compliance' });
    assert.equal(loadConfig(s3).storage.retention, undefined);
    assert.match(problemsOf({ ...minimal, STORAGE_RETAIN_DAYS: '14' })[0] ?? '', /STORAGE_RETAIN_DAYS: STORAGE_TYPE=local has no write-once retention/);
    assert.deepEqual(problemsOf({ ...s3, STORAGE_RETAIN_MODE: 'compliance' }), ['STORAGE_RETAIN_MODE needs STORAGE_RETAIN_DAYS']);
    assert.match(problemsOf({ ...s3, STORAGE_RETAIN_DAYS: '0' })[0] ?? '', /STORAGE_RETAIN_DAYS: 0 is outside/);
    assert.match(problemsOf({ ...s3, STORAGE_RETAIN_DAYS: '7', STORAGE_RETAIN_MODE: 'legal-hold' })[0] ?? '', /STORAGE_RETAIN_MODE/);
  });
});
