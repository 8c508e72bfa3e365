// sendCallback against a real HTTP receiver on 127.0.0.1: delivery, retries, refusals, deadline.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { sendCallback, type SendOptions } from '../../../src/callback/send.ts';
import { verifyCallback } from '../../../src/callback/verify.ts';
import type { CallbackConfig } from '../../../src/config.ts';
import { CallbackError } from '../../../src/errors.ts';
import type { RunReport } from '../../../src/report.ts';
import { downUrl, startWebhookReceiver, type Answer, type ReceivedRequest, type WebhookReceiver } from '../../support/webhook-receiver.ts';
import { PAYLOAD_SCHEMA, validate } from '../../unit/callback/json-schema.ts';
import {
  callbackConfig,
  capturingLogger,
  DB_PASSWORD,
  failedReport,
  GATEWAY_KEY,
  newSecret,
  STORAGE_KEY,
  succeededReport,
  URL_TOKEN,
} from '../../unit/callback/reports.ts';

// Milliseconds, not seconds, between attempts: the tests assert order and counts, not timings.
const FAST = { baseMs: 5, capMs: 20, maxRetryAfterMs: 5000 };

async function receiver(t: TestContext, answers: readonly Answer[] = [], otherwise?: Answer): Promise<WebhookReceiver> {
  const started = await startWebhookReceiver({ answers, ...(otherwise !== undefined && { otherwise }) });
  t.after(() => started.close());
  return started;
}

async function send(
  config: CallbackConfig,
  report: RunReport,
  options: Partial<SendOptions> = {},
): Promise<{ error: unknown; lines: string[] }> {
  const { log, lines } = capturingLogger();
  try {
    await sendCallback(config, report, { signal: AbortSignal.timeout(20_000), log, backoff: FAST, ...options });
    return { error: undefined, lines };
  } catch (error) {
    return { error, lines };
  }
}

function header(request: ReceivedRequest | undefined, name: string): string {
  const value = request?.headers[name];
  assert.equal(typeof value, 'string', `header ${name}`);
  return value as string;
}

// Each request verifies with our verifier and the official one, and its payload matches the schema.
function assertAuthentic(requests: readonly ReceivedRequest[], secrets: readonly string[]): void {
  for (const request of requests) {
    const payload = verifyCallback(request.body, request.headers, secrets);
    assert.deepEqual(validate(PAYLOAD_SCHEMA, payload), []);
    const headers = Object.fromEntries(['webhook-id', 'webhook-timestamp', 'webhook-signature'].map((name) => [name, header(request, name)]));
    for (const secret of secrets) assert.deepEqual(new Webhook(secret).verify(request.body.toString('utf8'), headers), payload);
  }
}

function assertCallbackError(error: unknown, facts: { attempts: number; status: number | undefined }): CallbackError {
  assert.ok(error instanceof CallbackError, `expected CallbackError, got ${String(error)}`);
  assert.equal(error.attempts, facts.attempts, error.message);
  assert.equal(error.status, facts.status, error.message);
  return error;
}

test('a succeeded run delivers exactly one signed, schema-valid backup.succeeded callback', async (t) => {
  const hook = await receiver(t);
  const secret = newSecret();
  const { error, lines } = await send(callbackConfig(hook.url, [secret]), succeededReport());
  assert.equal(error, undefined);
  assert.equal(hook.requests.length, 1);
  assertAuthentic(hook.requests, [secret]);
  const [request] = hook.requests;
  assert.equal(request?.method, 'POST');
  assert.equal(header(request, 'content-type'), 'application/json');
  assert.match(header(request, 'user-agent'), /^planb-backup\/\d+\.\d+\.\d+/);
  assert.equal(header(request, 'webhook-id'), 'msg_20250102T030405Z-0a1b2c3d');
  assert.equal((JSON.parse(request?.body.toString('utf8') ?? '') as { type: string }).type, 'backup.succeeded');
  assert.ok(lines.some((line) => line.includes('callback delivered')));
});

test('a failed run delivers exactly one backup.failed callback with the error', async (t) => {
  const hook = await receiver(t);
  const secret = newSecret();
  const { error } = await send(callbackConfig(hook.url, [secret]), failedReport());
  assert.equal(error, undefined);
  assert.equal(hook.requests.length, 1);
  assertAuthentic(hook.requests, [secret]);
  const payload = verifyCallback(hook.requests[0]?.body ?? '', hook.requests[0]?.headers ?? {}, secret);
  assert.equal(payload.type, 'backup.failed');
  assert.equal(payload.type === 'backup.failed' && payload.data.error.code, 'DUMP_FAILED');
});

