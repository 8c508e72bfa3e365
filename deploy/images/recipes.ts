// Each DB_TYPE's images: the versions built (the vendor's official image of each, which render.ts turns
// into a Dockerfile) and what the image test does with the official database container
// (deploy/images/test-image.ts runs it on a Docker host): how to start the server, seed the dataset,
// read it back, back it up with the Plan B image and restore the stored object with the stock tool.
// One entry per DB_TYPE: a type without its entry fails the type-check.
import type { DbType } from '../../src/engines/types.ts';
import type { ImageVersion } from './render.ts';

// How long a freshly started server may take: MySQL's first start initialises its data directory.
const READY_ATTEMPTS = 90;
const READY_INTERVAL_MS = 2_000;
// Throw-away credentials of the throw-away containers; nothing here protects anything.
const PASSWORD = 'planb-test-Pw1';
const DATABASE = 'planb_testdb';

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


// Names of everything one run creates; `id` keeps parallel runs apart.
export type Names = {
  network: string;
  db: string;
  restore: string;
  s3: string;
  dataVolume: string;
  restoreVolume: string;
  tag: string;
  label: string;
};

export const run = (pipe: Pipe, extra: Omit<Extract<Action, { kind: 'run' }>, 'kind' | 'pipe'> = {}): Action => ({ kind: 'run', pipe, ...extra });
export const waitFor = (argv: readonly string[], extra: Omit<Extract<Action, { kind: 'run' }>, 'kind' | 'pipe' | 'retry'> = {}): Action =>
  run([argv], { retry: { attempts: READY_ATTEMPTS, intervalMs: READY_INTERVAL_MS }, ...extra });
export const envFlags = (env: Readonly<Record<string, string>>): string[] => Object.entries(env).flatMap(([k, v]) => ['-e', `${k}=${v}`]);

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
export const holdsDataset = {
  what: 'the snapshot holds all 3 movies and all 3 actors',
  verify: (stdout: string) => {
    const missing = [...MOVIES.map((m) => m.title), ...ACTORS.map((a) => a.name)].filter((text) => !stdout.includes(text));
    return missing.length === 0 ? undefined : `missing from the snapshot: ${missing.join(', ')}`;
  },
};

