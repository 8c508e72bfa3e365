// etcd end to end against a real server with authentication on: seed keys, back up with the bundled
// job (etcdctl writes the snapshot to a private temp file, which is streamed and removed), restore
// the stored object with the stock restore tool into a new data directory, start etcd on it and
// compare every key. Then the ways it fails: wrong password, no server.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { zstdDecompressSync } from 'node:zlib';
import { snapshotHashCheck } from '../../src/engines/etcd.ts';
import { EXIT_CODES } from '../../src/exit-codes.ts';
import { freePort } from '../support/ports.ts';
import { findBinary, requireBinaries } from '../support/require-binary.ts';
import { runJob } from '../support/job.ts';
import { ETCD_MEMBER, startEtcd, type EtcdServer } from '../support/servers.ts';

let work: string;
let server: EtcdServer | undefined;
// A 1 MiB value, binary-looking text, unicode keys and many small keys.
const LARGE = 'x'.repeat(1024 * 1024);

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'planb-etcd-'));
  if (!findBinary('etcd') || !findBinary('etcdctl')) return;
  server = await startEtcd();
  await server.ctl(['put', '/config/zoë/“quotes”', 'line1\nline2\ttab']);
  await server.ctl(['put', '/config/田中', '🚀']);
  await server.ctl(['put', '/large'], LARGE);
  // Two transactions (etcd allows 128 operations in one): no compares, 100 puts each, no failure branch.
  for (const half of [0, 100]) {
    const puts = Array.from({ length: 100 }, (_, i) => `put /many/${String(half + i).padStart(3, '0')} ${(half + i) ** 2}`);
    await server.ctl(['txn'], `\n${puts.join('\n')}\n\n\n`);
  }
});
after(async () => {
  await server?.stop();
  await rm(work, { recursive: true, force: true });
});

// The job's environment: its own TMPDIR, so a test can see that the snapshot file is gone afterwards.
async function jobEnv(name: string, extra: Record<string, string> = {}): Promise<{ env: Record<string, string>; bucket: string; temp: string }> {
  const bucket = join(work, `${name}-bucket`);
  const temp = join(work, `${name}-tmp`);
  await mkdir(temp);
  const env = {
    DB_TYPE: 'etcd',
    DB_HOST: server?.host ?? '127.0.0.1',
    DB_PORT: String(server?.port ?? 0),
    DB_USERNAME: 'root',
    DB_PASSWORD: server?.password ?? '',
    STORAGE_TYPE: 'local',
    STORAGE_BUCKET: bucket,
    TMPDIR: temp,
    ...extra,
  };
  return { env, bucket, temp };
}

