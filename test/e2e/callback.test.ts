// The callback through the bundled job: a real receiver on 127.0.0.1 verifies every delivery.
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { verifyCallback } from '../../src/callback/verify.ts';
import { EXIT_CODES } from '../../src/exit-codes.ts';
import { fakeToolDir, runJob } from '../support/job.ts';
import { downUrl, startWebhookReceiver, type WebhookReceiver } from '../support/webhook-receiver.ts';

const SECRET = `whsec_${Buffer.alloc(32, 42).toString('base64')}`;
const PASSWORD = 'db-pass-0f9e8d7c6b';

let bin: string;
let work: string;
before(async () => {
  bin = await fakeToolDir(['mongodump']);
  work = await mkdtemp(join(tmpdir(), 'planb-callback-e2e-'));
});
after(async () => {
  await rm(bin, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
});

function env(bucket: string, url: string, extra: string[]): Record<string, string> {
  return {
    PATH: `${bin}:${process.env.PATH ?? ''}`,
    DB_TYPE: 'mongodb', DB_HOST: '127.0.0.1', DB_NAME: 'shop', DB_PASSWORD: PASSWORD, DB_EXTRA_ARGS: JSON.stringify(extra),
    STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket,
    CALLBACK_URL: url, CALLBACK_SECRET: SECRET, CALLBACK_RETRIES: '2', CALLBACK_TIMEOUT: '2s',
    K8S_NAMESPACE: 'backups', K8S_POD_NAME: 'backup-shop-29384-abcde', K8S_JOB_NAME: 'backup-shop-29384',
  };
}

type Payload = { type: string; data: Record<string, unknown> & { object?: { key: string; sha256: string; bytes: number }; error?: { code: string; stage: string } } };

function verified(receiver: WebhookReceiver): Payload[] {
  return receiver.requests.map((request) => verifyCallback(request.body, request.headers, SECRET) as unknown as Payload);
}

describe('callback from the bundled job', () => {
  test('a stored backup sends exactly one signed backup.succeeded callback with the object facts', async () => {
    const receiver = await startWebhookReceiver({ otherwise: 204 });
    try {
      const bucket = join(work, 'ok');
      const result = await runJob(env(bucket, receiver.url, ['--fake-bytes=100000']));
      assert.equal(result.code, 0, result.stdout);
      const [payload, ...rest] = verified(receiver);
      assert.deepEqual(rest, []);
      assert.equal(payload?.type, 'backup.succeeded');
      const stored = result.lines.find((l) => l.message === 'backup stored') as unknown as { object: { key: string; sha256: string; bytes: number } };
      assert.equal(payload?.data.object?.key, stored.object.key);
      assert.equal(payload?.data.object?.sha256, stored.object.sha256);
      assert.deepEqual(payload?.data.platform, { kubernetes: { namespace: 'backups', pod: 'backup-shop-29384-abcde', job: 'backup-shop-29384' } });
      const body = receiver.requests[0]?.body.toString() ?? '';
      assert.ok(!body.includes(PASSWORD) && !body.includes(SECRET), 'no secret in the callback');
      assert.ok(!result.stdout.includes(SECRET), 'no secret in the logs');
    } finally {
      await receiver.close();
    }
  });

  test('a failed dump sends exactly one backup.failed callback and keeps the dump failure as exit code', async () => {
    const receiver = await startWebhookReceiver({ otherwise: 200 });
    try {
      const result = await runJob(env(join(work, 'failed'), receiver.url, ['--fake-bytes=1000', '--fake-exit=3']));
      assert.equal(result.code, EXIT_CODES.DUMP_FAILED.code, result.stdout);
      const [payload, ...rest] = verified(receiver);
      assert.deepEqual(rest, []);
      assert.equal(payload?.type, 'backup.failed');
      assert.equal(payload?.data.error?.code, 'DUMP_FAILED');
      assert.equal(payload?.data.object, undefined);
    } finally {
      await receiver.close();
    }
  });

  test('a receiver that answers 500 twice then 200 gets three attempts with one webhook-id', async () => {
    const receiver = await startWebhookReceiver({ answers: [500, 500], otherwise: 200 });
    try {
      const result = await runJob(env(join(work, 'retry'), receiver.url, ['--fake-bytes=1000']));
      assert.equal(result.code, 0, result.stdout);
      assert.equal(receiver.requests.length, 3);
      assert.equal(new Set(receiver.requests.map((r) => r.headers['webhook-id'])).size, 1);
      assert.equal(verified(receiver).length, 3, 'every attempt is signed afresh and verifies');
    } finally {
      await receiver.close();
    }
  });

  test('a receiver that is down: the backup stays stored and the job exits with the callback code', async () => {
    const bucket = join(work, 'down');
    const result = await runJob(env(bucket, await downUrl(), ['--fake-bytes=1000']));
    assert.equal(result.code, EXIT_CODES.CALLBACK_FAILED.code, result.stdout);
    assert.equal((await readdir(bucket)).length, 1, 'the object stays');
    assert.match(result.lines.at(-1)?.message ?? '', /backup stored, but the callback failed/);
  });

  test('SIGTERM mid-dump still sends the failure callback before exiting 143', async () => {
    const receiver = await startWebhookReceiver({ otherwise: 204 });
    try {
      const result = await runJob(env(join(work, 'sigterm'), receiver.url, ['--fake-bytes=1000', '--fake-hang']), {
        onLine: (line) => (line.message === 'backup started' ? 'SIGTERM' : undefined),
      });
      assert.equal(result.code, EXIT_CODES.SIGTERM.code, result.stdout);
      const [payload] = verified(receiver);
      assert.equal(payload?.type, 'backup.failed');
      assert.equal(payload?.data.error?.code, 'SIGTERM');
    } finally {
      await receiver.close();
    }
  });
});