// What differs between engines: how to start, seed, read back, back up and restore.
export type Recipe = {
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

// What a recipe is given: the image under test, the names of this run's containers and volumes, and
// how to start the vendor's server image (`server`) or run a tool of the image under test (`inImage`).
export type RecipeContext = {
  dbType: DbType;
  names: Names;
  // The official Node image (glibc) of the job's runtime version.
  nodeImage: string;
  startTitle: string;
  server: (container: string, alias: string, env: Record<string, string>, args?: string[], mounts?: string[]) => string[];
  inImage: (entrypoint: string, options: string[], args: string[]) => string[];
};

// MySQL and MariaDB differ only in their client's name and the server image's variables.
const mysqlLike = ({ dbType, names, startTitle, server, inImage }: RecipeContext): Recipe => {
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
};

// What the official bases ship, as the images below name them: OS, C library (with glibc's version and
// the newest GLIBCXX symbol version of its libstdc++, checked against what the node binary needs) and
// package manager.
const BOOKWORM = { os: 'Debian 12 (bookworm)', libc: 'glibc', glibc: '2.36', glibcxx: '3.4.30', packageManager: 'apt' } as const;
const JAMMY = { os: 'Ubuntu 22.04 (jammy)', libc: 'glibc', glibc: '2.35', glibcxx: '3.4.30', packageManager: 'apt' } as const;
const NOBLE = { os: 'Ubuntu 24.04 (noble)', libc: 'glibc', glibc: '2.39', glibcxx: '3.4.33', packageManager: 'apt' } as const;
const ORACLE_LINUX_9 = { os: 'Oracle Linux 9 (slim)', libc: 'glibc', glibc: '2.34', glibcxx: '3.4.29', packageManager: 'microdnf' } as const;
const ALPINE = { os: 'Alpine Linux', libc: 'musl', packageManager: 'apk' } as const;

// One DB_TYPE's images and their test: render.ts renders one Dockerfile per version in `images`, each
// FROM the vendor's official image of that version; test-image.ts runs `test` against each on a Docker host.
export type ImageRecipe = { images: readonly ImageVersion[]; test: (context: RecipeContext) => Recipe };

// DB_TYPE → its images and image test.
export const RECIPES = {
  postgresql: {
    images: [
      { dbVersion: '14', base: 'postgres:14-bookworm', ...BOOKWORM },
      { dbVersion: '15', base: 'postgres:15-bookworm', ...BOOKWORM },
      { dbVersion: '16', base: 'postgres:16-bookworm', ...BOOKWORM },
      { dbVersion: '17', base: 'postgres:17-bookworm', ...BOOKWORM },
    ],
    test: ({ names, startTitle, server, inImage }) => {
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
    },
  },
  mysql: {
    images: [
      { dbVersion: '8.0', base: 'mysql:8.0-oracle', ...ORACLE_LINUX_9 },
      { dbVersion: '8.4', base: 'mysql:8.4-oracle', ...ORACLE_LINUX_9 },
    ],
    test: mysqlLike,
  },
  mariadb: {
    images: [
      { dbVersion: '10.11', base: 'mariadb:10.11-jammy', ...JAMMY },
      { dbVersion: '11.4', base: 'mariadb:11.4-noble', ...NOBLE },
    ],
    test: mysqlLike,
  },
  mongodb: {
    images: [
      { dbVersion: '7.0', base: 'mongo:7.0-jammy', ...JAMMY },
      { dbVersion: '8.0', base: 'mongo:8.0-noble', ...NOBLE },
    ],
    test: ({ names, startTitle, server, inImage }) => {
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
    },
  },
  redis: {
    images: [
      { dbVersion: '7.2', base: 'redis:7.2-bookworm', ...BOOKWORM },
      { dbVersion: '7.4', base: 'redis:7.4-bookworm', ...BOOKWORM },
    ],
    test: ({ names, startTitle, server, inImage }) => {
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
    },
  },
  sqlite: {
    images: [
      {
        dbVersion: '3', base: 'debian:bookworm-slim', ...BOOKWORM, packages: ['sqlite3'],
        note: "SQLite has no official image (it is a library, not a server). debian:bookworm-slim is a Docker Official Image, Debian's sqlite3 (3.40) gets Debian security updates, and it is the same Debian release as the Node image we copy the runtime from. Every SQLite 3 release reads every SQLite 3 file, so one image serves all.",
      },
    ],
    test: ({ names, nodeImage, inImage }) => {
      // No official SQLite server image exists: the "server" is a file in a volume. It is written and
      // read back with the node:sqlite module of the official Node image, independent of the image under test.
      const node = nodeImage;
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
    },
  },
  etcd: {
    images: [
      {
        dbVersion: '3.5', base: 'debian:bookworm-slim', ...BOOKWORM, toolsFrom: { image: 'gcr.io/etcd-development/etcd:v3.5.21', paths: ['/usr/local/bin/etcd', '/usr/local/bin/etcdctl', '/usr/local/bin/etcdutl'] },
        note: "etcd's own images (gcr.io/etcd-development/etcd, mirrored at quay.io/coreos/etcd) are distroless: no shell, no package manager, no libstdc++, so neither the build check nor Node can run in them. etcd, etcdctl and etcdutl are static Go binaries (etcd itself for the throw-away member a verification starts): they are copied from the vendor's image of the pinned version into debian:bookworm-slim, the Docker Official Image the Node runtime is built for. Debian's own etcd-client is 3.4, too old to restore with etcdutl.",
      },
    ],
    test: ({ names, startTitle, server, inImage }) => {
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
    },
  },
  arangodb: {
    images: [
      {
        dbVersion: '3.11', base: 'arangodb:3.11', ...ALPINE,
        note: 'The Docker Official Image arangodb is published by ArangoDB (the same build as arangodb/arangodb). It is Alpine-based: Node comes from the official Alpine (musl) Node image.',
      },
      { dbVersion: '3.12', base: 'arangodb:3.12', ...ALPINE },
    ],
    test: ({ names, startTitle, server, inImage }) => {
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
    },
  },
  cassandra: {
    images: [
      {
        dbVersion: '4.1', base: 'cassandra:4.1', ...JAMMY,
        note: 'cqlsh ships in the image (with its Python). A logical backup: see docs/engines-extra.md.',
      },
      { dbVersion: '5.0', base: 'cassandra:5.0', ...JAMMY },
    ],
    test: ({ names, startTitle, server, inImage }) => {
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
    },
  },
  mssql: {
    images: [
      {
        dbVersion: '2022', base: 'mcr.microsoft.com/mssql/server:2022-CU16-ubuntu-22.04', ...JAMMY, source: 'vendor', path: ['/opt/mssql-tools18/bin'],
        note: "SQL Server has no Docker Official Image: Microsoft publishes it on its own registry. The 2022 images carry mssql-tools18 (sqlcmd) in /opt/mssql-tools18/bin, put first on PATH. The image's own user mssql has uid 10001, the job's uid too: the server and the job can share the backup directory.",
      },
    ],
    test: ({ names, startTitle, server, inImage }) => {
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
    },
  },
} satisfies Record<DbType, ImageRecipe>;
