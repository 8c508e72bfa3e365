// The reference receiver: verifies with verifyCallback, processes each webhook-id once, answers
// 204 / 400 / 401 — driven by the real sender and by hand-made requests.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { createReferenceReceiver, type ReceiverOptions } from '../../../src/callback/reference-receiver.ts';
import { sendCallback } from '../../../src/callback/send.ts';
import { signatureHeader } from '../../../src/callback/sign.ts';
import type { CallbackPayload } from '../../../src/callback/verify.ts';
import { callbackConfig, capturingLogger, failedReport, newSecret, succeededReport } from '../../unit/callback/reports.ts';

const ROOT = new URL('../../../', import.meta.url).pathname;
const FAST = { baseMs: 5, capMs: 20 };

async function listen(t: TestContext, onCallback: ReceiverOptions['onCallback'], secrets: readonly string[]): Promise<string> {
  const server = createReferenceReceiver({ secrets, onCallback });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/callbacks`;
}

async function post(url: string, body: string, headers: Record<string, string>): Promise<number> {
  const response = await fetch(url, { method: 'POST', body, headers });
  await response.arrayBuffer();
  return response.status;
}

function signedHeaders(secret: string, body: string, timestamp = Math.floor(Date.now() / 1000)): Record<string, string> {
  const id = 'msg_hand-made';
  return { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': signatureHeader([secret], id, timestamp, body), 'content-type': 'application/json' };
}

test('a callback from the sender is verified and handed over once', async (t) => {
  const secret = newSecret();
  const received: Array<[CallbackPayload, string]> = [];
  const url = await listen(t, (payload, id) => void received.push([payload, id]), [secret]);
  const { log } = capturingLogger();
  await sendCallback(callbackConfig(url, [secret]), failedReport(), { signal: AbortSignal.timeout(10_000), log, backoff: FAST });
  assert.equal(received.length, 1);
  assert.equal(received[0]?.[1], 'msg_20250102T030405Z-0a1b2c3d');
  assert.equal(received[0]?.[0].type, 'backup.failed');
});

test('a repeated webhook-id is acknowledged with 204 but not processed again', async (t) => {
  const secret = newSecret();
  let calls = 0;
  const url = await listen(t, () => void (calls += 1), [secret]);
  const body = JSON.stringify({ type: 'backup.succeeded', timestamp: new Date().toISOString(), data: {} });
  assert.equal(await post(url, body, signedHeaders(secret, body)), 204);
  assert.equal(await post(url, body, signedHeaders(secret, body, Math.floor(Date.now() / 1000) - 5)), 204);
  assert.equal(calls, 1);
});

test('a retry that arrives while the first delivery is still being handled waits for it instead of running twice', async (t) => {
  const secret = newSecret();
  let calls = 0;
  let release: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const url = await listen(t, async () => {
    calls += 1;
    await gate;
  }, [secret]);
  const body = JSON.stringify({ type: 'backup.succeeded', timestamp: new Date().toISOString(), data: {} });
  const first = post(url, body, signedHeaders(secret, body));
  const second = post(url, body, signedHeaders(secret, body));
  await new Promise((resolve) => setTimeout(resolve, 50));
  release();
  assert.deepEqual(await Promise.all([first, second]), [204, 204]);
  assert.equal(calls, 1);
});

test('a handler that fails answers 500, so the sender retries and the callback is processed then', async (t) => {
  const secret = newSecret();
  const seen: string[] = [];
  const url = await listen(t, (_payload, id) => {
    seen.push(id);
    if (seen.length === 1) throw new Error('database briefly unavailable');
  }, [secret]);
  const { log, lines } = capturingLogger();
  t.mock.method(console, 'error', () => undefined);
  await sendCallback(callbackConfig(url, [secret]), succeededReport(), { signal: AbortSignal.timeout(10_000), log, backoff: FAST });
  assert.deepEqual(seen, ['msg_20250102T030405Z-0a1b2c3d', 'msg_20250102T030405Z-0a1b2c3d']);
  assert.ok(lines.some((line) => line.includes('HTTP 500')));
});

test('forged, stale and malformed requests get 401 or 400 and are not processed', async (t) => {
  const secret = newSecret();
  let calls = 0;
  const url = await listen(t, () => void (calls += 1), [secret]);
  const body = JSON.stringify({ type: 'backup.succeeded', timestamp: new Date().toISOString(), data: {} });
  assert.equal(await post(url, `${body} `, signedHeaders(secret, body)), 401, 'tampered body');
  assert.equal(await post(url, body, signedHeaders(newSecret(), body)), 401, 'wrong secret');
  assert.equal(await post(url, body, signedHeaders(secret, body, Math.floor(Date.now() / 1000) - 600)), 401, 'stale');
  assert.equal(await post(url, body, { 'content-type': 'application/json' }), 400, 'no webhook headers');
  assert.equal(await post(url, 'x', signedHeaders(secret, 'x')), 400, 'authentic but not a callback');
  assert.equal((await fetch(url)).status, 405);
  assert.equal(calls, 0);
});

test('the documented command runs the receiver with a secret file and prints each callback', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'planb-receiver-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const [old, fresh] = [newSecret(), newSecret()];
  await writeFile(join(dir, 'secret'), `${old}\n${fresh}\n`, { mode: 0o600 });
  const child = spawn(join(ROOT, 'node_modules/.bin/node'), [join(ROOT, 'src/callback/reference-receiver.ts'), '--port', '0', '--secret-file', join(dir, 'secret')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.kill());
  const [banner] = (await once(createInterface({ input: child.stderr }), 'line')) as [string];
  const url = /listening on (\S+)/.exec(banner)?.[1];
  assert.ok(url, banner);

  const stdout = createInterface({ input: child.stdout });
  const printed = once(stdout, 'line') as Promise<[string]>;
  const { log } = capturingLogger();
  await sendCallback(callbackConfig(url, [fresh]), succeededReport(), { signal: AbortSignal.timeout(10_000), log, backoff: FAST });
  const [line] = await printed;
  const event = JSON.parse(line) as { webhookId: string; type: string; data: { object: { key: string } } };
  assert.equal(event.webhookId, 'msg_20250102T030405Z-0a1b2c3d');
  assert.equal(event.type, 'backup.succeeded');
  assert.equal(event.data.object.key, succeededReport().object?.key);
});
