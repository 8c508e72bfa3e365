// Faults around the bundled job, each with an absolute memory ceiling and an absolute time bound:
// a storage endpoint that accepts connections and never answers (S3, GCS, Azure), one that dies
// mid-upload, a dump tool that floods stderr or writes one 200 MB line, a callback receiver that
// answers with an endless body, SIGTERM during the callback, and what a SIGKILLed run leaves behind.
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { readdir, stat } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { EXIT_CODES } from '../../src/exit-codes.ts';
import { fakeJobEnv, runJob, useFakeWorkspace, type JobResult, type LogLine } from '../support/job.ts';
import { requireS3rver, startS3Server } from '../support/s3-server.ts';

const MiB = 1024 * 1024;
// The ceiling every fault must stay under: far above the ~100-150 MiB these runs need.
const MAX_RSS = 256 * MiB;
// Far above what each run needs alone (a few seconds), for a shared 2-core machine.
const MAX_MS = 90_000;
const CALLBACK_SECRET = `whsec_${Buffer.alloc(32, 5).toString('base64')}`;

const workspace = useFakeWorkspace('faults', ['mongodump']);

function env(extraArgs: string[], extra: Record<string, string> = {}): Record<string, string> {
  return fakeJobEnv(workspace, extraArgs, { DB_TYPE: 'mongodb', DB_NAME: 'shop', DB_PASSWORD: 'fault-password-1d2e3f', ...extra });
}

function assertBounded(t: TestContext, result: JobResult): void {
  t.diagnostic(`peak RSS ${(result.peakRss / MiB).toFixed(0)} MiB, ${result.ms} ms`);
  assert.ok(result.peakRss > 0 && result.peakRss < MAX_RSS, `peak RSS ${(result.peakRss / MiB).toFixed(0)} MiB`);
  assert.ok(result.ms < MAX_MS, `took ${result.ms} ms`);
  assert.equal(result.stderr, '');
}

function failure(result: JobResult): string {
  return result.lines.filter((line) => line.severity === 'ERROR' || line.severity === 'CRITICAL').map((line) => line.message).join(' | ');
}

