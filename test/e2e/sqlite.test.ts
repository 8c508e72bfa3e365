// SQLite end to end: seed a database, back it up with the bundled job, restore the object with the
// stock sqlite3 shell into a fresh file, and compare contents.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { zstdDecompressSync } from 'node:zlib';
import { EXIT_CODES } from '../../src/exit-codes.ts';
import { requireBinaries } from '../support/require-binary.ts';
import { runJob } from '../support/job.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'planb-sqlite-'));
});
after(() => rm(dir, { recursive: true, force: true }));

const sqlite = (file: string, input: string) => execFileSync('sqlite3', ['-bail', file], { input, maxBuffer: 64 * 1024 * 1024 }).toString();

// Content in a form that two databases can be compared by: every row of every table, in order.
function contents(file: string): string {
  return sqlite(file, `
    SELECT 'customers', id, name, hex(avatar), note FROM customers ORDER BY id;
    SELECT 'orders', id, customer_id, total, length(payload), hex(substr(payload, 1, 64)) FROM orders ORDER BY id;
    SELECT 'schema', type, name, sql FROM sqlite_schema ORDER BY name;`);
}

test('a sqlite backup restores with the stock sqlite3 shell to identical contents', async (t) => {
  if (!requireBinaries(t, ['sqlite3'])) return;
  const source = join(dir, 'shop.db');
  sqlite(source, `
    PRAGMA journal_mode=WAL;
    CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, avatar BLOB, note TEXT);
    CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), total NUMERIC, payload BLOB);
    CREATE INDEX orders_by_customer ON orders(customer_id);
    CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100;
    CREATE TRIGGER touch AFTER INSERT ON orders BEGIN SELECT 1; END;
    INSERT INTO customers VALUES (1, 'Zoë “quotes” O''Brien', x'00ff00ff7f', NULL), (2, '田中 太郎 🚀', NULL, 'line1\nline2'), (3, '', zeroblob(16), '');
    INSERT INTO orders (customer_id, total, payload) VALUES (1, 12.5, NULL), (2, 1e6, randomblob(3000000));
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
      INSERT INTO orders (customer_id, total, payload) SELECT 3, i * 1.25, randomblob(i % 97) FROM n;`);

  const bucket = join(dir, 'bucket');
  const result = await runJob({ DB_TYPE: 'sqlite', DB_NAME: source, STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket });
  assert.equal(result.code, 0, result.stdout);
  const [key] = await readdir(bucket);
  assert.match(key ?? '', /^sqlite-shop-\d{8}T\d{6}Z-[0-9a-f]{8}\.sql\.zst$/);

  const restored = join(dir, 'restored.db');
  const dump = zstdDecompressSync(execFileSync('cat', [join(bucket, key ?? '')], { maxBuffer: 64 * 1024 * 1024 }));
  execFileSync('sqlite3', ['-bail', restored], { input: dump });
  assert.equal(contents(restored), contents(source));
});

test('a missing sqlite file is reported as unreachable and leaves nothing', async (t) => {
  if (!requireBinaries(t, ['sqlite3'])) return;
  const bucket = join(dir, 'missing-bucket');
  const result = await runJob({ DB_TYPE: 'sqlite', DB_NAME: join(dir, 'nope.db'), STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket });
  assert.equal(result.code, EXIT_CODES.DB_UNREACHABLE.code, result.stdout);
  assert.deepEqual(await readdir(bucket).catch(() => []), []);
});
