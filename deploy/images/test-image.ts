// The image test, for hosts with a Docker engine. It follows the product's 5-step pipeline:
//   1. start the official database container of the image's version,
//   2. seed a small dataset (3 movies, 3 actors),
//   3. render and build the Plan B image (native platform),
//   4. run a backup with that image into a local S3-compatible server container (MinIO),
//   5. restore the stored object with the stock restore tool into a fresh database and compare.
// Everything it starts is removed at the end, also after a failure or Ctrl-C.
//
//   node deploy/images/test-image.ts NAME|--all [--dry-run] [--keep] [--id ID]
//
// --dry-run prints every command without running anything (no Docker needed): the unit tests run it.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import type { DbType } from '../../src/engines/types.ts';
import {
  BUILD_CONTEXT,
  ROOT,
  buildArgv,
  dockerEngineAvailable,
  imageName,
  loadInputs,
  nodeImage,
  renderImages,
  shellLine,
  type ImageSpec,
} from './render.ts';

// Pinned so the test means the same thing every time; override to use a mirror.
// (MinIO's community images stopped being updated in 2025; any S3-compatible server will do.)
export const DEFAULT_S3_IMAGE = 'minio/minio:RELEASE.2025-09-07T16-13-09Z';
export const DEFAULT_MC_IMAGE = 'minio/mc:RELEASE.2025-08-13T08-35-41Z';

// How long a freshly started server may take: MySQL's first start initialises its data directory.
const READY_ATTEMPTS = 90;
const READY_INTERVAL_MS = 2_000;
// Enough stderr to explain a failure without flooding the terminal.
const STDERR_TAIL_CHARS = 4_000;

// Throw-away credentials of the throw-away containers; nothing here protects anything.
const PASSWORD = 'planb-test-Pw1';
const DATABASE = 'planb_testdb';
const BUCKET = 'planb-test';
const S3_USER = 'planbtest';
const S3_SECRET = 'planbtestsecret';

// The dataset every engine seeds and must get back: small, with non-ASCII text and decimals.
export const MOVIES = [
  { id: 1, title: 'The Shawshank Redemption', year: 1994, rating: 9.3 },
  { id: 2, title: 'Amélie', year: 2001, rating: 8.3 },
  { id: 3, title: 'Spirited Away (千と千尋の神隠し)', year: 2001, rating: 8.6 },
] as const;
export const ACTORS = [
  { id: 1, name: 'Morgan Freeman', birth_year: 1937 },
  { id: 2, name: 'Audrey Tautou', birth_year: 1976 },
  { id: 3, name: 'Tim Robbins', birth_year: 1958 },
] as const;

// Processes joined stdout → stdin, left to right, like a shell pipe (one element: a plain command).
export type Pipe = readonly (readonly string[])[];

// One thing the test does. `{{name}}` in an argv is replaced by the output kept under that name.
export type Action =
  | {
      kind: 'run';
      pipe: Pipe;
      input?: string;
      // Retried until it succeeds: for servers that are still starting.
      retry?: { attempts: number; intervalMs: number };
      // Keeps the output (trimmed, or what `parse` makes of it) for later actions.
      capture?: { name: string; parse?: (stdout: string) => string };
      // Fails the action when it returns a reason.
      check?: { what: string; verify: (stdout: string) => string | undefined };
    }
  | { kind: 'render'; only: string; outDir: string }
  | { kind: 'compare'; left: string; right: string };

// One of the five steps: what it does, in words, and its actions in order.
export type Step = { title: string; actions: Action[] };

// Everything one image's test does, in order, and what is removed afterwards.
export type Plan = { name: string; spec: ImageSpec; tag: string; steps: Step[]; cleanup: Action[] };

// Names of everything one run creates; `id` keeps parallel runs apart.
type Names = {
  network: string;
  db: string;
  restore: string;
  s3: string;
  dataVolume: string;
  restoreVolume: string;
  tag: string;
  label: string;
};

function namesFor(spec: ImageSpec, id: string): Names {
  const base = `planb-it-${id}`;
  return {
    network: base,
    db: `${base}-db`,
    restore: `${base}-restore`,
    s3: `${base}-s3`,
    dataVolume: `${base}-data`,
    restoreVolume: `${base}-restore-data`,
    tag: `planb-backup-${spec.dbType}:test-${id}`,
    label: `planb-image-test=${id}`,
  };
}

const run = (pipe: Pipe, extra: Omit<Extract<Action, { kind: 'run' }>, 'kind' | 'pipe'> = {}): Action => ({ kind: 'run', pipe, ...extra });
const waitFor = (argv: readonly string[], extra: Omit<Extract<Action, { kind: 'run' }>, 'kind' | 'pipe' | 'retry'> = {}): Action =>
  run([argv], { retry: { attempts: READY_ATTEMPTS, intervalMs: READY_INTERVAL_MS }, ...extra });
const envFlags = (env: Readonly<Record<string, string>>): string[] => Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);

function sqlSeed(dialect: 'postgresql' | 'mysql' | 'sqlite'): string {
  const quote = (text: string) => `'${text.replace(/'/g, "''")}'`;
  const charset = dialect === 'mysql' ? ' DEFAULT CHARSET=utf8mb4' : '';
  return [
    `CREATE TABLE movies (id INT PRIMARY KEY, title VARCHAR(255) NOT NULL, year INT NOT NULL, rating DECIMAL(3,1) NOT NULL)${charset};`,
    `CREATE TABLE actors (id INT PRIMARY KEY, name VARCHAR(255) NOT NULL, birth_year INT NOT NULL)${charset};`,
    `INSERT INTO movies VALUES ${MOVIES.map((m) => `(${m.id}, ${quote(m.title)}, ${m.year}, ${m.rating.toFixed(1)})`).join(', ')};`,
    `INSERT INTO actors VALUES ${ACTORS.map((a) => `(${a.id}, ${quote(a.name)}, ${a.birth_year})`).join(', ')};`,
    '',
  ].join('\n');
}

