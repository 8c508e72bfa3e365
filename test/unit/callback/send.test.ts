import assert from 'node:assert/strict';
import { test } from 'node:test';
import { backoffDelay, DEFAULT_BACKOFF, parseRetryAfter, webhookId } from '../../../src/callback/send.ts';

test('the backoff doubles from the base, is jittered between half and all of it, and is capped', () => {
  const low = () => 0;
  const high = () => 1;
  assert.deepEqual([1, 2, 3, 4].map((retry) => backoffDelay(retry, DEFAULT_BACKOFF, high)), [1000, 2000, 4000, 8000]);
  assert.deepEqual([1, 2, 3, 4].map((retry) => backoffDelay(retry, DEFAULT_BACKOFF, low)), [500, 1000, 2000, 4000]);
  assert.equal(backoffDelay(20, DEFAULT_BACKOFF, high), 30_000);
  assert.equal(backoffDelay(20, DEFAULT_BACKOFF, low), 15_000);
});

test('production defaults are sane: 1 s base, 30 s cap, and five retries fit in about a minute', () => {
  assert.equal(DEFAULT_BACKOFF.baseMs, 1000);
  assert.equal(DEFAULT_BACKOFF.capMs, 30_000);
  const worst = [1, 2, 3, 4, 5].reduce((sum, retry) => sum + backoffDelay(retry, DEFAULT_BACKOFF, () => 1), 0);
  assert.equal(worst, 31_000);
});

test('Retry-After is read as delay-seconds or as an HTTP date', () => {
  const now = Date.parse('2025-01-02T03:04:05Z');
  assert.equal(parseRetryAfter('7', now), 7000);
  assert.equal(parseRetryAfter(' 0 ', now), 0);
  assert.equal(parseRetryAfter('Thu, 02 Jan 2025 03:04:35 GMT', now), 30_000);
  assert.equal(parseRetryAfter('Thu, 02 Jan 2025 03:00:00 GMT', now), 0, 'a date in the past means now');
  assert.equal(parseRetryAfter(undefined, now), undefined);
  assert.equal(parseRetryAfter('soon', now), undefined);
  assert.equal(parseRetryAfter('-5', now), undefined);
});

test('the webhook-id is derived from the run id, so every retry of a run carries the same one', () => {
  assert.equal(webhookId('20250102T030405Z-0a1b2c3d'), 'msg_20250102T030405Z-0a1b2c3d');
  assert.equal(webhookId('a.b c'), 'msg_a_b_c');
});
