// Encrypted backups end to end, for every engine that runs here: the bundled job dumps a real database
// into a local folder, encrypted to two age public keys; the reference `age` CLI decrypts the object with
// either secret key, the stock `zstd` decompresses it, and the engine's own tool restores it. The job
// itself never sees a secret key.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { EXIT_CODES } from '../../src/exit-codes.ts';
import { runJob, type JobResult } from '../support/job.ts';
import { findBinary, requireBinaries } from '../support/require-binary.ts';
import { postgresJobEnv, startMariadb, startPostgres, startRedis } from '../support/servers.ts';

const run = promisify(execFile);
const MAX_BUFFER = 256 * 1024 * 1024;

let work: string;
let keys: { identityFile: string; recipient: string; secret: string }[] = [];

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'planb-encrypted-'));
  if (findBinary('age-keygen') === undefined) return;
  keys = await Promise.all(
    ['ops', 'escrow'].map(async (name) => {
      const identityFile = join(work, `${name}.key`);
      await run('age-keygen', ['-o', identityFile]);
      const secret = (await readFile(identityFile, 'utf8')).split('\n').find((line) => line.startsWith('AGE-SECRET-KEY-')) ?? '';
      return { identityFile, recipient: (await run('age-keygen', ['-y', identityFile])).stdout.trim(), secret };
    }),
  );
});
after(() => rm(work, { recursive: true, force: true }));

type Stored = { key: string; plain: Buffer };

// Checks what the job said and stored, then opens the object with each secret key (age CLI) and
// decompresses it (zstd CLI); returns the dump.
async function openStored(result: JobResult, bucket: string, extension: string): Promise<Stored> {
  assert.equal(result.code, 0, result.stdout);
  const recipients = keys.map((key) => key.recipient);
  const started = result.lines.find((line) => line.message === 'backup started') as unknown as { encryption: { format: string; recipients: string[] } };
  assert.deepEqual(started.encryption, { format: 'age', recipients }, 'the log names the recipients');
  const storedLine = result.lines.find((line) => line.message === 'backup stored') as unknown as { object: { key: string; sha256: string; bytes: number; encryption: unknown } };
  assert.deepEqual(storedLine.object.encryption, { format: 'age', recipients });
  for (const key of keys) assert.ok(!result.stdout.includes(key.secret.slice(15)), 'no secret key anywhere in the log');

  const files = (await readdir(bucket, { recursive: true })).filter((name) => name.includes('.'));
  assert.equal(files.length, 1, files.join(', '));
  const key = files[0] ?? '';
  assert.ok(key.endsWith(`${extension}.zst.age`), key);
  assert.equal(storedLine.object.key, key);
  const sealed = await readFile(join(bucket, key));
  assert.equal(storedLine.object.sha256, createHash('sha256').update(sealed).digest('hex'), 'the checksum is of what the store holds');
  assert.equal(storedLine.object.bytes, sealed.length);
  assert.match(sealed.subarray(0, 22).toString('latin1'), /^age-encryption\.org\/v1\n/);

  let plain: Buffer | undefined;
  for (const { identityFile } of keys) {
    const compressed = execFileSync('age', ['-d', '-i', identityFile, join(bucket, key)], { maxBuffer: MAX_BUFFER });
    const dump = execFileSync('zstd', ['-dc'], { input: compressed, maxBuffer: MAX_BUFFER });
    if (plain !== undefined) assert.ok(dump.equals(plain), 'both keys open the same dump');
    plain = dump;
  }
  return { key, plain: plain ?? Buffer.alloc(0) };
}