const SQL_SNAPSHOT = ['SELECT id, title, year, rating FROM movies ORDER BY id;', 'SELECT id, name, birth_year FROM actors ORDER BY id;'];

// The seeded snapshot must show the whole dataset, or comparing it with the restore proves nothing.
const holdsDataset = {
  what: 'the snapshot holds all 3 movies and all 3 actors',
  verify: (stdout: string) => {
    const missing = [...MOVIES.map((m) => m.title), ...ACTORS.map((a) => a.name)].filter((text) => !stdout.includes(text));
    return missing.length === 0 ? undefined : `missing from the snapshot: ${missing.join(', ')}`;
  },
};

// What differs between engines: how to start, seed, read back, back up and restore.
type Recipe = {
  // What step 1 does, in words.
  startTitle: string;
  // Starts a server (or prepares storage) under `container`/`alias`; SQLite has no server.
  start(container: string, alias: string, volume: string): Action[];
  seed: Action[];
  // Prints the dataset canonically from the server (or file) at `container`/`alias`/`volume`.
  snapshot(container: string, alias: string, volume: string): Pipe;
  backupEnv: Record<string, string>;
  backupMounts: string[];
  // Restores the stored object into a fresh target (starting it first): `fetch` prints the object,
  // `unzstd` decompresses stdin to stdout.
  restore(fetch: readonly string[], unzstd: readonly string[]): Action[];
};

