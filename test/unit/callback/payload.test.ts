import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildPayload, clip, MAX_PAYLOAD_BYTES } from '../../../src/callback/payload.ts';
import { PAYLOAD_SCHEMA, validate } from './json-schema.ts';
import type { RunReport } from '../../../src/report.ts';
import { DB_PASSWORD, failedReport, STORAGE_KEY, succeededReport } from './reports.ts';

function bytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value));
}

test('a succeeded run becomes backup.succeeded with the stored object and no error', () => {
  const payload = buildPayload(succeededReport());
  assert.deepEqual(validate(PAYLOAD_SCHEMA, payload), []);
  assert.equal(payload.type, 'backup.succeeded');
  assert.equal(payload.timestamp, '2025-01-02T03:04:09.250Z');
  assert.equal(payload.data.status, 'succeeded');
  assert.equal(payload.data.exitCode, 0);
  assert.deepEqual(payload.data.database, { type: 'postgresql', host: 'db.internal', name: 'shop' });
  assert.deepEqual(payload.data.dumpTool, { name: 'pg_dump', version: '17.2' });
  assert.equal(payload.data.durationMs, 4250);
  assert.deepEqual(payload.data.durations, { prepareMs: 120, streamMs: 4100 });
  assert.equal(payload.data.startedAt, '2025-01-02T03:04:05.000Z');
  assert.equal(payload.data.producer.name, 'planb-backup');
  assert.equal(payload.type === 'backup.succeeded' && payload.data.object.sha256, 'a'.repeat(64));
  assert.equal('error' in payload.data, false);
  assert.equal('platform' in payload.data, false);
});

test('a failed run becomes backup.failed with the error and no object', () => {
  const payload = buildPayload(failedReport());
  assert.deepEqual(validate(PAYLOAD_SCHEMA, payload), []);
  assert.equal(payload.type, 'backup.failed');
  assert.equal(payload.data.status, 'failed');
  assert.equal(payload.data.exitCode, 65);
  assert.equal('object' in payload.data, false);
  assert.deepEqual(payload.type === 'backup.failed' && payload.data.error, {
    stage: 'dump',
    code: 'DUMP_FAILED',
    message: 'pg_dump exited with code 1: server closed the connection unexpectedly',
  });
});

test('every kind of failure the exit-code table knows validates against the schema', () => {
  const failures = [
    { stage: 'storage', code: 'STORAGE_DENIED', exitCode: 73 },
    { stage: 'deadline', code: 'DEADLINE', exitCode: 124 },
    { stage: 'signal', code: 'SIGTERM', exitCode: 143 },
    { stage: 'internal', code: 'INTERNAL', exitCode: 70 },
  ] as const;
  for (const { stage, code, exitCode } of failures) {
    const payload = buildPayload(failedReport({ exitCode, exitName: code, error: { stage, code, message: `${stage} failed` } }));
    assert.deepEqual(validate(PAYLOAD_SCHEMA, payload), [], code);
  }
});

test('unknown database host and name are null, and the platform context appears only when present', () => {
  const payload = buildPayload(
    succeededReport({
      database: { type: 'sqlite', host: undefined, name: undefined },
      platform: {
        cloudRun: { job: 'nightly', execution: 'nightly-abc', taskIndex: 0, taskAttempt: undefined },
        kubernetes: { namespace: 'db', pod: undefined, job: 'backup-123' },
      },
    }),
  );
  assert.deepEqual(validate(PAYLOAD_SCHEMA, payload), []);
  assert.deepEqual(payload.data.database, { type: 'sqlite', host: null, name: null });
  assert.deepEqual(payload.data.platform, {
    cloudRun: { job: 'nightly', execution: 'nightly-abc', taskIndex: 0, taskAttempt: null },
    kubernetes: { namespace: 'db', pod: null, job: 'backup-123' },
  });
});

test('the object URL loses any user:password@ and query string, and is otherwise left alone', () => {
  const leaky = succeededReport();
  leaky.object = { ...leaky.object!, url: `https://acct:${STORAGE_KEY}@acct.blob.core.windows.net/c/a%20b.zst?sv=2024&sig=${STORAGE_KEY}` };
  const payload = buildPayload(leaky);
  assert.equal(payload.type === 'backup.succeeded' && payload.data.object.url, 'https://acct.blob.core.windows.net/c/a%20b.zst');
  assert.ok(!JSON.stringify(payload).includes(STORAGE_KEY));
  const plain = buildPayload(succeededReport());
  assert.equal(plain.type === 'backup.succeeded' && plain.data.object.url, succeededReport().object?.url);
});

