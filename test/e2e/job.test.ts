// The bundled job run as a child process with a fake dump tool: configuration errors, failing,
// empty, killed and hanging dumps, SIGTERM, the deadline, secrets and log format.
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { EXIT_CODES } from '../../src/exit-codes.ts';
import { fakeJobEnv, runJob, useFakeWorkspace, type JobResult } from '../support/job.ts';

const PASSWORD = 'pa:ss\\w"ord-9f8e7d6c';

// The job's own TMPDIR (workspace.tmp) is where it writes credential files: empty after every run.
const workspace = useFakeWorkspace('e2e', ['mongodump']);

async function files(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

async function credentialDirs(): Promise<string[]> {
  return readdir(workspace.tmp);
}

function mongoEnv(bucket: string, extra: string[], env: Record<string, string> = {}): Record<string, string> {
  return fakeJobEnv(workspace, extra, { DB_TYPE: 'mongodb', DB_USERNAME: 'backup', DB_PASSWORD: PASSWORD, STORAGE_BUCKET: bucket, BACKUP_PATH: 'nightly/', ...env });
}

function assertCleanLogs(result: JobResult): void {
  assert.ok(result.lines.length > 0, 'logs something');
  for (const line of result.lines) {
    assert.notEqual(line.severity, 'NOT_JSON', `every stdout line is JSON: ${line.message}`);
    assert.match(line.severity, /^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$/);
    assert.equal(typeof line.message, 'string');
  }
  assert.ok(!result.stdout.includes(PASSWORD), 'the password never appears in the logs');
  assert.equal(result.stderr, '', 'nothing on stderr');
}

describe('configuration', () => {
  test('no configuration exits with the config code and names every missing variable', async () => {
    const result = await runJob({});
    assert.equal(result.code, EXIT_CODES.CONFIG.code);
    const fatal = result.lines.at(-1);
    assert.equal(fatal?.severity, 'CRITICAL');
    assert.deepEqual(fatal?.problems, ['DB_TYPE is required', 'STORAGE_TYPE is required', 'STORAGE_BUCKET is required']);
    assert.ok(!result.stdout.includes('    at '), 'no stack trace');
  });

  test('every bad variable is named at once, and no work starts', async () => {
    const secretFile = join(workspace.work, 'pw');
    await writeFile(secretFile, `${PASSWORD}\n`);
    const result = await runJob({
      DB_TYPE: 'oracle',
      DB_PORT: 'abc',
      DB_PASSWORD: PASSWORD,
      DB_PASSWORD_FILE: secretFile,
      STORAGE_TYPE: 'local',
      STORAGE_BUCKET: join(workspace.work, 'never'),
      BACKUP_TIMEOUT: 'soon',
      CALLBACK_URL: 'http://127.0.0.1:9/hook',
    });
    assert.equal(result.code, EXIT_CODES.CONFIG.code);
    const problems = result.lines.at(-1)?.problems as string[];
    for (const name of ['DB_TYPE', 'DB_PORT', 'BACKUP_TIMEOUT', 'DB_PASSWORD and DB_PASSWORD_FILE', 'CALLBACK_SECRET']) {
      assert.ok(problems.some((p) => p.startsWith(name)), `${name} is named in ${JSON.stringify(problems)}`);
    }
    assert.deepEqual(await files(join(workspace.work, 'never')), [], 'nothing was written');
    assertCleanLogs(result);
  });
});

describe('a dump through the bundled job', () => {
  test('a successful dump is stored under the prefix with a unique key, and its facts are logged', async () => {
    const bucket = join(workspace.work, 'ok');
    const record = join(workspace.work, 'record.json');
    const passwordFile = join(workspace.work, 'pw-ok');
    await writeFile(passwordFile, `${PASSWORD}\n`);
    const env = mongoEnv(bucket, ['--fake-bytes=3000000', `--fake-record=${record}`], {
      DB_PASSWORD: '',
      DB_PASSWORD_FILE: passwordFile,
      CLOUD_RUN_JOB: 'backup',
      CLOUD_RUN_EXECUTION: 'backup-x7k2p',
      CLOUD_RUN_TASK_ATTEMPT: '2',
    });
    const first = await runJob(env);
    const second = await runJob(env);
    assert.equal(first.code, 0, first.stdout);
    assert.equal(second.code, 0);
    const stored = await files(bucket);
    assert.equal(stored.length, 2, 'two runs never share a key');
    for (const file of stored) assert.match(file, /nightly\/mongodb-[^/]+-\d{8}T\d{6}Z-[0-9a-f]{8}\.archive\.zst$/);

    const done = first.lines.find((l) => l.message === 'backup stored') as unknown as { object: { key: string; bytes: number; sha256: string } } & Record<string, unknown>;
    assert.ok(done, 'the end is logged');
    assert.equal(done.rawBytes, 3_000_000);
    assert.ok(stored.some((f) => f.endsWith(done.object.key)));
    for (const line of first.lines) assert.equal(line.cloudRunExecution, 'backup-x7k2p', 'platform context on every line');

    const given = JSON.parse(await readFile(record, 'utf8')) as { argv: string[]; env: Record<string, string>; files: Record<string, { content: string; mode: string }> };
    assert.ok(!given.argv.join(' ').includes(PASSWORD), 'no password in argv');
    assert.ok(!Object.values(given.env).join(' ').includes(PASSWORD), 'no password in the environment of the tool');
    const [config] = Object.values(given.files);
    assert.equal(config?.mode, '600');
    assert.equal(config?.content, `password: ${JSON.stringify(PASSWORD)}\n`, 'the password from DB_PASSWORD_FILE, trailing newline stripped');
    assert.deepEqual(await credentialDirs(), [], 'credential files removed');
    assertCleanLogs(first);
  });

  test('a dump that writes data then exits 1 leaves nothing and reports the tool and its stderr', async () => {
    const bucket = join(workspace.work, 'exit1');
    const result = await runJob(mongoEnv(bucket, ['--fake-bytes=2000000', '--fake-exit=1', `--fake-stderr=Failed: auth error with ${PASSWORD}`]));
    assert.equal(result.code, EXIT_CODES.DB_AUTH.code, 'stderr says auth, so the auth code');
    assert.deepEqual(await files(bucket), [], 'no object and no temporary file');
    const failed = result.lines.at(-1);
    assert.match(failed?.message ?? '', /mongodump exited with code 1: Failed: auth error with \[redacted\]/);
    assert.deepEqual(await credentialDirs(), []);
    assertCleanLogs(result);
  });

  test('a dump killed mid-stream leaves nothing and exits with the dump code', async () => {
    const bucket = join(workspace.work, 'killed');
    const result = await runJob(mongoEnv(bucket, ['--fake-bytes=5000000', '--fake-kill-self']));
    assert.equal(result.code, EXIT_CODES.DUMP_FAILED.code);
    assert.match(result.lines.at(-1)?.message ?? '', /killed by SIGKILL/);
    assert.deepEqual(await files(bucket), []);
  });

  test('a dump that exits 0 without writing anything fails as empty', async () => {
    const bucket = join(workspace.work, 'empty');
    const result = await runJob(mongoEnv(bucket, ['--fake-bytes=0']));
    assert.equal(result.code, EXIT_CODES.DUMP_FAILED.code);
    assert.match(result.lines.at(-1)?.message ?? '', /wrote nothing/);
    assert.deepEqual(await files(bucket), []);
  });

  test('a local bucket that is a file (or lies under one) is a configuration error, named before any dump', async () => {
    const notADirectory = join(workspace.work, 'plain-file');
    await writeFile(notADirectory, 'x');
    for (const bucket of [notADirectory, join(notADirectory, 'bucket')]) {
      const result = await runJob(mongoEnv(bucket, ['--fake-bytes=20000000']));
      assert.equal(result.code, EXIT_CODES.CONFIG.code, result.lines.at(-1)?.message);
      assert.match(result.lines.at(-1)?.message ?? '', /STORAGE_BUCKET: .* is a file; for STORAGE_TYPE=local it must be a folder/);
      assert.ok(!result.lines.some((line) => line.message === 'backup started'), 'no dump started');
    }
    assert.deepEqual(await credentialDirs(), []);
  });

  test('a missing dump tool is an image bug, reported before any work', async () => {
    const bucket = join(workspace.work, 'missing');
    const result = await runJob({ ...mongoEnv(bucket, []), PATH: '/nonexistent' });
    assert.equal(result.code, EXIT_CODES.INTERNAL.code);
    assert.match(result.lines.at(-1)?.message ?? '', /mongodump.*not on PATH|none of mongodump is on PATH/);
  });

  test('SIGTERM mid-dump stops the tool, leaves nothing and exits 143 within seconds', async () => {
    const bucket = join(workspace.work, 'sigterm');
    let sentAt = 0;
    const result = await runJob(mongoEnv(bucket, ['--fake-bytes=3000000', '--fake-hang']), {
      onLine: (line) => {
        if (line.message !== 'backup started') return undefined;
        sentAt = Date.now();
        return 'SIGTERM';
      },
    });
    assert.equal(result.code, EXIT_CODES.SIGTERM.code);
    // A few hundred ms when it works; below the 8 s forced exit, so a cleanup that hangs still fails here.
    assert.ok(Date.now() - sentAt < 7_500, 'exits within seconds');
    assert.deepEqual(await files(bucket), []);
    assert.deepEqual(await credentialDirs(), [], 'credential files removed on SIGTERM too');
    assert.match(result.lines.at(-1)?.message ?? '', /interrupted by SIGTERM/);
  });

  test('BACKUP_TIMEOUT aborts a dump that takes too long, leaving nothing', async () => {
    const bucket = join(workspace.work, 'deadline');
    const result = await runJob(mongoEnv(bucket, ['--fake-bytes=1000', '--fake-hang'], { BACKUP_TIMEOUT: '1s' }));
    assert.equal(result.code, EXIT_CODES.DEADLINE.code);
    // About 1.3 s when it works; the bound only tells an abort from a hang.
    assert.ok(result.ms < 20_000, `took ${result.ms} ms`);
    assert.deepEqual(await files(bucket), []);
  });
});