function recipeFor(spec: ImageSpec, names: Names, nodeVersion: string): Recipe {
  // The vendor's server image: the base itself, or (etcd) the image its tools were copied from.
  const official = spec.toolsFrom?.image ?? spec.base;
  const server = (container: string, alias: string, env: Record<string, string>, args: string[] = [], mounts: string[] = []) => [
    'docker', 'run', '--detach', '--name', container, '--network', names.network, '--network-alias', alias,
    // The hostname resolves to the container's network address inside it: a readiness check on it
    // fails while the entrypoint's socket-only/localhost-only initialisation server runs.
    '--hostname', alias, '--label', names.label, ...envFlags(env), ...mounts.flatMap((m) => ['--volume', m]), official, ...args,
  ];
  const inImage = (entrypoint: string, options: string[], args: string[]) => ['docker', 'run', '--rm', '--interactive', '--network', names.network, ...options, '--entrypoint', entrypoint, names.tag, ...args];
  const dbType: DbType = spec.dbType;

  const startTitle = `start the official database container (${official})`;
  switch (dbType) {
    case 'postgresql': {
      const env = { POSTGRES_PASSWORD: PASSWORD, POSTGRES_DB: DATABASE };
      const psql = (container: string, alias: string, args: string[], interactive = false) => [
        'docker', 'exec', ...(interactive ? ['--interactive'] : []), '-e', `PGPASSWORD=${PASSWORD}`, container,
        'psql', '--no-psqlrc', '-v', 'ON_ERROR_STOP=1', '--host', alias, '--username', 'postgres', '--dbname', DATABASE, ...args,
      ];
      const start = (container: string, alias: string): Action[] => [
        run([server(container, alias, env)]),
        waitFor(['docker', 'exec', container, 'pg_isready', '--host', alias, '--username', 'postgres', '--dbname', DATABASE]),
      ];
      return {
        startTitle,
        start,
        seed: [run([psql(names.db, 'db', [], true)], { input: sqlSeed('postgresql') })],
        snapshot: (container, alias) => [psql(container, alias, ['--no-align', '--tuples-only', ...SQL_SNAPSHOT.flatMap((q) => ['--command', q])])],
        backupEnv: { DB_HOST: 'db', DB_PORT: '5432', DB_NAME: DATABASE, DB_USERNAME: 'postgres', DB_PASSWORD: PASSWORD },
        backupMounts: [],
        restore: (fetch, unzstd) => [
          ...start(names.restore, 'restore'),
          run([fetch, unzstd, inImage('pg_restore', ['-e', `PGPASSWORD=${PASSWORD}`], ['--host', 'restore', '--username', 'postgres', '--dbname', DATABASE, '--no-owner', '--exit-on-error'])]),
        ],
      };
    }
    case 'mysql':
    case 'mariadb': {
      const mariadb = dbType === 'mariadb';
      const client = mariadb ? 'mariadb' : 'mysql';
      const env: Record<string, string> = mariadb ? { MARIADB_ROOT_PASSWORD: PASSWORD, MARIADB_DATABASE: DATABASE } : { MYSQL_ROOT_PASSWORD: PASSWORD, MYSQL_DATABASE: DATABASE };
      const sql = (container: string, alias: string, args: string[], interactive = false) => [
        'docker', 'exec', ...(interactive ? ['--interactive'] : []), '-e', `MYSQL_PWD=${PASSWORD}`, container,
        client, '--protocol=TCP', `--host=${alias}`, '--user=root', '--default-character-set=utf8mb4', ...args, DATABASE,
      ];
      const start = (container: string, alias: string): Action[] => [
        run([server(container, alias, env)]),
        waitFor(sql(container, alias, ['--execute=SELECT 1'])),
      ];
      return {
        startTitle,
        start,
        seed: [run([sql(names.db, 'db', [], true)], { input: sqlSeed('mysql') })],
        snapshot: (container, alias) => [sql(container, alias, ['--batch', '--skip-column-names', `--execute=${SQL_SNAPSHOT.join(' ')}`])],
        backupEnv: { DB_HOST: 'db', DB_PORT: '3306', DB_NAME: DATABASE, DB_USERNAME: 'root', DB_PASSWORD: PASSWORD },
        backupMounts: [],
        restore: (fetch, unzstd) => [
          ...start(names.restore, 'restore'),
          run([fetch, unzstd, inImage(client, ['-e', `MYSQL_PWD=${PASSWORD}`], ['--protocol=TCP', '--host=restore', '--user=root', '--default-character-set=utf8mb4', DATABASE])]),
        ],
      };
    }
    case 'mongodb': {
      const env = { MONGO_INITDB_ROOT_USERNAME: 'root', MONGO_INITDB_ROOT_PASSWORD: PASSWORD };
      const uri = (alias: string, db = DATABASE) => `mongodb://root:${PASSWORD}@${alias}:27017/${db}?authSource=admin`;
      const mongosh = (container: string, alias: string, script: string) => ['docker', 'exec', container, 'mongosh', '--quiet', uri(alias), '--eval', script];
      const start = (container: string, alias: string): Action[] => [
        run([server(container, alias, env)]),
        waitFor(mongosh(container, alias, 'db.runCommand({ ping: 1 }).ok')),
      ];
      return {
        startTitle,
        start,
        seed: [run([mongosh(names.db, 'db', `db.movies.insertMany(${JSON.stringify(MOVIES)}); db.actors.insertMany(${JSON.stringify(ACTORS)});`)])],
        snapshot: (container, alias) => [
          mongosh(container, alias, 'for (const c of ["movies", "actors"]) print(EJSON.stringify(db.getCollection(c).find({}, { _id: 0 }).sort({ id: 1 }).toArray()));'),
        ],
        backupEnv: {
          DB_HOST: 'db', DB_PORT: '27017', DB_NAME: DATABASE, DB_USERNAME: 'root', DB_PASSWORD: PASSWORD,
          // The root user lives in the admin database, not in the one being dumped.
          DB_EXTRA_ARGS: '--authenticationDatabase=admin',
        },
        backupMounts: [],
        restore: (fetch, unzstd) => [
          ...start(names.restore, 'restore'),
          run([fetch, unzstd, inImage('mongorestore', [], [`--uri=${uri('restore', '')}`, '--archive', `--nsInclude=${DATABASE}.*`])]),
        ],
      };
    }
    case 'redis': {
      const cli = (container: string, alias: string, args: string[], interactive = false) => [
        'docker', 'exec', ...(interactive ? ['--interactive'] : []), '-e', `REDISCLI_AUTH=${PASSWORD}`, container, 'redis-cli', '-h', alias, ...args,
      ];
      const start = (container: string, alias: string, mounts: string[] = []): Action[] => [
        run([server(container, alias, {}, ['redis-server', '--requirepass', PASSWORD, '--appendonly', 'no'], mounts)]),
        waitFor(cli(container, alias, ['ping']), { check: { what: 'the server answers PONG', verify: (out) => (out.trim() === 'PONG' ? undefined : `answered ${out.trim()}`) } }),
      ];
      const records = [...MOVIES.map((m) => [`movie:${m.id}`, m] as const), ...ACTORS.map((a) => [`actor:${a.id}`, a] as const)];
      // Every key and its value, sorted: the same text for the same data whatever the server's order.
      const dumpKeys = "local keys = redis.call('KEYS', '*') table.sort(keys) local out = {} for _, k in ipairs(keys) do out[#out + 1] = k .. '=' .. redis.call('GET', k) end return out";
      return {
        startTitle,
        start: (container, alias) => start(container, alias),
        seed: [run([cli(names.db, 'db', [], true)], { input: records.map(([key, value]) => `SET ${key} ${JSON.stringify(JSON.stringify(value))}\n`).join('') })],
        snapshot: (container, alias) => [cli(container, alias, ['--raw', 'EVAL', dumpKeys, '0'])],
        backupEnv: { DB_HOST: 'db', DB_PORT: '6379', DB_PASSWORD: PASSWORD },
        backupMounts: [],
        // Redis restores by starting a server on the RDB file: write it into a volume, then start on it.
        restore: (fetch) => [
          run([['docker', 'volume', 'create', '--label', names.label, names.restoreVolume]]),
          run([fetch, inImage('zstd', ['--user', '0:0', '--volume', `${names.restoreVolume}:/data`], ['--decompress', '--quiet', '-o', '/data/dump.rdb'])]),
          ...start(names.restore, 'restore', [`${names.restoreVolume}:/data`]),
        ],
      };
    }
    case 'sqlite': {
      // No official SQLite server image exists: the "server" is a file in a volume. It is written and
      // read back with the node:sqlite module of the official Node image, independent of the image under test.
      const node = nodeImage(nodeVersion, 'glibc');
      const file = (volume: string) => (volume === names.dataVolume ? '/data/planb.db' : '/restore/planb.db');
      const mount = (volume: string, readOnly: boolean) => `${volume}:${volume === names.dataVolume ? '/data' : '/restore'}${readOnly ? ':ro' : ''}`;
      const readBack = "const { DatabaseSync } = require('node:sqlite'); const db = new DatabaseSync(process.argv[1], { readOnly: true }); for (const t of ['movies', 'actors']) for (const row of db.prepare(`SELECT * FROM ${t} ORDER BY id`).all()) console.log(t, JSON.stringify(row));";
      const write = "const { DatabaseSync } = require('node:sqlite'); const db = new DatabaseSync(process.argv[1]); db.exec(require('node:fs').readFileSync(0, 'utf8')); db.close();";
      return {
        startTitle: 'create the volume that holds the database file (SQLite has no server and no official image)',
        start: (_container, _alias, volume) => [run([['docker', 'volume', 'create', '--label', names.label, volume]])],
        seed: [run([['docker', 'run', '--rm', '--interactive', '--volume', mount(names.dataVolume, false), node, 'node', '-e', write, file(names.dataVolume)]], { input: sqlSeed('sqlite') })],
        snapshot: (_container, _alias, volume) => [['docker', 'run', '--rm', '--volume', mount(volume, true), node, 'node', '-e', readBack, file(volume)]],
        backupEnv: { DB_NAME: file(names.dataVolume) },
        backupMounts: [mount(names.dataVolume, true)],
        restore: (fetch, unzstd) => [
          run([['docker', 'volume', 'create', '--label', names.label, names.restoreVolume]]),
          run([fetch, unzstd, inImage('sqlite3', ['--user', '0:0', '--volume', mount(names.restoreVolume, false)], ['-bail', file(names.restoreVolume)])]),
        ],
      };
    }
    case 'etcd': {
      const ctl = (container: string, alias: string, args: string[], interactive = false, auth = true) => [
        'docker', 'exec', ...(interactive ? ['--interactive'] : []), ...(auth ? ['-e', 'ETCDCTL_USER=root', '-e', `ETCDCTL_PASSWORD=${PASSWORD}`] : []),
        container, 'etcdctl', `--endpoints=http://${alias}:2379`, ...args,
      ];
      const etcdArgs = (alias: string, dataDir: string) => [
        '/usr/local/bin/etcd', '--name=planb', `--data-dir=${dataDir}`,
        '--listen-client-urls=http://0.0.0.0:2379', `--advertise-client-urls=http://${alias}:2379`,
        '--listen-peer-urls=http://0.0.0.0:2380', `--initial-advertise-peer-urls=http://${alias}:2380`, `--initial-cluster=planb=http://${alias}:2380`,
      ];
      const records = [...MOVIES.map((m) => [`movie:${m.id}`, m] as const), ...ACTORS.map((a) => [`actor:${a.id}`, a] as const)];
      const ready = (container: string, alias: string, auth: boolean) => waitFor(ctl(container, alias, ['endpoint', 'health'], false, auth));
      return {
        startTitle,
        start: (container, alias) => [run([server(container, alias, {}, etcdArgs(alias, '/etcd-data'))]), ready(container, alias, false)],
        // The keys first, then the root user and authentication: the backup must log in.
        seed: [
          ...records.map(([key, value]) => run([ctl(names.db, 'db', ['put', key, JSON.stringify(value)], false, false)])),
          run([ctl(names.db, 'db', ['user', 'add', 'root', '--interactive=false'], true, false)], { input: `${PASSWORD}\n` }),
          run([ctl(names.db, 'db', ['user', 'grant-role', 'root', 'root'], false, false)]),
          run([ctl(names.db, 'db', ['auth', 'enable'], false, false)]),
        ],
        snapshot: (container, alias) => [ctl(container, alias, ['get', '', '--prefix'])],
        backupEnv: { DB_HOST: 'db', DB_PORT: '2379', DB_USERNAME: 'root', DB_PASSWORD: PASSWORD },
        backupMounts: [],
        // etcd restores into a new data directory, then a member starts on it.
        restore: (fetch) => [
          run([['docker', 'volume', 'create', '--label', names.label, names.restoreVolume]]),
          run([fetch, inImage('zstd', ['--user', '0:0', '--volume', `${names.restoreVolume}:/restore`], ['--decompress', '--quiet', '-o', '/restore/backup.db'])]),
          run([inImage('etcdutl', ['--user', '0:0', '--volume', `${names.restoreVolume}:/restore`], [
            'snapshot', 'restore', '/restore/backup.db', '--data-dir=/restore/data', '--name=planb',
            '--initial-cluster=planb=http://restore:2380', '--initial-advertise-peer-urls=http://restore:2380',
          ])]),
          run([server(names.restore, 'restore', {}, etcdArgs('restore', '/restore/data'), [`${names.restoreVolume}:/restore`])]),
          ready(names.restore, 'restore', true),
        ],
      };
    }
    case 'arangodb': {
      const arangosh = (container: string, alias: string, script: string) => [
        'docker', 'exec', container, 'arangosh', `--server.endpoint=tcp://${alias}:8529`, '--server.username=root', `--server.password=${PASSWORD}`,
        '--javascript.execute-string', script,
      ];
      const start = (container: string, alias: string): Action[] => [
        run([server(container, alias, { ARANGO_ROOT_PASSWORD: PASSWORD })]),
        waitFor(arangosh(container, alias, 'db._version()')),
      ];
      const readBack = `db._useDatabase(${JSON.stringify(DATABASE)}); for (const c of ['movies', 'actors']) print(JSON.stringify(db._query('FOR d IN @@c SORT d.id RETURN UNSET(d, "_key", "_id", "_rev")', { '@c': c }).toArray()));`;
      return {
        startTitle,
        start,
        seed: [run([arangosh(names.db, 'db', `db._createDatabase(${JSON.stringify(DATABASE)}); db._useDatabase(${JSON.stringify(DATABASE)}); db._create('movies').save(${JSON.stringify(MOVIES)}); db._create('actors').save(${JSON.stringify(ACTORS)});`)])],
        snapshot: (container, alias) => [arangosh(container, alias, readBack)],
        backupEnv: { DB_HOST: 'db', DB_PORT: '8529', DB_NAME: DATABASE, DB_USERNAME: 'root', DB_PASSWORD: PASSWORD },
        backupMounts: [],
        // The object is a tar of arangodump's directory: unpack it into a volume, then arangorestore it.
        restore: (fetch, unzstd) => [
          ...start(names.restore, 'restore'),
          run([['docker', 'volume', 'create', '--label', names.label, names.restoreVolume]]),
          run([fetch, unzstd, inImage('tar', ['--user', '0:0', '--volume', `${names.restoreVolume}:/restore`], ['-xf', '-', '-C', '/restore'])]),
          run([inImage('arangorestore', ['--user', '0:0', '--volume', `${names.restoreVolume}:/restore`], [
            '--server.endpoint=tcp://restore:8529', '--server.username=root', `--server.password=${PASSWORD}`,
            `--server.database=${DATABASE}`, '--create-database=true', '--input-directory=/restore',
          ])]),
        ],
      };
    }
    case 'cassandra': {
      // The official image runs without authentication; the job's cqlshrc path is covered by the unit tests.
      const cqlsh = (container: string, alias: string, args: string[], interactive = false) => ['docker', 'exec', ...(interactive ? ['--interactive'] : []), container, 'cqlsh', ...args, alias];
      const env = { MAX_HEAP_SIZE: '512M', HEAP_NEWSIZE: '128M' };
      const start = (container: string, alias: string): Action[] => [run([server(container, alias, env)]), waitFor(cqlsh(container, alias, ['-e', 'SELECT release_version FROM system.local']))];
      const quote = (text: string) => `'${text.replace(/'/g, "''")}'`;
      const seed = [
        `CREATE KEYSPACE ${DATABASE} WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1};`,
        `CREATE TABLE ${DATABASE}.movies (id int PRIMARY KEY, title text, year int, rating decimal);`,
        `CREATE TABLE ${DATABASE}.actors (id int PRIMARY KEY, name text, birth_year int);`,
        ...MOVIES.map((m) => `INSERT INTO ${DATABASE}.movies (id, title, year, rating) VALUES (${m.id}, ${quote(m.title)}, ${m.year}, ${m.rating.toFixed(1)});`),
        ...ACTORS.map((a) => `INSERT INTO ${DATABASE}.actors (id, name, birth_year) VALUES (${a.id}, ${quote(a.name)}, ${a.birth_year});`),
        '',
      ].join('\n');
      const tables = ['movies', 'actors'];
      return {
        startTitle,
        start,
        seed: [run([cqlsh(names.db, 'db', [], true)], { input: seed })],
        // Rows come in token order: sorted, the same data prints the same text.
        snapshot: (container, alias) => [cqlsh(container, alias, ['-e', tables.map((t) => `SELECT * FROM ${DATABASE}.${t};`).join(' ')]), ['sort']],
        backupEnv: { DB_HOST: 'db', DB_PORT: '9042', DB_NAME: DATABASE },
        backupMounts: [],
        // The object is a tar of schema.cql and one CSV per table: schema first, then COPY FROM.
        restore: (fetch, unzstd) => {
          const mount = ['--user', '0:0', '--volume', `${names.restoreVolume}:/restore`];
          return [
            ...start(names.restore, 'restore'),
            run([['docker', 'volume', 'create', '--label', names.label, names.restoreVolume]]),
            run([fetch, unzstd, inImage('tar', mount, ['-xf', '-', '-C', '/restore'])]),
            run([inImage('cqlsh', mount, ['-f', '/restore/schema.cql', 'restore'])]),
            run([inImage('cqlsh', mount, ['-e', tables.map((t) => `COPY ${DATABASE}.${t} FROM '/restore/${t}.csv' WITH HEADER = true;`).join(' '), 'restore'])]),
          ];
        },
      };
    }
    case 'mssql': {
      // SQL Server writes the backup itself: the job's TMPDIR is a volume the server mounts at the same
      // path (both run as uid 10001), as the docs describe for a sidecar.
      const shared = '/shared';
      const sqlcmd = (container: string, alias: string, args: string[], interactive = false) => [
        'docker', 'exec', ...(interactive ? ['--interactive'] : []), '-e', `SQLCMDPASSWORD=${PASSWORD}`, container,
        '/opt/mssql-tools18/bin/sqlcmd', '-S', alias, '-U', 'sa', '-C', '-b', ...args,
      ];
      const start = (container: string, alias: string, volume: string): Action[] => [
        run([server(container, alias, { ACCEPT_EULA: 'Y', MSSQL_SA_PASSWORD: PASSWORD }, [], [`${volume}:${shared}`])]),
        waitFor(sqlcmd(container, alias, ['-Q', 'SELECT 1'])),
      ];
      const quote = (text: string) => `N'${text.replace(/'/g, "''")}'`;
      const seed = [
        `CREATE DATABASE ${DATABASE};`, 'GO', `USE ${DATABASE};`,
        'CREATE TABLE movies (id INT PRIMARY KEY, title NVARCHAR(255) NOT NULL, year INT NOT NULL, rating DECIMAL(3,1) NOT NULL);',
        'CREATE TABLE actors (id INT PRIMARY KEY, name NVARCHAR(255) NOT NULL, birth_year INT NOT NULL);',
        `INSERT INTO movies VALUES ${MOVIES.map((m) => `(${m.id}, ${quote(m.title)}, ${m.year}, ${m.rating.toFixed(1)})`).join(', ')};`,
        `INSERT INTO actors VALUES ${ACTORS.map((a) => `(${a.id}, ${quote(a.name)}, ${a.birth_year})`).join(', ')};`,
        'GO', '',
      ].join('\n');
      const chown = (volume: string) => run([inImage('chown', ['--user', '0:0', '--volume', `${volume}:${shared}`], ['10001:10001', shared])]);
      return {
        startTitle,
        start: (container, alias, volume) => [run([['docker', 'volume', 'create', '--label', names.label, volume]]), chown(volume), ...start(container, alias, volume)],
        seed: [run([sqlcmd(names.db, 'db', [], true)], { input: seed })],
        snapshot: (container, alias) => [sqlcmd(container, alias, ['-d', DATABASE, '-h', '-1', '-W', '-Q', `SET NOCOUNT ON; ${SQL_SNAPSHOT.join(' ')}`])],
        backupEnv: { DB_HOST: 'db', DB_PORT: '1433', DB_NAME: DATABASE, DB_USERNAME: 'sa', DB_PASSWORD: PASSWORD, DB_TLS: 'require', TMPDIR: shared },
        backupMounts: [`${names.dataVolume}:${shared}`],
        restore: (fetch, unzstd) => [
          run([['docker', 'volume', 'create', '--label', names.label, names.restoreVolume]]),
          chown(names.restoreVolume),
          ...start(names.restore, 'restore', names.restoreVolume),
          run([fetch, unzstd, inImage('dd', ['--volume', `${names.restoreVolume}:${shared}`], [`of=${shared}/restore.bak`, 'status=none'])]),
          run([inImage('sqlcmd', ['-e', `SQLCMDPASSWORD=${PASSWORD}`], ['-S', 'restore', '-U', 'sa', '-C', '-b', '-Q', `RESTORE DATABASE ${DATABASE} FROM DISK = N'${shared}/restore.bak'`])]),
        ],
      };
    }
  }
}