test('secrets passed in are scrubbed from the error message', () => {
  const report = failedReport({ error: { stage: 'dump', code: 'DUMP_FAILED', message: `auth failed for password=${DB_PASSWORD}` } });
  const body = JSON.stringify(buildPayload(report, { secrets: [DB_PASSWORD] }));
  assert.ok(!body.includes(DB_PASSWORD));
  assert.ok(body.includes('password=[redacted]'));
});

test('a huge error message is truncated to 4 KiB and the payload stays under 20 KB', () => {
  const payload = buildPayload(failedReport({ error: { stage: 'dump', code: 'DUMP_FAILED', message: 'é'.repeat(100_000) } }));
  assert.deepEqual(validate(PAYLOAD_SCHEMA, payload), []);
  const message = payload.type === 'backup.failed' ? payload.data.error.message : '';
  assert.ok(Buffer.byteLength(message) <= 4096);
  assert.ok(message.endsWith('…'));
  assert.ok(bytes(payload) < MAX_PAYLOAD_BYTES);
});

test('a message of control characters, which JSON escapes six-fold, still fits under 20 KB', () => {
  const payload = buildPayload(failedReport({ error: { stage: 'dump', code: 'DUMP_FAILED', message: '\u0001'.repeat(50_000) } }));
  assert.ok(bytes(payload) < MAX_PAYLOAD_BYTES, `${bytes(payload)} bytes`);
  assert.deepEqual(validate(PAYLOAD_SCHEMA, payload), []);
});

test('every long field is clipped so that even a pathological report stays under 20 KB', () => {
  const long = 'x'.repeat(10_000);
  const report = failedReport({
    runId: long,
    database: { type: 'postgresql', host: long, name: long },
    dumpTool: { name: long, version: long },
    platform: { cloudRun: { job: long, execution: long, taskIndex: 1, taskAttempt: 2 }, kubernetes: { namespace: long, pod: long, job: long } },
    error: { stage: 'dump', code: 'DUMP_FAILED', message: long },
  });
  const payload = buildPayload(report);
  assert.ok(bytes(payload) < MAX_PAYLOAD_BYTES, `${bytes(payload)} bytes`);
  assert.deepEqual(validate(PAYLOAD_SCHEMA, payload), []);
});

test('clip cuts on a character boundary and marks the cut', () => {
  assert.equal(clip('short', 10), 'short');
  assert.equal(clip('ééééé', 7), 'éé…');
  assert.equal(clip('abc', 2), '');
  assert.equal(Buffer.byteLength(clip('😀'.repeat(10), 13)), 11);
});

test('the schema validator catches a broken payload (so the schema checks can fail)', () => {
  const good = buildPayload(succeededReport());
  const withoutObject = { ...good, data: { ...good.data, object: undefined } };
  assert.notDeepEqual(validate(PAYLOAD_SCHEMA, JSON.parse(JSON.stringify(withoutObject))), []);
  assert.notDeepEqual(validate(PAYLOAD_SCHEMA, { ...good, data: { ...good.data, status: 'failed' } }), []);
  assert.notDeepEqual(validate(PAYLOAD_SCHEMA, { ...good, data: { ...good.data, password: 'x' } }), []);
  assert.notDeepEqual(validate(PAYLOAD_SCHEMA, { ...good, timestamp: 'yesterday' }), []);
  const failed = buildPayload(failedReport());
  assert.notDeepEqual(validate(PAYLOAD_SCHEMA, { ...failed, data: { ...failed.data, object: good.type === 'backup.succeeded' ? good.data.object : {} } }), []);
});

test('the schema carries a versioned $id', () => {
  assert.match(String(PAYLOAD_SCHEMA.$id), /^urn:planb-backup:callback-payload:\d+\.\d+\.\d+$/);
});

