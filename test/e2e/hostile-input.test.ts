// Bad and hostile input through the bundled job, one table: bad values for the variables, hostile
// characters in every secret for every engine, URL scheme and header injection, connection strings
// where a name belongs, secret files that are not files. Every case asserts the exit code, exactly
// one clear error line that says what is wrong, no secret anywhere (runJob scans every run for the
// secrets of its environment; `absent` adds values that must not be echoed though they are not
// secret variables), no stack trace, and an exit within a generous absolute bound.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { EXIT_CODES, type ExitName } from '../../src/exit-codes.ts';
import { fakeJobEnv, runJob, useFakeWorkspace, type JobResult } from '../support/job.ts';
import { requireBinaries } from '../support/require-binary.ts';
import { ENGINES as REGISTRY } from '../../src/engines/registry.ts';
import { loadConfig } from '../../src/config.ts';

// Far above the ~0.1-2 s these runs take alone, for a shared 2-core machine.
const MAX_MS = 60_000;
// Config errors exit in ~100 ms each: run this many at once.
const PARALLEL = 6;

// Everything a password may hold that a shell, an option file, a pgpass line or YAML would trip on
// (a line break only where the engine's credential channel carries it: see the cases below).
const HOSTILE = 'p"a\'ss w$(touch /tmp/x)`id`;\\o\trd #%s:*:[client] -- é😀 end';
const CALLBACK_SECRET = `whsec_${Buffer.alloc(32, 9).toString('base64')}`;

const workspace = useFakeWorkspace('hostile', ['mongodump', 'pg_dump', 'mysqldump', 'mariadb-dump', 'redis-cli']);
let plainFile: string;
let fifo: string;
let bigFile: string;

before(async () => {
  plainFile = join(workspace.work, 'plain-file');
  await writeFile(plainFile, 'x');
  fifo = join(workspace.work, 'fifo');
  execFileSync('mkfifo', [fifo]);
  bigFile = join(workspace.work, 'big-secret');
  await writeFile(bigFile, Buffer.alloc(200 * 1024, 'a'));
});

// A valid local backup of a fake mongodump; each case changes what it needs.
function base(extra: Record<string, string> = {}): Record<string, string> {
  return fakeJobEnv(workspace, [], { DB_TYPE: 'mongodb', DB_NAME: 'shop', DB_PASSWORD: 'db-password-4a5b6c', ...extra });
}

// A dead loopback port: connection refused, at once.
const DEAD = 'http://127.0.0.1:9';

type Case = {
  name: string;
  env: () => Record<string, string>;
  code: ExitName;
  // The one error line says this.
  says: RegExp;
  // Values that must appear nowhere (echoes of non-secret variables that carry credentials).
  absent?: string[];
  // Set when the failure must come before the dump starts.
  beforeDump?: boolean;
};

const config = (name: string, env: () => Record<string, string>, says: RegExp, absent: string[] = []): Case => ({ name, env, code: 'CONFIG', says, absent, beforeDump: true });

const ENGINES = [
  { type: 'postgresql', tool: 'pg_dump' },
  { type: 'mongodb', tool: 'mongodump' },
  { type: 'redis', tool: 'redis-cli' },
] as const;

