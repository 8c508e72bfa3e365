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
import { startMariadb, startPostgres, startRedis } from '../support/servers.ts';

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
        PATH: `${pg.binDir}:${process.env.PATH ?? ''}`,
        DB_TYPE: 'postgresql', DB_HOST: pg.host, DB_PORT: String(pg.port), DB_NAME: 'shop', DB_USERNAME: pg.user, DB_PASSWORD: pg.password,
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
