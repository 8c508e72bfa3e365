// Generates the benchmark's databases: a PostgreSQL shop (customers, orders, events) whose dump is
// about the requested size and compresses like real data (~3–4× with zstd, not pgbench's blank
// filler), a MariaDB with the same shape, and a Redis with hashes and strings.
import { execa } from 'execa';
import type { MariadbServer, PostgresServer, RedisServer } from '../support/servers.ts';

// Bytes of plain-dump text one row of each table produces on average (measured with pg_dump on
// this schema; rows are generated from the row number, so the figure is stable).
const ORDER_ROW_BYTES = 167;
// events and customers are sized relative to orders, as in a shop.
const EVENTS_PER_ORDER = 2;
const EVENT_ROW_BYTES = 127;
const CUSTOMERS_PER_ORDER = 0.1;
const CUSTOMER_ROW_BYTES = 165;
// Rows per INSERT … SELECT: one statement stays well under a minute even on a loaded 2-core machine.
const BATCH_ROWS = 500_000;
// A generation statement that runs longer than this is a wedged server, not a slow one.
const STATEMENT_TIMEOUT_MS = 10 * 60_000;

// Words the text columns are built from: real text repeats, random hex alone would not.
const WORDS = [
  'express', 'standard', 'gift', 'return', 'fragile', 'leave', 'at', 'door', 'call', 'before', 'delivery', 'please',
  'blue', 'large', 'small', 'organic', 'cotton', 'refill', 'bundle', 'discount', 'warehouse', 'north', 'south', 'priority',
];

const POSTGRES_SCHEMA = `
CREATE TABLE customers (
  id bigint PRIMARY KEY, email text NOT NULL, name text NOT NULL, country char(2) NOT NULL,
  created_at timestamptz NOT NULL, profile jsonb NOT NULL);
CREATE TABLE orders (
  id bigint PRIMARY KEY, customer_id bigint NOT NULL, status text NOT NULL, total numeric(12,2) NOT NULL,
  currency char(3) NOT NULL, created_at timestamptz NOT NULL, shipping_address text NOT NULL, note text, token uuid NOT NULL);
CREATE TABLE events (
  id bigint NOT NULL, order_id bigint NOT NULL, kind text NOT NULL, at timestamptz NOT NULL, payload jsonb NOT NULL);
CREATE INDEX orders_customer ON orders (customer_id);
`;

function sqlWords(): string {
  return `ARRAY[${WORDS.map((w) => `'${w}'`).join(',')}]`;
}

// One INSERT … SELECT per table batch; `g` is the row number.
function postgresBatches(orders: number): { table: string; sql: string }[] {
  const word = (expr: string) => `w.a[1 + (${expr}) % ${WORDS.length}]`;
  const series = (from: number, to: number) => `generate_series(${from}::bigint, ${to}::bigint) g, (SELECT ${sqlWords()} AS a) w`;
  const customers = Math.max(1, Math.round(orders * CUSTOMERS_PER_ORDER));
  const events = orders * EVENTS_PER_ORDER;
  const batches: { table: string; sql: string }[] = [];
  const ranges = (total: number, each: (from: number, to: number) => string, table: string) => {
    for (let from = 1; from <= total; from += BATCH_ROWS) batches.push({ table, sql: each(from, Math.min(total, from + BATCH_ROWS - 1)) });
  };
  ranges(customers, (from, to) => `INSERT INTO customers SELECT g,
    'user' || g || '@' || ${word('g * 7')} || '.example.com',
    initcap(${word('g')}) || ' ' || initcap(${word('g / 3')}) || ' ' || substr(md5(g::text), 1, 6),
    (ARRAY['DE','FR','US','GB','NL','PL','ES','IT'])[1 + g % 8],
    timestamptz '2020-01-01' + g * interval '37 seconds',
    jsonb_build_object('newsletter', g % 3 = 0, 'segment', ${word('g % 11')}, 'score', g % 1000, 'tags', jsonb_build_array(${word('g % 5')}, ${word('g % 13')}))
    FROM ${series(from, to)}`, 'customers');
  ranges(orders, (from, to) => `INSERT INTO orders SELECT g, 1 + (g * 7919) % ${customers},
    (ARRAY['new','paid','shipped','delivered','returned'])[1 + g % 5],
    ((g * 104729) % 100000) / 100.0,
    (ARRAY['EUR','USD','GBP'])[1 + g % 3],
    timestamptz '2021-01-01' + g * interval '3 seconds',
    (g % 9999) || ' ' || initcap(${word('g')}) || ' Street, ' || (10000 + g % 89999) || ' ' || initcap(${word('g / 7')}) || 'ville',
    CASE WHEN g % 4 = 0 THEN NULL ELSE ${word('g')} || ' ' || ${word('g / 2')} || ' ' || ${word('g / 5')} || ' ' || md5(g::text) END,
    md5(g::text || 'token')::uuid
    FROM ${series(from, to)}`, 'orders');
  ranges(events, (from, to) => `INSERT INTO events SELECT g, 1 + g / ${EVENTS_PER_ORDER},
    (ARRAY['created','paid','packed','shipped','delivered','refunded'])[1 + g % 6],
    timestamptz '2021-01-01' + g * interval '1500 milliseconds',
    jsonb_build_object('ip', '10.' || (g % 256) || '.' || (g / 256 % 256) || '.' || (g % 7), 'agent', ${word('g % 17')},
      'amount', (g * 31) % 10000, 'ref', substr(md5(g::text), 1, 16))
    FROM ${series(from, to)}`, 'events');
  return batches;
}