const CASES: Case[] = [
  // Each variable with a bad value.
  config('an unknown DB_TYPE', () => base({ DB_TYPE: 'oracle' }), /DB_TYPE/),
  config('DB_PORT beyond 65535', () => base({ DB_PORT: '70000' }), /DB_PORT: 70000 is not a TCP port/),
  config('DB_PORT that is not a number', () => base({ DB_PORT: 'http' }), /DB_PORT/),
  config('DB_TLS not a mode', () => base({ DB_TLS: 'yes-please' }), /DB_TLS/),
  config('DB_ALL_DATABASES not a boolean', () => base({ DB_ALL_DATABASES: 'maybe' }), /DB_ALL_DATABASES/),
  config('DB_EXTRA_ARGS broken JSON', () => base({ DB_EXTRA_ARGS: '["--a"' }), /DB_EXTRA_ARGS: is not a valid JSON array/),
  config('STORAGE_TYPE unknown', () => base({ STORAGE_TYPE: 'ftp' }), /STORAGE_TYPE/),
  config('STORAGE_BUCKET missing', () => base({ STORAGE_BUCKET: '' }), /STORAGE_BUCKET is required/),
  config('a local STORAGE_BUCKET that is a file', () => base({ STORAGE_BUCKET: plainFile }), /STORAGE_BUCKET: .* is a file; for STORAGE_TYPE=local it must be a folder/),
  config('a local STORAGE_BUCKET under a file', () => base({ STORAGE_BUCKET: join(plainFile, 'sub') }), /STORAGE_BUCKET: .* is a file/),
  config('a local STORAGE_BUCKET longer than the filesystem allows', () => base({ STORAGE_BUCKET: join(workspace.work, 'deep/'.repeat(900)) }), /STORAGE_BUCKET\/BACKUP_PATH: the path under .* is too long for this filesystem/),
  config('BACKUP_PATH escaping the bucket', () => base({ BACKUP_PATH: '../etc' }), /BACKUP_PATH must be relative/),
  config('BACKUP_PATH with a folder name longer than a filesystem allows', () => base({ BACKUP_PATH: 'x'.repeat(300) }), /BACKUP_PATH is too long/),
  config('BACKUP_COMPRESSION unknown', () => base({ BACKUP_COMPRESSION: 'lz4' }), /BACKUP_COMPRESSION/),
  config('BACKUP_COMPRESSION_LEVEL out of range', () => base({ BACKUP_COMPRESSION_LEVEL: '99' }), /BACKUP_COMPRESSION_LEVEL: 99 is out of range/),
  config('BACKUP_TIMEOUT that is no duration', () => base({ BACKUP_TIMEOUT: 'later' }), /BACKUP_TIMEOUT: "later" is not a duration/),
  config('BACKUP_TIMEOUT of 2^31 ms, beyond any timer', () => base({ BACKUP_TIMEOUT: `${2 ** 31}ms` }), /BACKUP_TIMEOUT: .* is longer than 24 days/),
  config('BACKUP_TIMEOUT of twenty digits', () => base({ BACKUP_TIMEOUT: '99999999999999999999' }), /BACKUP_TIMEOUT: .* is longer than 24 days/),
  config('BACKUP_STALL_TIMEOUT above its 6 h', () => base({ BACKUP_STALL_TIMEOUT: '7h' }), /BACKUP_STALL_TIMEOUT: "7h" is longer than 6h/),
  config('BACKUP_STALL_TIMEOUT of zero', () => base({ BACKUP_STALL_TIMEOUT: '0' }), /BACKUP_STALL_TIMEOUT/),
  config('BACKUP_EXPECTED_SIZE that is no size', () => base({ BACKUP_EXPECTED_SIZE: 'lots' }), /BACKUP_EXPECTED_SIZE/),
  config('LOG_LEVEL unknown', () => base({ LOG_LEVEL: 'verbose' }), /LOG_LEVEL/),
  config('CALLBACK_RETRIES negative', () => base({ CALLBACK_URL: 'http://127.0.0.1:9/hook', CALLBACK_SECRET, CALLBACK_RETRIES: '-1' }), /CALLBACK_RETRIES/),
  config('CALLBACK_TIMEOUT negative', () => base({ CALLBACK_URL: 'http://127.0.0.1:9/hook', CALLBACK_SECRET, CALLBACK_TIMEOUT: '-5s' }), /CALLBACK_TIMEOUT/),
  // Scheme injection.
  config('a file: CALLBACK_URL', () => base({ CALLBACK_URL: 'file:///etc/passwd', CALLBACK_SECRET }), /CALLBACK_URL: must be an http:\/\/ or https:\/\/ URL, not file:/),
  config('a javascript: CALLBACK_URL', () => base({ CALLBACK_URL: 'javascript:alert(1)', CALLBACK_SECRET }), /CALLBACK_URL: must be an http:\/\/ or https:\/\/ URL/),
  config('a gopher: STORAGE_ENDPOINT', () => base({ STORAGE_TYPE: 's3', STORAGE_ENDPOINT: 'gopher://127.0.0.1:70/x' }), /STORAGE_ENDPOINT: must be an http:\/\/ or https:\/\/ URL, not gopher:/),
  config(
    'a CALLBACK_URL with credentials and a token, refused for another reason, is never echoed with them',
    () => base({ CALLBACK_URL: 'https://hookuser:hookpass-7c6d@cp.example/hook?token=tok-9e8f7a6b', CALLBACK_SECRET: 'not-a-webhook-secret' }),
    /CALLBACK_SECRET: secret #1 must start with whsec_/,
    ['hookpass-7c6d', 'tok-9e8f7a6b', 'not-a-webhook-secret'],
  ),
  config(
    'a STORAGE_ENDPOINT with credentials that is no URL is refused without echoing them',
    () => base({ STORAGE_TYPE: 's3', STORAGE_ENDPOINT: 'http://ak:sk-5e4d3c2b@host:port/?sig=sig-1a2b3c4d' }),
    /STORAGE_ENDPOINT: is not a URL/,
    ['sk-5e4d3c2b', 'sig-1a2b3c4d'],
  ),
  // Header injection.
  config('a CALLBACK_HEADERS value with CR LF', () => base({ CALLBACK_URL: 'http://127.0.0.1:9/hook', CALLBACK_SECRET, CALLBACK_HEADERS: JSON.stringify({ 'X-Api-Key': 'key-1\r\nX-Injected: 1' }) }), /CALLBACK_HEADERS: the value of header X-Api-Key holds a line break/, ['key-1']),
  config('a CALLBACK_HEADERS name with a space and a colon', () => base({ CALLBACK_URL: 'http://127.0.0.1:9/hook', CALLBACK_SECRET, CALLBACK_HEADERS: JSON.stringify({ 'Authorization: Bearer tkn-5f6e7d8c': 'x' }) }), /CALLBACK_HEADERS: holds an invalid header name/, ['tkn-5f6e7d8c']),
  config('CALLBACK_HEADERS that is not JSON', () => base({ CALLBACK_URL: 'http://127.0.0.1:9/hook', CALLBACK_SECRET, CALLBACK_HEADERS: 'X-Key: 1' }), /CALLBACK_HEADERS: is not valid JSON/),
  // Connection strings where a name belongs.
  config('a postgresql:// URI as DB_NAME', () => base({ DB_TYPE: 'postgresql', DB_NAME: 'postgresql://app:uri-pass-3b2a@db.internal/shop' }), /DB_NAME looks like a connection string/, ['uri-pass-3b2a']),
  config('a mongodb+srv:// URI as DB_NAME', () => base({ DB_NAME: 'mongodb+srv://app:srv-pass-8d7c@cluster0/shop' }), /DB_NAME looks like a connection string/, ['srv-pass-8d7c']),
  config('a libpq keyword string as DB_NAME', () => base({ DB_TYPE: 'postgresql', DB_NAME: 'dbname=shop password=kw-pass-6e5f' }), /DB_NAME looks like a connection string/, ['kw-pass-6e5f']),
  // Secret files that are not small regular files.
  config('DB_PASSWORD and DB_PASSWORD_FILE together', () => base({ DB_PASSWORD_FILE: plainFile }), /DB_PASSWORD and DB_PASSWORD_FILE are both set/),
  config('DB_PASSWORD_FILE=/dev/zero', () => base({ DB_PASSWORD: '', DB_PASSWORD_FILE: '/dev/zero' }), /DB_PASSWORD_FILE: cannot read \/dev\/zero \(not a regular file\)/),
  config('DB_PASSWORD_FILE naming a FIFO nobody writes', () => base({ DB_PASSWORD: '', DB_PASSWORD_FILE: fifo }), /DB_PASSWORD_FILE: cannot read .*fifo \(not a regular file\)/),
  config('DB_PASSWORD_FILE of 200 KiB', () => base({ DB_PASSWORD: '', DB_PASSWORD_FILE: bigFile }), /DB_PASSWORD_FILE: cannot read .* \(larger than 64 KiB\)/),
  config('DB_PASSWORD_FILE that does not exist', () => base({ DB_PASSWORD: '', DB_PASSWORD_FILE: join(workspace.work, 'nope') }), /DB_PASSWORD_FILE: cannot read .* \(ENOENT\)/),
  // Storage settings that only the target could have refused, later.
  config('S3 with no region and no endpoint', () => base({ STORAGE_TYPE: 's3' }), /STORAGE_REGION is required for S3 on AWS/),
  config('S3 with half a key pair', () => base({ STORAGE_TYPE: 's3', STORAGE_REGION: 'eu-west-1', STORAGE_ACCESS_KEY_ID: 'AKIDHALFPAIR123' }), /STORAGE_ACCESS_KEY_ID and STORAGE_SECRET_ACCESS_KEY must be set together/),
  config('an Azure account name with capitals', () => base({ STORAGE_TYPE: 'azure', STORAGE_BUCKET: 'backups', AZURE_STORAGE_ACCOUNT: 'Bad_Name!' }), /AZURE_STORAGE_ACCOUNT/),
  config('GCS credentials that are not JSON', () => base({ STORAGE_TYPE: 'gcs', GCS_CREDENTIALS_JSON: '{"private_key": "-----BEGIN gcs-key-2c3d4e5f' }), /GCS_CREDENTIALS_JSON/),
  config('a TMPDIR that does not exist', () => base({ TMPDIR: join(workspace.work, 'no-such-tmp') }), /TMPDIR: .* does not exist \(ENOENT\)/),
  config('a PostgreSQL DB_PASSWORD with a line break, refused without its value', () => base({ DB_TYPE: 'postgresql', DB_PASSWORD: 'line-one-4f3e\n*:*:*:*:other' }), /DB_PASSWORD contains a line break/, ['line-one-4f3e', 'other']),
  // Hostile characters in every engine's password: the tool gets it, echoes it on stderr and fails;
  // the job reports the failure without the password.
  ...ENGINES.map(({ type, tool }): Case => ({
    name: `a ${type} password of quotes, a newline, shell and option-file syntax, echoed by a failing ${tool}`,
    env: () => base({ DB_TYPE: type, ...(type === 'redis' && { DB_NAME: '0' }), DB_PASSWORD: HOSTILE, DB_EXTRA_ARGS: JSON.stringify(['--fake-exit=1', `--fake-stderr=error near ${HOSTILE} (as given)`]) }),
    code: 'DUMP_FAILED',
    says: new RegExp(`backup failed: \\S*/${tool} exited with code 1: error near \\[redacted\\] \\(as given\\)$`),
  })),
  {
    name: 'a nonexistent database is not retried',
    env: () => base({ DB_TYPE: 'postgresql', DB_EXTRA_ARGS: JSON.stringify(['--fake-exit=1', '--fake-stderr=pg_dump: error: connection to server failed: FATAL:  database "nope" does not exist']) }),
    code: 'DB_INVALID',
    says: /database "nope" does not exist/,
  },
  {
    name: 'an option the dump tool does not know is not retried',
    env: () => base({ DB_TYPE: 'redis', DB_NAME: '0', DB_EXTRA_ARGS: JSON.stringify(['--fake-exit=1', "--fake-stderr=Unrecognized option or bad number of args for: '--frobnicate'"]) }),
    code: 'DB_INVALID',
    says: /Unrecognized option or bad number of args for: '--frobnicate'/,
  },
  // Hostile characters in every storage secret, against a store that is down.
  {
    name: 'a hostile S3 secret key against a dead endpoint',
    env: () => base({ STORAGE_TYPE: 's3', STORAGE_BUCKET: 'backups', STORAGE_ENDPOINT: DEAD, STORAGE_ACCESS_KEY_ID: 'AKIDHOSTILE0001', STORAGE_SECRET_ACCESS_KEY: HOSTILE }),
    code: 'STORAGE_FAILED',
    says: /s3 upload to s3:\/\/backups\/.* failed/,
  },
  {
    name: 'a hostile Azure SAS token against a dead endpoint',
    env: () => base({ STORAGE_TYPE: 'azure', STORAGE_BUCKET: 'backups', STORAGE_ENDPOINT: `${DEAD}/devstoreaccount1`, AZURE_STORAGE_SAS_TOKEN: `sv=2024&sig=${encodeURIComponent(HOSTILE)}` }),
    code: 'STORAGE_FAILED',
    says: /azure|blob/i,
  },
];