// The single object the backup stored, from `mc ls --recursive --json`; it must be zstd-compressed.
export function parseListing(stdout: string): string {
  const keys = stdout
    .split('\n')
    .filter((line) => line.trim().startsWith('{'))
    .map((line) => JSON.parse(line) as { type?: string; key?: string })
    .filter((entry) => entry.type === 'file' && entry.key)
    .map((entry) => entry.key as string);
  if (keys.length !== 1) throw new Error(`expected exactly one object in the bucket, found ${keys.length}: ${keys.join(', ')}`);
  const [key = ''] = keys;
  if (!key.endsWith('.zst')) throw new Error(`expected a zstd-compressed object (default BACKUP_COMPRESSION), found ${key}`);
  return key;
}

// The job's stdout must be JSON lines, none of them an error.
function checkJobLog(stdout: string): string | undefined {
  const lines = stdout.split('\n').filter((line) => line.trim() !== '');
  if (lines.length === 0) return 'the job printed no log line';
  for (const line of lines) {
    let entry: { severity?: string; message?: string };
    try {
      entry = JSON.parse(line) as { severity?: string; message?: string };
    } catch {
      return `not a JSON log line: ${line.slice(0, 200)}`;
    }
    if (typeof entry.severity !== 'string') return `log line without severity: ${line.slice(0, 200)}`;
    if (entry.severity === 'ERROR' || entry.severity === 'CRITICAL') return `the job logged ${entry.severity}: ${entry.message ?? line}`;
  }
  return undefined;
}