describe('encrypted backups restore with the stock tools after age -d', () => {
  test('postgresql: age -d | zstd -dc | pg_restore', async (t) => {
    if (!requireBinaries(t, ['age', 'age-keygen', 'zstd', 'initdb', 'pg_dump', 'pg_restore', 'psql'])) return;
    const pg = await startPostgres();
    try {
      await pg.createDatabase('shop');
      await pg.sql(`CREATE TABLE orders (id int PRIMARY KEY, note text, payload bytea);
        INSERT INTO orders SELECT i, 'Zoë 🚀 ' || i, decode(md5(i::text), 'hex') FROM generate_series(1, 5000) i;`, 'shop');
      const bucket = join(work, 'pg');
      const result = await runJob({
        ...postgresJobEnv(pg), DB_NAME: 'shop',
        STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket,
        BACKUP_ENCRYPTION_RECIPIENTS: keys.map((key) => key.recipient).join('\n'),
      });
      const { plain } = await openStored(result, bucket, '.dump');
      assert.equal(plain.subarray(0, 5).toString(), 'PGDMP');
      await pg.createDatabase('restored');
      execFileSync(join(pg.binDir, 'pg_restore'), ['--no-owner', '--exit-on-error', `--host=${pg.host}`, `--port=${pg.port}`, `--username=${pg.user}`, '--dbname=restored'], {
        input: plain,
        env: { PATH: process.env.PATH, PGPASSFILE: pg.passFile },
      });
      const digest = (database: string) => pg.sql(`SELECT count(*), md5(string_agg(o::text, '|' ORDER BY id)) FROM orders o;`, database);
      assert.equal(await digest('restored'), await digest('shop'));

      // The job's own restore: age -d, zstd, then pg_restore's stdin; a wrong key never reaches pg_restore.
      const jobEnv = { ...postgresJobEnv(pg), STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket, JOB_MODE: 'restore', RESTORE_KEY: 'latest', RESTORE_SOURCE: 'shop' };
      await pg.createDatabase('by_job');
      const stranger = join(work, 'pg-stranger.key');
      await run('age-keygen', ['-o', stranger]);
      const refused = await runJob({ ...jobEnv, DB_NAME: 'by_job', RESTORE_IDENTITY_FILE: stranger });
      assert.equal(refused.code, EXIT_CODES.CONFIG.code, refused.stdout);
      assert.match(refused.lines.at(-1)?.message ?? '', /identity file holds none of the keys/);
      const restored = await runJob({ ...jobEnv, DB_NAME: 'by_job', RESTORE_IDENTITY_FILE: keys[1]?.identityFile ?? '' });
      assert.equal(restored.code, 0, restored.stdout);
      assert.equal(await digest('by_job'), await digest('shop'));
    } finally {
      await pg.stop();
    }
  });

  test('mariadb: age -d | zstd -dc | mariadb, recipients from BACKUP_ENCRYPTION_RECIPIENTS_FILE', async (t) => {
    if (!requireBinaries(t, ['age', 'age-keygen', 'zstd', 'mariadbd', 'mariadb', 'mariadb-dump'])) return;
    const db = await startMariadb();
    try {
      await db.createDatabase('shop');
      await db.sql(`CREATE TABLE orders (id INT PRIMARY KEY, note VARCHAR(100) CHARACTER SET utf8mb4, payload BLOB) ENGINE=InnoDB;
        INSERT INTO orders VALUES (1, 'Zoë 🚀', 0x00ff10), (2, NULL, NULL), (3, '', '');`, 'shop');
      const recipientsFile = join(work, 'recipients.txt');
      await writeFile(recipientsFile, `# who can open the backups\n${keys.map((key) => key.recipient).join('\n')}\n`);
      const bucket = join(work, 'mariadb');
      const result = await runJob({
        DB_TYPE: 'mariadb', DB_HOST: db.host, DB_PORT: String(db.port), DB_NAME: 'shop', DB_USERNAME: db.user, DB_PASSWORD: db.password,
        STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket,
        BACKUP_ENCRYPTION_RECIPIENTS_FILE: recipientsFile,
      });
      const { plain } = await openStored(result, bucket, '.sql');
      await db.createDatabase('restored');
      const defaults = join(work, 'mariadb.cnf');
      await writeFile(defaults, `[client]\npassword=${db.password}\n`, { mode: 0o600 });
      execFileSync('mariadb', [`--defaults-extra-file=${defaults}`, `--host=${db.host}`, `--port=${db.port}`, '--protocol=TCP', `--user=${db.user}`, 'restored'], { input: plain });
      const rows = (database: string) => db.sql('SELECT id, note, HEX(payload) FROM orders ORDER BY id;', database);
      assert.equal(await rows('restored'), await rows('shop'));
    } finally {
      await db.stop();
    }
  });

  test('redis: age -d | zstd -dc into a fresh server', async (t) => {
    if (!requireBinaries(t, ['age', 'age-keygen', 'zstd', 'redis-server', 'redis-cli'])) return;
    const source = await startRedis();
    try {
      await source.cli('SET', 'plain', 'héllo 🚀');
      await source.cli('HSET', 'user:1', 'name', 'Zoë');
      const bucket = join(work, 'redis');
      const result = await runJob({
        DB_TYPE: 'redis', DB_HOST: source.host, DB_PORT: String(source.port), DB_PASSWORD: source.password,
        STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket,
        BACKUP_ENCRYPTION_RECIPIENTS: keys.map((key) => key.recipient).join(' '),
      });
      const { plain } = await openStored(result, bucket, '.rdb');
      const restoreDir = await mkdtemp(join(work, 'redis-restore-'));
      await writeFile(join(restoreDir, 'restored.rdb'), plain);
      const restored = await startRedis({ dir: restoreDir, dbfilename: 'restored.rdb' });
      try {
        assert.equal(await restored.cli('GET', 'plain'), await source.cli('GET', 'plain'));
        assert.equal(await restored.cli('HGET', 'user:1', 'name'), 'Zoë');
      } finally {
        await restored.stop();
      }
    } finally {
      await source.stop();
    }
  });

  test('sqlite: age -d | zstd -dc | sqlite3', async (t) => {
    if (!requireBinaries(t, ['age', 'age-keygen', 'zstd', 'sqlite3'])) return;
    const source = join(work, 'shop.db');
    const sqlite = (file: string, input: string) => execFileSync('sqlite3', ['-bail', file], { input }).toString();
    sqlite(source, `CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT, payload BLOB);
      INSERT INTO orders VALUES (1, 'Zoë 🚀', x'00ff10'), (2, NULL, randomblob(70000));`);
    const bucket = join(work, 'sqlite');
    const result = await runJob({
      DB_TYPE: 'sqlite', DB_NAME: source, STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket,
      BACKUP_ENCRYPTION_RECIPIENTS: keys.map((key) => key.recipient).join('\n'),
    });
    const { plain } = await openStored(result, bucket, '.sql');
    const restored = join(work, 'restored.db');
    execFileSync('sqlite3', ['-bail', restored], { input: plain });
    const rows = (file: string) => sqlite(file, 'SELECT id, note, hex(payload) FROM orders ORDER BY id;');
    assert.equal(rows(restored), rows(source));
  });

  test('a recipient that is not an age key stops the job before any work, naming the variable', async (t) => {
    if (!requireBinaries(t, ['sqlite3'])) return;
    const bucket = join(work, 'bad-recipient');
    const result = await runJob({
      DB_TYPE: 'sqlite', DB_NAME: join(work, 'shop.db'), STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket,
      BACKUP_ENCRYPTION_RECIPIENTS: 'age1notakey',
    });
    assert.equal(result.code, EXIT_CODES.CONFIG.code, result.stdout);
    assert.match(result.stdout, /BACKUP_ENCRYPTION_RECIPIENTS: entry #1 .*is not an age X25519 public key/);
    assert.deepEqual(await readdir(bucket).catch(() => []), []);
  });

  test('an age that dies mid-stream fails the run in the encrypt stage and stores nothing', async (t) => {
    if (!requireBinaries(t, ['sqlite3', 'zstd'])) return;
    const bin = await mkdtemp(join(work, 'dying-age-'));
    // Reads a little, writes a little, then fails the way a killed or broken encryptor would.
    await writeFile(join(bin, 'age'), '#!/bin/sh\nhead -c 1000 > /dev/null\nprintf partial\necho "age: error: simulated failure" >&2\nexit 3\n', { mode: 0o755 });
    const source = join(work, 'big.db');
    execFileSync('sqlite3', [source], { input: 'CREATE TABLE t (b BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) INSERT INTO t SELECT randomblob(1000) FROM n;' });
    const bucket = join(work, 'dying-age');
    const result = await runJob({
      PATH: `${bin}:${process.env.PATH ?? ''}`,
      DB_TYPE: 'sqlite', DB_NAME: source, STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket,
      BACKUP_ENCRYPTION_RECIPIENTS: keys[0]?.recipient ?? 'age12v4gxrjtaee9u3zfyer59d6zulr8xejzv9k5aeffa046hqga5cnqzwnxpn',
    });
    assert.equal(result.code, EXIT_CODES.DUMP_FAILED.code, result.stdout);
    const failed = result.lines.at(-1) as unknown as { stage: string; message: string };
    assert.equal(failed.stage, 'encrypt');
    assert.match(failed.message, /age failed to encrypt \(exit code 3\): age: error: simulated failure/);
    assert.deepEqual(await readdir(bucket, { recursive: true }).catch(() => []), []);
  });

  test('an image without age fails before the dump starts and stores nothing', async (t) => {
    if (!requireBinaries(t, ['age-keygen', 'sqlite3', 'zstd'])) return;
    const bin = await mkdtemp(join(work, 'bin-'));
    for (const tool of ['sqlite3', 'zstd']) execFileSync('ln', ['-s', findBinary(tool) ?? tool, join(bin, tool)]);
    const bucket = join(work, 'no-age');
    const result = await runJob({
      PATH: bin,
      DB_TYPE: 'sqlite', DB_NAME: join(work, 'shop.db'), STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket,
      BACKUP_ENCRYPTION_RECIPIENTS: keys[0]?.recipient ?? '',
    });
    assert.equal(result.code, EXIT_CODES.INTERNAL.code, result.stdout);
    assert.match(result.lines.at(-1)?.message ?? '', /age is not on PATH/);
    assert.equal(result.lines.some((line) => line.message === 'backup started'), false);
    assert.deepEqual(await readdir(bucket).catch(() => []), []);
  });
});

// JOB_MODE=restore and verify on `.age` objects: age reads RESTORE_IDENTITY_FILE itself and decrypts
// right after the download, before decompression. What the age CLI encrypted restores too.
describe('the job restores and verifies encrypted objects with RESTORE_IDENTITY_FILE', () => {
  const sqlite = (file: string, input: string) => execFileSync('sqlite3', ['-bail', file], { input }).toString();
  const rows = (file: string) => sqlite(file, 'SELECT id, note, hex(payload) FROM orders ORDER BY id; SELECT count(*) FROM visits;');
  let dir: string;
  let source: string;
  let key = '';
  const env = (extra: Record<string, string> = {}) => ({ DB_TYPE: 'sqlite', DB_NAME: source, STORAGE_TYPE: 'local', STORAGE_BUCKET: join(dir, 'bucket'), ...extra });
  before(async () => {
    dir = await mkdtemp(join(work, 'job-decrypts-'));
    source = join(dir, 'shop.db');
    if (findBinary('sqlite3') === undefined) return;
    sqlite(source, `CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT, payload BLOB); CREATE TABLE visits (at);
      INSERT INTO orders VALUES (1, 'Zoë 🚀', x'00ff10'), (2, NULL, randomblob(70000));
      WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 250) INSERT INTO visits SELECT i FROM n;`);
  });

  test('sqlite: an encrypted backup with facts verifies and restores with either identity', async (t) => {
    if (!requireBinaries(t, ['age', 'age-keygen', 'zstd', 'sqlite3'])) return;
    const backup = await runJob(env({ BACKUP_FACTS: 'true', BACKUP_ENCRYPTION_RECIPIENTS: keys.map((k) => k.recipient).join(' ') }));
    assert.equal(backup.code, 0, backup.stdout);
    const stored = await readdir(join(dir, 'bucket'));
    key = stored.find((name) => name.endsWith('.sql.zst.age')) ?? '';
    assert.ok(key, 'an encrypted object was stored');
    // Its facts (table names, row counts) are sealed to the same recipients; nothing is stored in the clear.
    assert.deepEqual(stored.filter((name) => name !== key).sort(), [`${key}.facts.json.age`]);
    const sealedFacts = await readFile(join(dir, 'bucket', `${key}.facts.json.age`));
    assert.ok(!sealedFacts.includes('visits'), 'no table name in the sealed facts');
    for (const k of keys) {
      const opened = JSON.parse(execFileSync('age', ['-d', '-i', k.identityFile], { input: sealedFacts }).toString()) as { counts: unknown };
      assert.deepEqual(opened.counts, { orders: 2, visits: 250 });
    }

    const verify = await runJob(env({ JOB_MODE: 'verify', RESTORE_KEY: 'latest', RESTORE_IDENTITY_FILE: keys[1]?.identityFile ?? '' }));
    assert.equal(verify.code, 0, verify.stdout);
    assert.deepEqual(verify.lines.find((line) => line.message.startsWith('verification passed'))?.counts, { orders: 2, visits: 250 });
    assert.match(String(verify.lines.find((line) => line.message === 'restore started')?.decrypt), /^age -d with identities from /);

    // A plain sidecar, as earlier versions wrote beside an encrypted object, is still read.
    await writeFile(join(dir, 'bucket', `${key}.facts.json`), execFileSync('age', ['-d', '-i', keys[0]?.identityFile ?? ''], { input: sealedFacts }));
    await rm(join(dir, 'bucket', `${key}.facts.json.age`));
    const older = await runJob(env({ JOB_MODE: 'verify', RESTORE_KEY: key, RESTORE_IDENTITY_FILE: keys[0]?.identityFile ?? '' }));
    assert.equal(older.code, 0, older.stdout);
    assert.deepEqual(older.lines.find((line) => line.message.startsWith('verification passed'))?.counts, { orders: 2, visits: 250 });
    await rm(join(dir, 'bucket', `${key}.facts.json`));

    const target = join(dir, 'restored.db');
    const restore = await runJob(env({ JOB_MODE: 'restore', RESTORE_KEY: key, DB_NAME: target, RESTORE_IDENTITY_FILE: keys[0]?.identityFile ?? '' }));
    assert.equal(restore.code, 0, restore.stdout);
    assert.equal(rows(target), rows(source));
    for (const k of keys) assert.ok(!verify.stdout.includes(k.secret.slice(15)) && !restore.stdout.includes(k.secret.slice(15)), 'no secret key in any log');
  });

  test('a wrong identity, or none, is a configuration error and restores nothing', async (t) => {
    if (!requireBinaries(t, ['age', 'age-keygen', 'zstd', 'sqlite3']) || !key) return;
    const stranger = join(dir, 'stranger.key');
    await run('age-keygen', ['-o', stranger]);
    const target = join(dir, 'wrong.db');
    const wrong = await runJob(env({ JOB_MODE: 'restore', RESTORE_KEY: key, DB_NAME: target, RESTORE_IDENTITY_FILE: stranger }));
    assert.equal(wrong.code, EXIT_CODES.CONFIG.code, wrong.stdout);
    assert.match(wrong.lines.at(-1)?.message ?? '', /identity file holds none of the keys this backup was encrypted to/);
    assert.deepEqual((await readdir(dir)).filter((name) => name.startsWith('wrong.db') || name.includes('partial')), [], 'no file, not even a partial one');

    const none = await runJob(env({ JOB_MODE: 'verify', RESTORE_KEY: key }));
    assert.equal(none.code, EXIT_CODES.CONFIG.code, none.stdout);
    assert.match(none.lines.at(-1)?.message ?? '', /RESTORE_IDENTITY_FILE is required: .* is encrypted with age/);

    const missing = await runJob(env({ JOB_MODE: 'verify', RESTORE_KEY: key, RESTORE_IDENTITY_FILE: join(dir, 'nowhere.key') }));
    assert.equal(missing.code, EXIT_CODES.CONFIG.code, missing.stdout);
    assert.match(missing.stdout, /RESTORE_IDENTITY_FILE: .*nowhere\.key does not exist/);
  });

  test('an encrypted object cut short in storage fails verification and restore (age authenticates the end)', async (t) => {
    if (!requireBinaries(t, ['age', 'age-keygen', 'zstd', 'sqlite3']) || !key) return;
    const bucket = join(dir, 'bucket');
    const cutKey = key.replace('.sql.zst.age', '-cut.sql.zst.age');
    const sealed = await readFile(join(bucket, key));
    await writeFile(join(bucket, cutKey), sealed.subarray(0, sealed.length - 17));
    const verify = await runJob(env({ JOB_MODE: 'verify', RESTORE_KEY: cutKey, RESTORE_IDENTITY_FILE: keys[0]?.identityFile ?? '' }));
    assert.equal(verify.code, EXIT_CODES.VERIFY_FAILED.code, verify.stdout);
    assert.match(verify.lines.at(-1)?.message ?? '', /did not restore: age could not decrypt .*damaged, truncated or not an age file/);

    // A restore of it fails in age (not in zstd or sqlite3, which see their input end early) and
    // leaves no database behind.
    const target = join(dir, 'cut.db');
    const restore = await runJob(env({ JOB_MODE: 'restore', RESTORE_KEY: cutKey, DB_NAME: target, RESTORE_IDENTITY_FILE: keys[0]?.identityFile ?? '' }));
    assert.equal(restore.code, EXIT_CODES.DUMP_FAILED.code, restore.stdout);
    assert.match(restore.lines.at(-1)?.message ?? '', /age could not decrypt .*damaged, truncated or not an age file/);
    assert.deepEqual((await readdir(dir)).filter((name) => name.startsWith('cut.db') || name.includes('partial')), [], 'no file, not even a partial one');
  });

  test('what `age -r` encrypted restores through the job', async (t) => {
    if (!requireBinaries(t, ['age', 'age-keygen', 'zstd', 'sqlite3'])) return;
    const bucket = join(dir, 'by-hand');
    const handKey = 'sqlite-shop-20261202T010203Z-0a1b2c3d.sql.zst.age';
    execFileSync('mkdir', ['-p', bucket]);
    const dump = execFileSync('sqlite3', [source, '.dump']);
    const compressed = execFileSync('zstd', ['-c'], { input: dump, maxBuffer: MAX_BUFFER });
    await writeFile(join(bucket, handKey), execFileSync('age', ['-r', keys[1]?.recipient ?? ''], { input: compressed, maxBuffer: MAX_BUFFER }));
    const target = join(dir, 'from-cli.db');
    const restore = await runJob(env({ STORAGE_BUCKET: bucket, JOB_MODE: 'restore', RESTORE_KEY: 'latest', RESTORE_SOURCE: 'shop', DB_NAME: target, RESTORE_IDENTITY_FILE: keys[1]?.identityFile ?? '' }));
    assert.equal(restore.code, 0, restore.stdout);
    assert.equal(rows(target), rows(source));
  });

  test('a backup job takes no identity, and does not verify what it cannot decrypt', async (t) => {
    if (!requireBinaries(t, ['sqlite3'])) return;
    const result = await runJob(env({ BACKUP_VERIFY: 'true', BACKUP_ENCRYPTION_RECIPIENTS: keys[0]?.recipient ?? '', RESTORE_IDENTITY_FILE: keys[0]?.identityFile ?? '' }));
    assert.equal(result.code, EXIT_CODES.CONFIG.code, result.stdout);
    assert.match(result.stdout, /RESTORE_IDENTITY_FILE applies only to JOB_MODE=restore or verify/);
    assert.match(result.stdout, /BACKUP_VERIFY cannot verify an encrypted backup/);
  });
});