// A TCP server on loopback that accepts every connection, reads and discards what arrives, and
// never answers; `kill()` then drops every connection and stops listening (a store that died).
async function silentServer(t: TestContext, onBytes?: (total: number) => void): Promise<{ url: string; kill: () => void }> {
  const sockets = new Set<Socket>();
  let total = 0;
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('data', (chunk: Buffer) => {
      total += chunk.length;
      onBytes?.(total);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const kill = () => {
    server.close();
    for (const socket of sockets) socket.destroy();
  };
  t.after(kill);
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, kill };
}

// Storage variables that point each target at `url`.
function storageAt(type: 's3' | 'gcs' | 'azure', url: string): Record<string, string> {
  if (type === 's3') return { STORAGE_TYPE: 's3', STORAGE_BUCKET: 'backups', STORAGE_ENDPOINT: url, STORAGE_ACCESS_KEY_ID: 'AKIDFAULT0001', STORAGE_SECRET_ACCESS_KEY: 'fault-s3-secret-9a8b7c' };
  if (type === 'gcs') return { STORAGE_TYPE: 'gcs', STORAGE_BUCKET: 'backups', STORAGE_ENDPOINT: url };
  return { STORAGE_TYPE: 'azure', STORAGE_BUCKET: 'backups', STORAGE_ENDPOINT: `${url}/devstoreaccount1`, AZURE_STORAGE_SAS_TOKEN: 'sv=2024-01-01&sig=fault-sas-6f5e4d' };
}

describe('faults, each under 256 MiB and a time bound', () => {
  for (const type of ['s3', 'gcs', 'azure'] as const) {
    test(`a ${type} endpoint that accepts and never answers fails as a storage failure after BACKUP_STALL_TIMEOUT, and the dump is stopped`, async (t) => {
      const endpoint = await silentServer(t);
      const result = await runJob(env(['--fake-bytes=30000000'], { ...storageAt(type, endpoint.url), BACKUP_STALL_TIMEOUT: '2s', BACKUP_COMPRESSION: 'none' }));
      assert.equal(result.code, EXIT_CODES.STORAGE_FAILED.code, failure(result));
      assert.match(failure(result), /no byte was stored for 2000 ms \(BACKUP_STALL_TIMEOUT\)/);
      assertBounded(t, result);
      assert.deepEqual(await readdir(workspace.tmp), [], 'the credentials are removed');
    });
  }

  test('a small dump whose commit is never answered stalls too (nothing left to send, no answer)', async (t) => {
    const endpoint = await silentServer(t);
    const result = await runJob(env(['--fake-bytes=4096'], { ...storageAt('s3', endpoint.url), BACKUP_STALL_TIMEOUT: '2s' }));
    assert.equal(result.code, EXIT_CODES.STORAGE_FAILED.code, failure(result));
    assert.match(failure(result), /BACKUP_STALL_TIMEOUT/);
    assertBounded(t, result);
  });

  test('a dump that is slow to produce is no stall: nothing waits for the store', async () => {
    // 3 s of silence after the first bytes, with a 1 s stall timeout, into a local folder.
    const result = await runJob(env(['--fake-bytes=1000', '--fake-pause-ms=3000'], { BACKUP_STALL_TIMEOUT: '1s' }));
    assert.equal(result.code, 0, failure(result));
  });

  test('an S3 store that dies mid-upload fails as a storage failure, within seconds', async (t) => {
    if (!requireS3rver(t)) return;
    const s3 = await startS3Server({ buckets: ['backups'] });
    t.after(() => s3.stop());
    // Stopped once the first part is on its way: connections drop, new ones are refused.
    const watch = setInterval(() => {
      if (s3.requests.some((request) => request.operation === 'UploadPart')) {
        clearInterval(watch);
        void s3.stop();
      }
    }, 20);
    t.after(() => clearInterval(watch));
    const result = await runJob(env(['--fake-bytes=60000000'], {
      STORAGE_TYPE: 's3', STORAGE_BUCKET: 'backups', STORAGE_ENDPOINT: s3.endpoint, STORAGE_REGION: s3.region,
      STORAGE_ACCESS_KEY_ID: s3.credentials.accessKeyId, STORAGE_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      BACKUP_COMPRESSION: 'none', STORAGE_PART_SIZE: '5MiB',
    }));
    assert.equal(result.code, EXIT_CODES.STORAGE_FAILED.code, failure(result));
    assert.doesNotMatch(failure(result), /BACKUP_STALL_TIMEOUT/, "the store's own failure, not the stall watch");
    assertBounded(t, result);
  });

  test('a flood of stderr lines is logged at a bounded rate, the rest counted', async (t) => {
    const lines = 100_000;
    const result = await runJob(env([`--fake-stderr-lines=${lines}`, '--fake-bytes=4096']));
    assert.equal(result.code, 0, failure(result));
    const logged = result.lines.filter((line) => line.message === 'dump tool stderr').length;
    const suppressed = result.lines.reduce((sum, line: LogLine) => sum + (typeof line.suppressedLines === 'number' ? line.suppressedLines : 0), 0);
    assert.equal(logged + suppressed, lines, 'every line is either logged or counted');
    assert.ok(logged <= 20 * (Math.ceil(result.ms / 1000) + 1), `${logged} lines logged in ${result.ms} ms`);
    assertBounded(t, result);
  });

  test('one 200 MB stderr line without a newline is kept to 8 KiB and marked as cut', async (t) => {
    const bytes = 200_000_000;
    const result = await runJob(env([`--fake-stderr-bytes=${bytes}`, '--fake-bytes=4096', '--fake-exit=3']));
    assert.equal(result.code, EXIT_CODES.DUMP_FAILED.code, failure(result));
    const line = result.lines.find((entry) => entry.message === 'dump tool stderr');
    assert.ok(line, 'the line is logged');
    const text = String(line.stderr);
    assert.ok(text.startsWith('x'.repeat(8192)) && text.endsWith(`[…${bytes - 8192} more bytes cut]`), text.slice(8180));
    assert.ok(result.stdout.length < 200_000, `stdout is ${result.stdout.length} bytes`);
    assertBounded(t, result);
  });

  test('a callback receiver that answers with an endless body: the answer is read up to a cap', async (t) => {
    const endless = createHttpServer((request, response) => {
      request.resume();
      response.writeHead(200, { 'content-type': 'text/plain' });
      const block = Buffer.alloc(MiB, 'y');
      const pump = () => {
        while (response.write(block));
        response.once('drain', pump);
      };
      pump();
    });
    endless.on('clientError', () => undefined);
    await new Promise<void>((resolve) => endless.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      endless.closeAllConnections();
      endless.close();
    });
    const url = `http://127.0.0.1:${(endless.address() as AddressInfo).port}/hook`;
    const result = await runJob(env(['--fake-bytes=4096'], { CALLBACK_URL: url, CALLBACK_SECRET, CALLBACK_TIMEOUT: '20s' }));
    assert.equal(result.code, 0, failure(result));
    assert.ok(result.lines.some((line) => /^callback delivered/.test(line.message)));
    assertBounded(t, result);
  });

  test('SIGTERM while the callback is in flight is reported as SIGTERM, not as a deadline', async (t) => {
    const hanging = createHttpServer((request) => request.resume());
    await new Promise<void>((resolve) => hanging.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      hanging.closeAllConnections();
      hanging.close();
    });
    const url = `http://127.0.0.1:${(hanging.address() as AddressInfo).port}/hook`;
    const result = await runJob(env(['--fake-bytes=4096'], { CALLBACK_URL: url, CALLBACK_SECRET, CALLBACK_TIMEOUT: '60s' }), {
      onLine: (line) => (line.message === 'backup stored' ? 'SIGTERM' : undefined),
    });
    assert.equal(result.code, EXIT_CODES.CALLBACK_FAILED.code, failure(result));
    assert.match(failure(result), /interrupted by SIGTERM/);
    assert.doesNotMatch(failure(result), /deadline/);
    assertBounded(t, result);
  });

  test('what a SIGKILLed run leaves is named as no backup, and the next run removes it', async () => {
    const bucket = join(workspace.work, 'killed');
    const killed = await runJob(env(['--fake-bytes=200000000'], { STORAGE_BUCKET: bucket, BACKUP_COMPRESSION: 'none' }), {
      // Killed once the partial file has data in it: mid-dump, mid-write.
      onSpawn: (child) => {
        const watch = setInterval(() => {
          void readdir(bucket).then(
            (names) => {
              if (names.length === 0) return;
              clearInterval(watch);
              child.kill('SIGKILL');
            },
            () => undefined, // not created yet
          );
        }, 20);
        child.once('close', () => clearInterval(watch));
      },
    });
    assert.equal(killed.signal, 'SIGKILL');
    const leftovers = await readdir(bucket, { recursive: true });
    const partial = leftovers.find((name) => /(^|\/)\.mongodb-shop-.*\.archive\.partial-[0-9a-f]{8}-[0-9a-f]{8}-\d+-[0-9a-f]{12}$/.test(name));
    assert.ok(partial, `a partial file named as such: ${JSON.stringify(leftovers)}`);
    assert.ok(!leftovers.some((name) => name.endsWith('.archive')), 'nothing ends like a backup');
    const secretDirs = await readdir(workspace.tmp);
    assert.equal(secretDirs.length, 1, 'the killed run left its credentials directory');
    assert.match(secretDirs[0] ?? '', /^planb-secrets-[0-9a-f]{8}-[0-9a-f]{8}-\d+-/);

    const next = await runJob(env(['--fake-bytes=4096'], { STORAGE_BUCKET: bucket }));
    assert.equal(next.code, 0, failure(next));
    await assert.rejects(stat(join(bucket, partial)), { code: 'ENOENT' }, 'the partial file is removed');
    assert.deepEqual(await readdir(workspace.tmp), [], 'the credentials directory is removed');
    assert.ok(next.lines.some((line) => /removed the partial file of an earlier run/.test(line.message)));
    assert.ok(next.lines.some((line) => /removed the credentials directory of an earlier run/.test(line.message)));
  });
});