// The built image must run the job as the numeric non-root user with no inherited command.
function checkImageConfig(spec: ImageSpec, user: number): (stdout: string) => string | undefined {
  return (stdout) => {
    const config = JSON.parse(stdout) as { User?: string; Entrypoint?: string[] | null; Cmd?: string[] | null; Env?: string[]; Labels?: Record<string, string> };
    if (config.User !== `${user}:${user}`) return `runs as "${config.User}", expected ${user}:${user}`;
    if (config.Entrypoint?.at(-1) !== '/opt/planb/main.js') return `entrypoint is ${JSON.stringify(config.Entrypoint)}`;
    if (config.Cmd && config.Cmd.length > 0) return `inherits CMD ${JSON.stringify(config.Cmd)}`;
    if (!config.Env?.includes(`DB_TYPE=${spec.dbType}`)) return `DB_TYPE=${spec.dbType} is not set`;
    if (config.Labels?.['planb.database'] !== spec.dbType) return 'the planb.database label is missing';
    return undefined;
  };
}

export type PlanOptions = {
  id: string;
  s3Image: string;
  mcImage: string;
  user: number;
  nodeVersion: string;
  keepImage: boolean;
  // Where the Dockerfile is rendered, relative to the repository root or absolute.
  buildDir: string;
};