// Expected plain-dump bytes for a number of orders.
function postgresBytes(orders: number): number {
  return orders * (ORDER_ROW_BYTES + EVENTS_PER_ORDER * EVENT_ROW_BYTES + CUSTOMERS_PER_ORDER * CUSTOMER_ROW_BYTES);
}

// Fills `database` so its dump is about `bytes`; two sessions at once (one per core).
export async function seedPostgres(server: PostgresServer, database: string, bytes: number): Promise<void> {
  const orders = Math.max(1000, Math.round(bytes / postgresBytes(1)));
  await server.createDatabase(database);
  await server.sql(POSTGRES_SCHEMA, database);
  const queue = postgresBatches(orders);
  const psql = async (sql: string) => {
    await execa(`${server.binDir}/psql`, ['-X', '-q', '-w', '-v', 'ON_ERROR_STOP=1', '-h', server.host, '-p', String(server.port), '-U', server.user, '-d', database, '-c', sql], {
      env: { PATH: process.env.PATH ?? '', PGPASSFILE: server.passFile },
      extendEnv: false,
      timeout: STATEMENT_TIMEOUT_MS,
    });
  };
  const worker = async () => {
    for (let batch = queue.shift(); batch; batch = queue.shift()) await psql(batch.sql);
  };
  await Promise.all([worker(), worker()]);
  await psql('VACUUM ANALYZE');
}

// Fills a MariaDB database with the same shop shape, so its dump is about `bytes`.
export async function seedMariadb(server: MariadbServer, database: string, bytes: number): Promise<void> {
  const orders = Math.max(1000, Math.round(bytes / ORDER_ROW_BYTES));
  await server.createDatabase(database);
  await server.sql(
    `CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL, status varchar(16) NOT NULL, total decimal(12,2) NOT NULL,
      currency char(3) NOT NULL, created_at datetime NOT NULL, shipping_address varchar(200) NOT NULL, note varchar(200), token char(36) NOT NULL) ENGINE=InnoDB`,
    database,
  );
  const words = WORDS.map((w) => `'${w}'`).join(',');
  const word = (expr: string) => `ELT(1 + (${expr}) % ${WORDS.length}, ${words})`;
  for (let from = 1; from <= orders; from += BATCH_ROWS) {
    const to = Math.min(orders, from + BATCH_ROWS - 1);
    await server.sql(
      `INSERT INTO orders SELECT seq, 1 + (seq * 7919) % 100000, ELT(1 + seq % 5, 'new','paid','shipped','delivered','returned'),
        ((seq * 104729) % 100000) / 100.0, ELT(1 + seq % 3, 'EUR','USD','GBP'),
        TIMESTAMP '2021-01-01 00:00:00' + INTERVAL (seq * 3) SECOND,
        CONCAT(seq % 9999, ' ', ${word('seq')}, ' Street, ', 10000 + seq % 89999, ' ', ${word('seq DIV 7')}, 'ville'),
        IF(seq % 4 = 0, NULL, CONCAT(${word('seq')}, ' ', ${word('seq DIV 2')}, ' ', ${word('seq DIV 5')}, ' ', MD5(seq))),
        UUID()
      FROM seq_${from}_to_${to}`,
      database,
    );
  }
}

// Fills Redis with about `bytes` of hashes and strings through redis-cli --pipe.
export async function seedRedis(server: RedisServer, redisCli: string, bytes: number): Promise<void> {
  const keys = Math.max(1000, Math.round(bytes / 200));
  const lines: string[] = [];
  const flush = async () => {
    if (lines.length === 0) return;
    const input = `${lines.join('\r\n')}\r\n`;
    lines.length = 0;
    await execa(redisCli, ['-h', server.host, '-p', String(server.port), '--pipe'], {
      env: { PATH: process.env.PATH ?? '', REDISCLI_AUTH: server.password },
      extendEnv: false,
      input,
      timeout: STATEMENT_TIMEOUT_MS,
    });
  };
  const resp = (...parts: string[]) => `*${parts.length}\r\n${parts.map((p) => `$${Buffer.byteLength(p)}\r\n${p}`).join('\r\n')}`;
  for (let i = 1; i <= keys; i++) {
    const w = (n: number) => WORDS[(i * n) % WORDS.length] ?? '';
    lines.push(
      i % 2 === 0
        ? resp('HSET', `order:${i}`, 'status', w(1), 'note', `${w(3)} ${w(5)} ${w(7)}`, 'total', String((i * 104729) % 100000), 'ref', String(i * 2654435761))
        : resp('SET', `session:${i}`, `{"user":${i},"agent":"${w(11)}","cart":["${w(2)}","${w(9)}"],"seen":${i * 37}}`),
    );
    if (lines.length >= 50_000) await flush();
  }
  await flush();
}