const verification = (overrides: Partial<NonNullable<RunReport['verification']>> = {}): NonNullable<RunReport['verification']> => ({
  status: 'passed', unit: 'rows', factsFound: true, tables: 2, rowsCompared: 5003, mismatches: [], counts: { 'public.orders': 5000, 'public.customers': 3 }, durationMs: 2345, ...overrides,
});

test('a restore and a verification are restore.* and verify.* events carrying the object they read', () => {
  const restored = buildPayload(succeededReport({ operation: 'restore' }));
  assert.deepEqual(validate(PAYLOAD_SCHEMA, restored), []);
  assert.equal(restored.type, 'restore.succeeded');
  const verified = buildPayload(succeededReport({ operation: 'verify', verification: verification() }));
  assert.deepEqual(validate(PAYLOAD_SCHEMA, verified), []);
  assert.equal(verified.type, 'verify.succeeded');
  assert.deepEqual(verified.data.verification, { status: 'passed', unit: 'rows', factsFound: true, tables: 2, rowsCompared: 5003, mismatches: [], durationMs: 2345 });
  const failed = buildPayload(failedReport({ operation: 'restore', exitCode: 78, exitName: 'CONFIG', error: { stage: 'config', code: 'CONFIG', message: 'DB_NAME: holds tables' } }));
  assert.deepEqual(validate(PAYLOAD_SCHEMA, failed), []);
  assert.equal(failed.type, 'restore.failed');
});

test('a backup whose verification failed is backup.failed naming the stored object and the mismatches, and stays small', () => {
  const mismatches = Array.from({ length: 500 }, (_, i) => ({ name: `schema.table_${i}_${'x'.repeat(600)}`, expected: i, actual: i + 1 }));
  const report = succeededReport({
    status: 'failed', exitCode: 80, exitName: 'VERIFY_FAILED', error: { stage: 'verify', code: 'VERIFY_FAILED', message: 'counts differ' },
    verification: verification({ status: 'failed', mismatches }),
  });
  const payload = buildPayload(report);
  assert.deepEqual(validate(PAYLOAD_SCHEMA, payload), []);
  assert.equal(payload.type, 'backup.failed');
  assert.equal(payload.data.status === 'failed' && payload.data.object?.key, report.object?.key);
  assert.equal(payload.data.verification?.mismatches.length, 20);
  assert.ok(bytes(payload) < MAX_PAYLOAD_BYTES, `${bytes(payload)} bytes`);
  // Without a verification, a failed backup never names an object: the schema refuses it.
  const data: Record<string, unknown> = { ...payload.data };
  delete data.verification;
  assert.notDeepEqual(validate(PAYLOAD_SCHEMA, { ...payload, data }), []);
});

test('an encrypted, write-once object names its recipients and its retention in the payload, and the schema holds them to form', () => {
  const recipient = 'age1wjz4x5kdme559uq08hl5usulyw5a0tkgsx8rpyjmw8h6xyz9rvtqa3n5y4';
  const report = succeededReport();
  report.object = {
    ...report.object!,
    key: `${report.object!.key}.age`,
    encryption: { format: 'age', recipients: [recipient] },
    retention: { mode: 'compliance', until: '2025-01-16T03:04:05.000Z' },
  };
  const payload = buildPayload(report);
  assert.ok(payload.type === 'backup.succeeded');
  assert.deepEqual(payload.data.object.encryption, { format: 'age', recipients: [recipient] });
  assert.deepEqual(payload.data.object.retention, { mode: 'compliance', until: '2025-01-16T03:04:05.000Z' });
  assert.deepEqual(validate(PAYLOAD_SCHEMA, payload), []);
  const object = payload.data.object;
  assert.notDeepEqual(validate(PAYLOAD_SCHEMA, { ...payload, data: { ...payload.data, object: { ...object, encryption: { format: 'age', recipients: ['AGE-SECRET-KEY-1XYZ'] } } } }), []);
  assert.notDeepEqual(validate(PAYLOAD_SCHEMA, { ...payload, data: { ...payload.data, object: { ...object, encryption: { format: 'age', recipients: [] } } } }), []);
  assert.notDeepEqual(validate(PAYLOAD_SCHEMA, { ...payload, data: { ...payload.data, object: { ...object, retention: { mode: 'forever', until: 'soon' } } } }), []);
  assert.equal('encryption' in (buildPayload(succeededReport()) as { data: { object: object } }).data.object, false);
});