// Where the image test renders Dockerfiles unless told otherwise.
export const DEFAULT_BUILD_DIR = 'build/images';

// The whole test of one image as data: what --dry-run prints and what a real run executes.
export function planImageTest(spec: ImageSpec, options: PlanOptions): Plan {
  const names = namesFor(spec, options.id);
  const mc = ['docker', 'run', '--rm', '--network', names.network, '-e', `MC_HOST_local=http://${S3_USER}:${S3_SECRET}@s3:9000`, options.mcImage];
  const recipe = recipeFor(spec, names, options.nodeVersion);
  const name = imageName(spec);
  const build = { name, spec, dockerfile: `${options.buildDir}/${name}/Dockerfile`, repository: names.tag, tags: [names.tag], platforms: [] };
  const fetch = [...mc, 'cat', `local/${BUCKET}/{{objectKey}}`];
  const unzstd = ['docker', 'run', '--rm', '--interactive', '--entrypoint', 'zstd', names.tag, '--decompress', '--stdout', '--quiet'];

  const steps: Step[] = [
    {
      title: recipe.startTitle,
      actions: [run([['docker', 'network', 'create', '--label', names.label, names.network]]), ...recipe.start(names.db, 'db', names.dataVolume)],
    },
    {
      title: `seed ${MOVIES.length} movies and ${ACTORS.length} actors`,
      actions: [...recipe.seed, run(recipe.snapshot(names.db, 'db', names.dataVolume), { capture: { name: 'seeded' }, check: holdsDataset })],
    },
    {
      title: `render and build the Plan B image (native platform, context ${BUILD_CONTEXT}/)`,
      actions: [
        { kind: 'render', only: name, outDir: options.buildDir },
        run([buildArgv(build, 'load', {})]),
        run([['docker', 'image', 'inspect', '--format', '{{json .Config}}', names.tag]], {
          check: { what: `the image runs ${options.user}:${options.user}, entrypoint = the job, no CMD, DB_TYPE set`, verify: checkImageConfig(spec, options.user) },
        }),
      ],
    },
    {
      title: 'back up with the image into a local S3-compatible server (read-only root, /tmp on tmpfs, no capabilities)',
      actions: [
        run([[
          'docker', 'run', '--detach', '--name', names.s3, '--network', names.network, '--network-alias', 's3', '--label', names.label,
          '-e', `MINIO_ROOT_USER=${S3_USER}`, '-e', `MINIO_ROOT_PASSWORD=${S3_SECRET}`, options.s3Image, 'server', '/data',
        ]]),
        waitFor([...mc, 'mb', '--ignore-existing', `local/${BUCKET}`]),
        run([[
          'docker', 'run', '--rm', '--network', names.network,
          '--read-only', '--tmpfs', '/tmp:rw,nosuid,nodev,size=64m', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
          ...recipe.backupMounts.flatMap((m) => ['--volume', m]),
          ...envFlags({
            ...recipe.backupEnv,
            STORAGE_TYPE: 's3', STORAGE_BUCKET: BUCKET, STORAGE_ENDPOINT: 'http://s3:9000', STORAGE_REGION: 'us-east-1',
            STORAGE_ACCESS_KEY_ID: S3_USER, STORAGE_SECRET_ACCESS_KEY: S3_SECRET, BACKUP_PATH: 'image-test/',
          }),
          names.tag,
        ]], { check: { what: 'the job exits 0 and logs JSON lines, none of them an error', verify: checkJobLog } }),
        run([[...mc, 'ls', '--recursive', '--json', `local/${BUCKET}`]], { capture: { name: 'objectKey', parse: parseListing } }),
      ],
    },
    {
      title: `restore into a fresh database with the stock restore tool and compare`,
      actions: [
        ...recipe.restore(fetch, unzstd),
        run(recipe.snapshot(names.restore, 'restore', names.restoreVolume), { capture: { name: 'restored' } }),
        { kind: 'compare', left: 'seeded', right: 'restored' },
      ],
    },
  ];

  const cleanup: Action[] = [
    run([['docker', 'rm', '--force', '--volumes', names.db, names.restore, names.s3]]),
    run([['docker', 'volume', 'rm', '--force', names.dataVolume, names.restoreVolume]]),
    run([['docker', 'network', 'rm', names.network]]),
    ...(options.keepImage ? [] : [run([['docker', 'image', 'rm', '--force', names.tag]])]),
  ];
  return { name, spec, tag: names.tag, steps, cleanup };
}

