import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { buildPayload } from '../../../src/callback/payload.ts';
import { signatureHeader } from '../../../src/callback/sign.ts';
import { verifyCallback, WebhookVerificationError, type VerificationFailure } from '../../../src/callback/verify.ts';
import { newSecret, succeededReport } from './reports.ts';

const ID = 'msg_20250102T030405Z-0a1b2c3d';
const NOW_MS = 1_735_787_045_000;
const NOW = NOW_MS / 1000;
const now = (): number => NOW_MS;
const BODY = JSON.stringify(buildPayload(succeededReport()));

function signed(secrets: readonly string[], options: { timestamp?: number; body?: string } = {}): Record<string, string> {
  const timestamp = options.timestamp ?? NOW;
  return {
    'webhook-id': ID,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signatureHeader(secrets, ID, timestamp, options.body ?? BODY),
  };
}

function rejects(reason: VerificationFailure, run: () => unknown): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof WebhookVerificationError, `expected WebhookVerificationError, got ${String(error)}`);
    assert.equal(error.reason, reason, error.message);
    return true;
  });
}

test('a callback we signed verifies and its parsed payload comes back', () => {
  const secret = newSecret();
  const payload = verifyCallback(BODY, signed([secret]), secret, { now });
  assert.deepEqual(payload, JSON.parse(BODY));
  assert.equal(payload.type, 'backup.succeeded');
});

test('what the official standardwebhooks library signs, our verifier accepts', () => {
  const secret = newSecret();
  const timestamp = new Date();
  const headers = { 'webhook-id': ID, 'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)), 'webhook-signature': new Webhook(secret).sign(ID, timestamp, BODY) };
  assert.equal(verifyCallback(BODY, headers, secret).data.runId, '20250102T030405Z-0a1b2c3d');
  assert.equal(verifyCallback(Buffer.from(BODY), headers, [secret]).type, 'backup.succeeded');
});

test('a tampered body is rejected', () => {
  const secret = newSecret();
  const headers = signed([secret]);
  rejects('signature', () => verifyCallback(BODY.replace('"bytes":123456', '"bytes":123457'), headers, secret, { now }));
  rejects('signature', () => verifyCallback(`${BODY} `, headers, secret, { now }));
});

test('a tampered webhook-id or webhook-timestamp is rejected', () => {
  const secret = newSecret();
  rejects('signature', () => verifyCallback(BODY, { ...signed([secret]), 'webhook-id': 'msg_other' }, secret, { now }));
  rejects('signature', () => verifyCallback(BODY, { ...signed([secret]), 'webhook-timestamp': String(NOW - 1) }, secret, { now }));
});

test('a signature made with another secret is rejected', () => {
  rejects('signature', () => verifyCallback(BODY, signed([newSecret()]), newSecret(), { now }));
});

test('timestamps older or newer than the tolerance are rejected, those within it accepted', () => {
  const secret = newSecret();
  rejects('timestamp', () => verifyCallback(BODY, signed([secret], { timestamp: NOW - 301 }), secret, { now }));
  rejects('timestamp', () => verifyCallback(BODY, signed([secret], { timestamp: NOW + 301 }), secret, { now }));
  assert.ok(verifyCallback(BODY, signed([secret], { timestamp: NOW - 300 }), secret, { now }));
  assert.ok(verifyCallback(BODY, signed([secret], { timestamp: NOW + 300 }), secret, { now }));
});

test('the tolerance is configurable', () => {
  const secret = newSecret();
  rejects('timestamp', () => verifyCallback(BODY, signed([secret], { timestamp: NOW - 31 }), secret, { now, toleranceSeconds: 30 }));
  assert.ok(verifyCallback(BODY, signed([secret], { timestamp: NOW - 600 }), secret, { now, toleranceSeconds: 900 }));
});

test('a request missing any of the three webhook headers is rejected as malformed', () => {
  const secret = newSecret();
  for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature']) {
    const headers: Record<string, string | undefined> = signed([secret]);
    headers[name] = undefined;
    rejects('malformed', () => verifyCallback(BODY, headers, secret, { now }));
    rejects('malformed', () => verifyCallback(BODY, { ...signed([secret]), [name]: '' }, secret, { now }));
  }
  rejects('malformed', () => verifyCallback(BODY, { ...signed([secret]), 'webhook-timestamp': '1735787045.5' }, secret, { now }));
});

test('during rotation a message signed by either configured secret verifies', () => {
  const [old, fresh] = [newSecret(), newSecret()];
  assert.ok(verifyCallback(BODY, signed([old]), [old, fresh], { now }));
  assert.ok(verifyCallback(BODY, signed([fresh]), [old, fresh], { now }));
  assert.ok(verifyCallback(BODY, signed([fresh]), `${old} ${fresh}`, { now }), 'a space-separated string works like CALLBACK_SECRET');
  assert.ok(verifyCallback(BODY, signed([old, fresh]), fresh, { now }), 'one of several signatures matching is enough');
});

test('signatures of unknown versions and malformed entries are ignored, not matched', () => {
  const secret = newSecret();
  const good = signed([secret])['webhook-signature'] ?? '';
  const value = good.slice(3);
  rejects('signature', () => verifyCallback(BODY, { ...signed([secret]), 'webhook-signature': `v1a,${value} v2,${value} ${value} v1,` }, secret, { now }));
  assert.ok(verifyCallback(BODY, { ...signed([secret]), 'webhook-signature': `v1a,${value} v1,!!! ${good}` }, secret, { now }));
});

test('header names are matched case-insensitively and fetch Headers work too', () => {
  const secret = newSecret();
  const upper = Object.fromEntries(Object.entries(signed([secret])).map(([name, value]) => [name.toUpperCase(), value]));
  assert.ok(verifyCallback(BODY, upper, secret, { now }));
  assert.ok(verifyCallback(BODY, new Headers(signed([secret])), secret, { now }));
});

test('an authentic body that is not a Plan B callback is rejected as malformed', () => {
  const secret = newSecret();
  rejects('malformed', () => verifyCallback('not json', signed([secret], { body: 'not json' }), secret, { now }));
  rejects('malformed', () => verifyCallback('{"type":"other"}', signed([secret], { body: '{"type":"other"}' }), secret, { now }));
});

test('an unusable configured secret is a TypeError, not a verification failure', () => {
  assert.throws(() => verifyCallback(BODY, signed([newSecret()]), [], { now }), TypeError);
  assert.throws(() => verifyCallback(BODY, signed([newSecret()]), 'whsec_***', { now }), TypeError);
});

test('no error message reveals the secret or the expected signature', () => {
  const secret = newSecret();
  const headers = signed([secret]);
  const expected = (headers['webhook-signature'] ?? '').slice(3);
  for (const run of [
    () => verifyCallback(`${BODY}x`, headers, secret, { now }),
    () => verifyCallback(BODY, headers, newSecret(), { now }),
    () => verifyCallback(BODY, signed([secret], { timestamp: 1 }), secret, { now }),
  ]) {
    assert.throws(run, (error: Error) => !error.message.includes(secret.slice(6)) && !error.message.includes(expected));
  }
});