test('during rotation the callback carries one signature per secret and verifies with either', async (t) => {
  const hook = await receiver(t);
  const secrets = [newSecret(), newSecret()];
  const { error } = await send(callbackConfig(hook.url, secrets), succeededReport());
  assert.equal(error, undefined);
  assert.equal(header(hook.requests[0], 'webhook-signature').split(' ').length, 2);
  for (const secret of secrets) assert.ok(verifyCallback(hook.requests[0]?.body ?? '', hook.requests[0]?.headers ?? {}, secret));
});

test('a receiver answering 500 twice then 200 gets 3 attempts with one webhook-id and fresh timestamps, all verifying', async (t) => {
  const hook = await receiver(t, [500, 500, 200]);
  const secret = newSecret();
  let tick = 0;
  const now = (): number => Date.now() + 1000 * tick++;
  const { error, lines } = await send(callbackConfig(hook.url, [secret]), succeededReport(), { now });
  assert.equal(error, undefined);
  assert.equal(hook.requests.length, 3);
  assert.equal(new Set(hook.requests.map((r) => header(r, 'webhook-id'))).size, 1);
  const timestamps = hook.requests.map((r) => Number(header(r, 'webhook-timestamp')));
  assert.equal(new Set(timestamps).size, 3, 'each attempt is stamped with its own time');
  assert.equal(new Set(hook.requests.map((r) => header(r, 'webhook-signature'))).size, 3, 'each attempt is signed afresh');
  assert.equal(new Set(hook.requests.map((r) => r.body.toString('base64'))).size, 1, 'the body is built once');
  assertAuthentic(hook.requests, [secret]);
  const attempts = lines.map((line) => JSON.parse(line) as { callback?: { attempt?: number; status?: number } }).filter((line) => line.callback?.status !== undefined);
  assert.deepEqual(attempts.map((line) => [line.callback?.attempt, line.callback?.status]), [[1, 500], [2, 500], [3, 200]]);
});

test('408, 429 and 503 are retried, and so is a dropped connection', async (t) => {
  const hook = await receiver(t, [408, 429, 503, 'reset', 204]);
  const { error } = await send(callbackConfig(hook.url, [newSecret()]), succeededReport());
  assert.equal(error, undefined);
  assert.equal(hook.requests.length, 5);
});

test('a receiver that is down exhausts CALLBACK_RETRIES and ends in a CallbackError without a status', async () => {
  const url = await downUrl();
  const { error, lines } = await send(callbackConfig(url, [newSecret()], { retries: 3 }), succeededReport());
  const failure = assertCallbackError(error, { attempts: 4, status: undefined });
  assert.match(failure.message, /retries exhausted/);
  assert.match(failure.message, /ECONNREFUSED/);
  assert.equal(lines.filter((line) => line.includes('callback attempt')).length, 4);
});

test('the run deadline bounds delivery: an always-failing receiver stops when the signal aborts', async (t) => {
  const hook = await receiver(t, [], 503);
  const started = performance.now();
  const { error } = await send(callbackConfig(hook.url, [newSecret()], { retries: 1000 }), succeededReport(), {
    signal: AbortSignal.timeout(400),
    backoff: { baseMs: 20, capMs: 50, maxRetryAfterMs: 5000 },
  });
  assert.ok(error instanceof CallbackError, String(error));
  assert.match(error.message, /deadline/);
  assert.ok(error.attempts >= 1 && error.attempts < 1001, `${error.attempts} attempts`);
  // The deadline may cut the last attempt before its request reaches the receiver; every earlier one arrived.
  assert.ok([error.attempts, error.attempts - 1].includes(hook.requests.length), `${error.attempts} attempts, ${hook.requests.length} received`);
  assert.ok(performance.now() - started < 10_000, 'stopped by the signal, not by running out of retries');
});

test('the deadline also cuts short a request the receiver never answers', async (t) => {
  const hook = await receiver(t, [], 'hang');
  const { error } = await send(callbackConfig(hook.url, [newSecret()], { timeoutMs: 60_000 }), succeededReport(), { signal: AbortSignal.timeout(300) });
  assertCallbackError(error, { attempts: 1, status: undefined });
});

test('a request that times out (CALLBACK_TIMEOUT) is retried', async (t) => {
  const hook = await receiver(t, ['hang'], 204);
  const { error } = await send(callbackConfig(hook.url, [newSecret()], { timeoutMs: 200 }), succeededReport());
  assert.equal(error, undefined);
  assert.equal(hook.requests.length, 2);
});

test('a signal already aborted sends nothing', async (t) => {
  const hook = await receiver(t);
  const { error } = await send(callbackConfig(hook.url, [newSecret()]), succeededReport(), { signal: AbortSignal.abort() });
  assertCallbackError(error, { attempts: 0, status: undefined });
  assert.equal(hook.requests.length, 0);
});