function describeAction(action: Action): string[] {
  switch (action.kind) {
    case 'render':
      return [shellLine(['node', 'deploy/images/render.ts', '--only', action.only, ...(action.outDir === DEFAULT_BUILD_DIR ? [] : ['--out', action.outDir])])];
    case 'compare':
      return [`# compare "${action.left}" with "${action.right}": equal and not empty`];
    case 'run': {
      const lines: string[] = [];
      if (action.retry) lines.push(`# retried up to ${action.retry.attempts} times, ${action.retry.intervalMs / 1000} s apart, until it succeeds`);
      if (action.check) lines.push(`# check: ${action.check.what}`);
      if (action.capture) lines.push(`# output kept as {{${action.capture.name}}}`);
      const command = action.pipe.map(shellLine).join(' \\\n  | ');
      if (action.input === undefined) lines.push(command);
      else lines.push(`${command} <<'INPUT'`, ...action.input.replace(/\n$/, '').split('\n'), 'INPUT');
      return lines;
    }
  }
}

// The plan as text: every command, copy-pasteable, step by step.
export function describePlan(plan: Plan): string {
  const out = [`# Plan B image test: ${plan.name} (${plan.spec.base}), image ${plan.tag}`];
  for (const [index, step] of plan.steps.entries()) {
    out.push(`# Step ${index + 1}/${plan.steps.length}: ${step.title}`);
    for (const action of step.actions) out.push(...describeAction(action));
  }
  out.push('# Cleanup (always, also after a failure or Ctrl-C):');
  for (const action of plan.cleanup) out.push(...describeAction(action));
  return `${out.join('\n')}\n`;
}

type Outcome = { ok: boolean; stdout: string; detail: string };

// Children of the action under way, so Ctrl-C can stop them before the cleanup.
const running = new Set<ChildProcess>();
let interrupted = false;

async function runPipe(pipe: Pipe, input: string | undefined, env: NodeJS.ProcessEnv): Promise<Outcome> {
  const children = pipe.map(([command = '', ...args]) => spawn(command, args, { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] }));
  const stderr = children.map(() => '');
  const exits = children.map(
    (child, index) =>
      new Promise<string | undefined>((resolve) => {
        running.add(child);
        child.stderr?.setEncoding('utf8');
        child.stderr?.on('data', (text: string) => {
          stderr[index] = `${stderr[index] ?? ''}${text}`.slice(-STDERR_TAIL_CHARS);
        });
        child.once('error', (error) => resolve(`${pipe[index]?.[0]}: ${error.message}`));
        child.once('close', (code, signal) => {
          running.delete(child);
          resolve(code === 0 ? undefined : `${pipe[index]?.slice(0, 4).join(' ')} … exited ${code ?? signal}`);
        });
      }),
  );
  const links: Promise<void>[] = [];
  const first = children[0];
  if (first?.stdin) links.push(pipeline(Readable.from(input === undefined ? [] : [input]), first.stdin));
  for (let index = 1; index < children.length; index += 1) {
    const from = children[index - 1]?.stdout;
    const to = children[index]?.stdin;
    if (from && to) links.push(pipeline(from, to));
  }
  let stdout = '';
  const last = children.at(-1);
  last?.stdout?.setEncoding('utf8');
  last?.stdout?.on('data', (text: string) => {
    stdout += text;
  });
  const [failures, linkResults] = await Promise.all([Promise.all(exits), Promise.allSettled(links)]);
  const problems = failures.filter((failure): failure is string => failure !== undefined);
  // A broken link only matters when a process failed too: a consumer that is done may close early.
  if (problems.length > 0) {
    for (const result of linkResults) if (result.status === 'rejected') problems.push(`pipe: ${String(result.reason)}`);
  }
  const tails = stderr.filter((text) => text.trim() !== '').map((text) => text.trim());
  return { ok: problems.length === 0, stdout, detail: [...problems, ...tails].join('\n') };
}