// Runs `work` over `items`, at most `limit` at a time, keeping the order of the results.
async function inBatches<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: limit }, worker));
  return results;
}

function check(item: Case, result: JobResult): string[] {
  const problems: string[] = [];
  const errors = result.lines.filter((line) => line.severity === 'ERROR' || line.severity === 'CRITICAL');
  if (result.code !== EXIT_CODES[item.code].code) problems.push(`exit ${result.code}, expected ${EXIT_CODES[item.code].code} (${item.code}): ${errors.at(-1)?.message}`);
  if (errors.length !== 1) problems.push(`${errors.length} error lines: ${errors.map((line) => line.message).join(' | ')}`);
  else if (!item.says.test(errors[0]!.message)) problems.push(`the error line says ${JSON.stringify(errors[0]!.message)}, not ${item.says}`);
  if (result.lines.some((line) => line.severity === 'NOT_JSON')) problems.push('a stdout line is not JSON');
  if (result.stderr !== '') problems.push(`stderr is not empty: ${result.stderr.slice(0, 300)}`);
  if (/\bat [^\s]+ \(?(file|node):/.test(result.stdout) || result.stdout.includes('"stack"')) problems.push('a stack trace in the output');
  for (const value of item.absent ?? []) if (result.stdout.includes(value)) problems.push(`${value} appears in the output`);
  if (item.beforeDump && result.lines.some((line) => line.message === 'backup started')) problems.push('the dump started before the problem was reported');
  if (result.ms > MAX_MS) problems.push(`took ${result.ms} ms`);
  return problems;
}

describe('hostile input through the bundled job', () => {
  test(`the table has at least 40 cases (${CASES.length})`, () => {
    assert.ok(CASES.length >= 40, `${CASES.length} cases`);
    assert.equal(new Set(CASES.map((c) => c.name)).size, CASES.length, 'case names are unique');
  });

  test('every case: its exit code, one clear error line, no secret, no stack trace, a bounded time', async (t) => {
    const outcomes = await inBatches(CASES, PARALLEL, async (item) => {
      const result = await runJob(item.env());
      t.diagnostic(`${result.ms} ms: ${item.name}`);
      return { item, problems: check(item, result) };
    });
    const failed = outcomes.filter(({ problems }) => problems.length > 0).map(({ item, problems }) => `${item.name}:\n    ${problems.join('\n    ')}`);
    assert.deepEqual(failed, [], `${failed.length} of ${CASES.length} cases failed`);
    assert.deepEqual(await readdir(workspace.tmp), [], 'no credentials directory left behind');
  });

  test('a misspelled variable is one warning naming the closest known one, and the run goes on', async () => {
    const result = await runJob(base({ BACKUP_TIMOUT: '5m', STORAGE_REGOIN: 'x', DB_PASSWORD_FIEL: '/etc/hostname' }));
    assert.equal(result.code, 0, result.lines.at(-1)?.message);
    const warnings = result.lines.filter((line) => line.severity === 'WARNING').map((line) => line.message);
    assert.deepEqual(warnings, [
      'BACKUP_TIMOUT is not a variable Plan B reads (ignored); did you mean BACKUP_TIMEOUT?',
      'DB_PASSWORD_FIEL is not a variable Plan B reads (ignored); did you mean DB_PASSWORD_FILE?',
      'STORAGE_REGOIN is not a variable Plan B reads (ignored); did you mean STORAGE_REGION?',
    ]);
  });

  test('a hostile MySQL/MariaDB password stays one option-file value: the client reads it back whole', async (t) => {
    if (!requireBinaries(t, ['my_print_defaults'])) return;
    // The option file the job writes (the MySQL/MariaDB preflight needs a real server, so not through the job).
    // A line break would start a new option line (`user=root`) if it were not escaped.
    const password = `${HOSTILE}\n[client]\nuser=root`;
    const db = loadConfig({ DB_TYPE: 'mariadb', DB_NAME: 'shop', DB_PASSWORD: password, STORAGE_TYPE: 'local', STORAGE_BUCKET: workspace.work }).db;
    const content = REGISTRY.mariadb.command(db, { secretsDir: workspace.work, tool: 'mariadb-dump', compression: 'zstd' }).files[0]?.content ?? '';
    assert.equal(content.split('\n').filter((line) => line !== '').length, 2, 'a section line and one password line');
    const optionFile = join(workspace.work, 'my.cnf');
    await writeFile(optionFile, content);
    assert.equal(execFileSync('my_print_defaults', [`--defaults-file=${optionFile}`, 'client'], { encoding: 'utf8' }), `--password=${password}\n`);
  });
});
