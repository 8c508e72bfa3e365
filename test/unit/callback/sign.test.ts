import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { secretKey, signatureHeader } from '../../../src/callback/sign.ts';
import { newSecret } from './reports.ts';

const ID = 'msg_20250102T030405Z-0a1b2c3d';
const BODY = '{"type":"backup.succeeded","data":{"note":"ünïcødé ✓"}}';

test('a signature we produce verifies with the official standardwebhooks verifier', () => {
  const secret = newSecret();
  const timestamp = Math.floor(Date.now() / 1000);
  const headers = { 'webhook-id': ID, 'webhook-timestamp': String(timestamp), 'webhook-signature': signatureHeader([secret], ID, timestamp, BODY) };
  assert.deepEqual(new Webhook(secret).verify(BODY, headers), JSON.parse(BODY));
});

test('our signature equals the one standardwebhooks computes for the same message', () => {
  const secret = newSecret();
  const timestamp = 1_735_787_045;
  assert.equal(signatureHeader([secret], ID, timestamp, BODY), new Webhook(secret).sign(ID, new Date(timestamp * 1000), BODY));
});

test('during rotation there is one v1 signature per secret and each secret verifies on its own', () => {
  const secrets = [newSecret(), newSecret()];
  const timestamp = Math.floor(Date.now() / 1000);
  const header = signatureHeader(secrets, ID, timestamp, BODY);
  assert.equal(header.split(' ').length, 2);
  assert.ok(header.split(' ').every((entry) => /^v1,[A-Za-z0-9+/]{43}=$/.test(entry)));
  for (const secret of secrets) {
    const headers = { 'webhook-id': ID, 'webhook-timestamp': String(timestamp), 'webhook-signature': header };
    assert.deepEqual(new Webhook(secret).verify(BODY, headers), JSON.parse(BODY));
  }
});

test('the signature is HMAC-SHA256 of id.timestamp.body keyed with the decoded secret bytes', () => {
  const secret = newSecret();
  const expected = createHmac('sha256', Buffer.from(secret.slice(6), 'base64')).update(`${ID}.42.${BODY}`).digest('base64');
  assert.equal(signatureHeader([secret], ID, 42, BODY), `v1,${expected}`);
  assert.equal(signatureHeader([secret], ID, 42, Buffer.from(BODY)), `v1,${expected}`);
});

test('a change of one byte in the body changes the signature', () => {
  const secret = newSecret();
  assert.notEqual(signatureHeader([secret], ID, 42, BODY), signatureHeader([secret], ID, 42, BODY.replace('✓', 'x')));
});

test('a secret that is not base64 after whsec_ is refused, and signing needs at least one secret', () => {
  assert.throws(() => secretKey('whsec_not base64!'), TypeError);
  assert.throws(() => signatureHeader([], ID, 42, BODY), TypeError);
});