const substitute = (pipe: Pipe, kept: ReadonlyMap<string, string>): Pipe =>
  pipe.map((argv) => argv.map((arg) => arg.replace(/\{\{([a-zA-Z]+)\}\}/g, (match, name: string) => kept.get(name) ?? match)));

async function execute(action: Action, kept: Map<string, string>, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  switch (action.kind) {
    case 'render':
      await renderImages({ only: [action.only], outDir: resolve(ROOT, action.outDir) });
      return undefined;
    case 'compare': {
      const left = kept.get(action.left) ?? '';
      const right = kept.get(action.right) ?? '';
      if (left === '') return `"${action.left}" is empty`;
      return left === right ? undefined : `"${action.left}" and "${action.right}" differ:\n--- ${action.left}\n${left}\n--- ${action.right}\n${right}`;
    }
    case 'run': {
      const attempts = action.retry?.attempts ?? 1;
      let last: Outcome = { ok: false, stdout: '', detail: 'not run' };
      // After Ctrl-C nothing is retried, but every command still runs once: the cleanup must happen.
      for (let attempt = 1; attempt <= attempts && (attempt === 1 || !interrupted); attempt += 1) {
        last = await runPipe(substitute(action.pipe, kept), action.input, env);
        // A failed check is a failed attempt: a server may answer before it is ready.
        const reason = last.ok && action.check ? action.check.verify(last.stdout) : undefined;
        if (reason !== undefined) last = { ok: false, stdout: last.stdout, detail: `${action.check?.what}: ${reason}` };
        if (last.ok) break;
        if (attempt < attempts) await new Promise((resolve) => setTimeout(resolve, action.retry?.intervalMs ?? 0));
      }
      if (!last.ok) return last.detail || 'failed';
      if (action.capture) {
        try {
          kept.set(action.capture.name, action.capture.parse ? action.capture.parse(last.stdout) : last.stdout.trim());
        } catch (error) {
          return error instanceof Error ? error.message : String(error);
        }
      }
      return undefined;
    }
  }
}

// Runs a plan for real: the steps in order until one fails, then always the cleanup. `env` is the
// environment of the commands (the tests put a fake docker first on its PATH).
export async function executePlan(plan: Plan, log: (line: string) => void, env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  const kept = new Map<string, string>();
  let ok = true;
  try {
    for (const [index, step] of plan.steps.entries()) {
      log(`Step ${index + 1}/${plan.steps.length}: ${step.title}`);
      for (const action of step.actions) {
        const failure = interrupted ? 'interrupted' : await execute(action, kept, env);
        if (failure !== undefined) {
          log(`FAILED at step ${index + 1} (${step.title}):\n${failure}`);
          ok = false;
          return false;
        }
      }
      log(`  ok`);
    }
    return true;
  } finally {
    log('Cleanup');
    for (const action of plan.cleanup) {
      const failure = await execute(action, kept, env);
      // Removing what a failed run never created fails harmlessly; say so only when the run passed.
      if (failure !== undefined && ok) log(`  cleanup: ${failure.split('\n')[0]}`);
    }
  }
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      all: { type: 'boolean', default: false },
      'dry-run': { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      id: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  const usage = 'usage: node deploy/images/test-image.ts NAME|--all [--dry-run] [--keep] [--id ID]\n';
  if (values.help) {
    process.stdout.write(usage);
    return 0;
  }
  const { matrix, versions } = await loadInputs();
  const known = matrix.images.map(imageName);
  const unknown = positionals.filter((name) => !known.includes(name));
  if ((!values.all && positionals.length === 0) || unknown.length > 0) {
    process.stderr.write(`${unknown.length > 0 ? `unknown image: ${unknown.join(', ')}\n` : ''}${usage}images: ${known.join(', ')}\n`);
    return 2;
  }
  const specs = matrix.images.filter((spec) => values.all || positionals.includes(imageName(spec)));
  const dryRun = values['dry-run'];
  const options: PlanOptions = {
    id: values.id ?? (dryRun ? 'dryrun' : randomBytes(4).toString('hex')),
    s3Image: process.env.PLANB_TEST_S3_IMAGE ?? DEFAULT_S3_IMAGE,
    mcImage: process.env.PLANB_TEST_MC_IMAGE ?? DEFAULT_MC_IMAGE,
    user: matrix.defaults.user,
    nodeVersion: versions.node,
    keepImage: values.keep,
    buildDir: DEFAULT_BUILD_DIR,
  };
  // One id per image, so that two images' containers never share a name.
  const plans = specs.map((spec) => planImageTest(spec, { ...options, id: specs.length > 1 ? `${options.id}-${imageName(spec).replace(/\./g, '')}` : options.id }));

  if (dryRun) {
    process.stdout.write(plans.map(describePlan).join('\n'));
    return 0;
  }
  if (!dockerEngineAvailable()) {
    process.stderr.write('no Docker engine is reachable: the image test needs one (use --dry-run to see the commands)\n');
    return 1;
  }
  if (!existsSync(join(ROOT, BUILD_CONTEXT, 'main.js'))) {
    process.stderr.write(`${BUILD_CONTEXT}/main.js is missing: run npm run build first\n`);
    return 1;
  }
  process.on('SIGINT', () => {
    interrupted = true;
    for (const child of running) child.kill('SIGTERM');
  });
  const failed: string[] = [];
  for (const plan of plans) {
    const log = (line: string) => process.stdout.write(`[${plan.name}] ${line}\n`);
    if (!(await executePlan(plan, log))) failed.push(plan.name);
    if (interrupted) break;
  }
  process.stdout.write(failed.length === 0 ? `PASSED: ${plans.map((p) => p.name).join(', ')}\n` : `FAILED: ${failed.join(', ')}\n`);
  if (interrupted) return 130;
  return failed.length === 0 ? 0 : 1;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`test-image: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      process.exit(1);
    },
  );
}