test('400 is not retried', async (t) => {
  const hook = await receiver(t, [{ status: 400, body: 'bad signature' }]);
  const { error, lines } = await send(callbackConfig(hook.url, [newSecret()]), succeededReport());
  const failure = assertCallbackError(error, { attempts: 1, status: 400 });
  assert.match(failure.message, /not retried/);
  assert.equal(hook.requests.length, 1);
  assert.ok(lines.some((line) => line.includes('bad signature')), 'the receiver\'s reason is logged');
});

test('410 Gone stops delivery at once', async (t) => {
  const hook = await receiver(t, [410]);
  const { error } = await send(callbackConfig(hook.url, [newSecret()]), succeededReport());
  const failure = assertCallbackError(error, { attempts: 1, status: 410 });
  assert.match(failure.message, /410 Gone/);
  assert.equal(hook.requests.length, 1);
});

test('a redirect is not followed and counts as a failure', async (t) => {
  const elsewhere = await receiver(t);
  const hook = await receiver(t, [{ status: 307, headers: { location: elsewhere.url } }]);
  const { error } = await send(callbackConfig(hook.url, [newSecret()]), succeededReport());
  assertCallbackError(error, { attempts: 1, status: 307 });
  assert.equal(elsewhere.requests.length, 0);
});

test('Retry-After is honoured: the next attempt waits at least that long', async (t) => {
  const hook = await receiver(t, [{ status: 503, headers: { 'retry-after': '1' } }, 200]);
  const secret = newSecret();
  const { error } = await send(callbackConfig(hook.url, [secret]), succeededReport());
  assert.equal(error, undefined);
  assert.equal(hook.requests.length, 2);
  const [first, second] = hook.requests;
  assert.ok((second?.receivedAt ?? 0) - (first?.receivedAt ?? 0) >= 990, 'waited for Retry-After, not the 5 ms backoff');
  const timestamps = hook.requests.map((r) => Number(header(r, 'webhook-timestamp')));
  assert.ok((timestamps[1] ?? 0) > (timestamps[0] ?? 0), 'the retry carries a later timestamp');
  assertAuthentic(hook.requests, [secret]);
});

test('a Retry-After longer than the job may wait ends delivery instead of stalling the run', async (t) => {
  const hook = await receiver(t, [{ status: 429, headers: { 'retry-after': '3600' } }]);
  const { error } = await send(callbackConfig(hook.url, [newSecret()]), succeededReport());
  const failure = assertCallbackError(error, { attempts: 1, status: 429 });
  assert.match(failure.message, /asked to wait 3600 s/);
});

test('CALLBACK_HEADERS are sent but cannot replace the signature headers', async (t) => {
  const hook = await receiver(t);
  const secret = newSecret();
  const headers = { 'X-Api-Key': GATEWAY_KEY, 'Webhook-Signature': 'v1,forged', 'Content-Type': 'text/plain' };
  const { error, lines } = await send(callbackConfig(hook.url, [secret], { headers }), succeededReport());
  assert.equal(error, undefined);
  assert.equal(header(hook.requests[0], 'x-api-key'), GATEWAY_KEY);
  assert.equal(header(hook.requests[0], 'content-type'), 'application/json');
  assert.ok(!header(hook.requests[0], 'webhook-signature').includes('forged'));
  assertAuthentic(hook.requests, [secret]);
  assert.ok(lines.some((line) => line.includes('Webhook-Signature') && line.includes('ignored')));
});

test('no secret appears in the payload or in any log line, whatever happens', async (t) => {
  const secret = newSecret();
  const hook = await receiver(t, [500, { status: 400, body: `echo: ${GATEWAY_KEY} ${secret}` }]);
  const url = `${hook.url}?token=${URL_TOKEN}`;
  const report = failedReport({ error: { stage: 'storage', code: 'STORAGE_DENIED', message: `denied for key ${STORAGE_KEY} and password ${DB_PASSWORD}` } });
  const config = callbackConfig(url, [secret], { headers: { authorization: `Bearer ${GATEWAY_KEY}` } });
  const { error, lines } = await send(config, report, { secrets: [DB_PASSWORD, STORAGE_KEY, secret] });
  assertCallbackError(error, { attempts: 2, status: 400 });

  const signatures = hook.requests.map((r) => header(r, 'webhook-signature').slice(3));
  const forbidden = [secret, secret.slice('whsec_'.length), DB_PASSWORD, STORAGE_KEY, GATEWAY_KEY, URL_TOKEN, ...signatures];
  const texts = [...hook.requests.map((r) => r.body.toString('utf8')), ...lines, (error as Error).message];
  for (const text of texts) for (const value of forbidden) assert.ok(!text.includes(value), `a secret leaked into: ${text}`);
  assert.ok(lines.length >= 2, 'the attempts were logged');
  assertAuthentic(hook.requests, [secret]);
});