describe('etcd', () => {
  test('an etcd backup restores with the stock restore tool into a new member holding the same keys', async (t) => {
    if (!requireBinaries(t, ['etcd', 'etcdctl']) || !server) return;
    const { env, bucket, temp } = await jobEnv('roundtrip');
    const result = await runJob(env);
    assert.equal(result.code, 0, result.stdout);
    assert.ok(!result.stdout.includes(server.password), 'the password never appears in the logs');
    const started = result.lines.find((line) => line.message === 'backup started') as unknown as { spoolSteps: string[][]; tool: { version: string } };
    assert.ok(started.spoolSteps[0]?.includes('snapshot'), 'etcdctl snapshot save writes the spool');
    assert.ok(!JSON.stringify(started.spoolSteps).includes(server.password), 'no password in argv');
    assert.match(started.tool.version, /etcdctl version: 3\./);
    const written = result.lines.find((line) => typeof line.spoolBytes === 'number');
    assert.ok(written && (written.spoolBytes as number) > LARGE.length, 'the size of the snapshot file is logged');
    assert.deepEqual(await readdir(temp), [], 'the snapshot file and the private directory are gone');

    const keys = await readdir(bucket);
    assert.equal(keys.length, 1);
    assert.match(keys[0] ?? '', /^etcd-etcd-\d{8}T\d{6}Z-[0-9a-f]{8}\.db\.zst$/);
    const snapshot = zstdDecompressSync(await readFile(join(bucket, keys[0] ?? '')));
    const check = snapshotHashCheck();
    check.write(snapshot);
    assert.equal(check.verdict(), undefined, 'the snapshot ends with the SHA-256 of its content');

    // etcd 3.5+ restores with etcdutl; 3.4 (Debian 12) with etcdctl snapshot restore. Both check the hash.
    const file = join(work, 'restore.db');
    await writeFile(file, snapshot);
    const dataDir = join(work, 'restored-data');
    const peer = `http://127.0.0.1:${await freePort()}`;
    const restoreTool = findBinary('etcdutl') ?? findBinary('etcdctl') ?? 'etcdctl';
    execFileSync(restoreTool, ['snapshot', 'restore', file, `--data-dir=${dataDir}`, `--name=${ETCD_MEMBER}`, `--initial-cluster=${ETCD_MEMBER}=${peer}`, `--initial-advertise-peer-urls=${peer}`], { stdio: 'pipe' });
    const restored = await startEtcd({ dataDir, password: server.password });
    try {
      const pairs = await restored.pairs();
      assert.deepEqual(pairs, await server.pairs());
      assert.equal(pairs.length, 203);
      assert.ok(pairs.some(([key, value]) => key === '/large' && value === LARGE));
    } finally {
      await restored.stop();
    }
  });

  test('the job restores an etcd backup into a new data directory, refuses one that holds files, and verifies it in a throw-away member', async (t) => {
    if (!requireBinaries(t, ['etcd', 'etcdctl']) || !server) return;
    const { env, bucket } = await jobEnv('jobrestore', { BACKUP_VERIFY: 'true' });
    const backedUp = await runJob(env);
    assert.equal(backedUp.code, 0, backedUp.stdout);
    const verified = backedUp.lines.find((line) => String(line.message).startsWith('verification passed'));
    assert.ok(verified, 'the backup is verified in a throw-away etcd right after it is stored');
    assert.deepEqual((verified as unknown as { counts: Record<string, number> }).counts, { keys: 203 });
    const key = (await readdir(bucket)).find((name) => name.endsWith('.db.zst')) ?? '';

    const dataDir = join(work, 'job-restored');
    const restore = { ...env, JOB_MODE: 'restore', RESTORE_KEY: 'latest', RESTORE_DATA_DIR: dataDir, BACKUP_VERIFY: 'false' };
    const restored = await runJob(restore);
    assert.equal(restored.code, 0, restored.stdout);
    assert.ok(!restored.stdout.includes(server.password), 'the password never appears in the logs');
    const member = await startEtcd({ dataDir, name: 'default', password: server.password });
    try {
      assert.deepEqual(await member.pairs(), await server.pairs(), 'the restored member holds every key and value');
    } finally {
      await member.stop();
    }

    const again = await runJob(restore);
    assert.equal(again.code, EXIT_CODES.CONFIG.code, again.stdout);
    assert.match(again.stdout, /RESTORE_DATA_DIR: .* already holds files/);

    const verify = await runJob({ ...env, JOB_MODE: 'verify', RESTORE_KEY: key, BACKUP_VERIFY: 'false' });
    assert.equal(verify.code, 0, verify.stdout);
    assert.ok(verify.lines.some((line) => String(line.message).startsWith('verification passed: 1 keyspaces, 203 keys compared')), verify.stdout);

    // Facts that no longer match what the object holds: the verification fails and names the count.
    const factsFile = join(bucket, `${key}.facts.json`);
    const facts = JSON.parse(await readFile(factsFile, 'utf8')) as { counts: Record<string, number> };
    await writeFile(factsFile, JSON.stringify({ ...facts, counts: { keys: 204 } }));
    const mismatch = await runJob({ ...env, JOB_MODE: 'verify', RESTORE_KEY: key, BACKUP_VERIFY: 'false' });
    assert.equal(mismatch.code, EXIT_CODES.VERIFY_FAILED.code, mismatch.stdout);
    assert.match(mismatch.stdout, /keys: expected 204, restored 203/);
  });

  test('an encrypted etcd backup restores through the job with the age identity, into a new data directory', async (t) => {
    if (!requireBinaries(t, ['etcd', 'etcdctl', 'age', 'age-keygen']) || !server) return;
    const identityFile = join(work, 'identity.txt');
    execFileSync('age-keygen', ['-o', identityFile], { stdio: 'pipe' });
    const recipient = execFileSync('age-keygen', ['-y', identityFile], { encoding: 'utf8' }).trim();
    const { env, bucket } = await jobEnv('encrypted', { BACKUP_ENCRYPTION_RECIPIENTS: recipient });
    const backedUp = await runJob(env);
    assert.equal(backedUp.code, 0, backedUp.stdout);
    assert.match((await readdir(bucket))[0] ?? '', /\.db\.zst\.age$/);

    const dataDir = join(work, 'encrypted-restored');
    // A restore run gets the identity, not the recipients.
    const plain: Record<string, string> = { ...env };
    delete plain.BACKUP_ENCRYPTION_RECIPIENTS;
    const restored = await runJob({ ...plain, JOB_MODE: 'restore', RESTORE_KEY: 'latest', RESTORE_DATA_DIR: dataDir, RESTORE_IDENTITY_FILE: identityFile });
    assert.equal(restored.code, 0, restored.stdout);
    const member = await startEtcd({ dataDir, name: 'default', password: server.password });
    try {
      assert.deepEqual(await member.pairs(), await server.pairs());
    } finally {
      await member.stop();
    }
  });

  test('a wrong etcd password fails as DB_AUTH, stores nothing and leaves no temp file', async (t) => {
    if (!requireBinaries(t, ['etcd', 'etcdctl']) || !server) return;
    const { env, bucket, temp } = await jobEnv('wrongpw', { DB_PASSWORD: 'not-the-password' });
    const result = await runJob(env);
    assert.equal(result.code, EXIT_CODES.DB_AUTH.code, result.stdout);
    assert.ok(!result.stdout.includes('not-the-password'));
    assert.deepEqual(await readdir(bucket).catch(() => []), []);
    assert.deepEqual(await readdir(temp), []);
  });

  test('an etcd that does not answer fails as DB_UNREACHABLE', async (t) => {
    if (!requireBinaries(t, ['etcdctl'])) return;
    const { env, bucket, temp } = await jobEnv('closed', { DB_PORT: String(await freePort()) });
    const result = await runJob(env);
    assert.equal(result.code, EXIT_CODES.DB_UNREACHABLE.code, result.stdout);
    assert.deepEqual(await readdir(bucket).catch(() => []), []);
    assert.deepEqual(await readdir(temp), []);
  });
});
