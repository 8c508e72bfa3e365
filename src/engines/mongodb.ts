// DB_TYPE=mongodb: mongodump --archive to stdout; the password goes in a --config YAML file
// (MongoDB Database Tools ≥ 100.3.0). Restore: `mongorestore --archive < backup.archive`.
import { join } from 'node:path';
import { DumpError } from '../errors.ts';
import { edgeCheck, printable } from './marks.ts';
import { lines, wholeNumber } from './answers.ts';
import { encrypts, type DbConfig, type DumpCommand, type DumpEngine, type Probe, type Restorer } from './types.ts';
import { unsafeValues } from './values.ts';

// An archive starts with its magic number (0x8199e26d, little-endian) and ends with a terminator.
const MAGIC = Buffer.from([0x6d, 0xe2, 0x99, 0x81]);
const TERMINATOR = Buffer.from([0xff, 0xff, 0xff, 0xff]);

// The connection options shared by mongodump and mongorestore; the password goes in the --config YAML.
export function mongoConnection(db: DbConfig, config: string): Pick<DumpCommand, 'args' | 'files'> {
  const tls = encrypts(db);
  const args = [
    `--config=${config}`,
    `--host=${db.host ?? ''}`,
    `--port=${db.port ?? 27017}`,
    ...(db.username ? [`--username=${db.username}`] : []),
    ...(tls ? ['--ssl'] : []),
    ...(tls && db.tls === 'require' ? ['--tlsInsecure'] : []),
    ...(db.tlsCaFile ? [`--sslCAFile=${db.tlsCaFile}`] : []),
  ];
  // JSON strings are valid YAML scalars, so any password survives quoting.
  const content = db.password === undefined ? '' : `password: ${JSON.stringify(db.password)}\n`;
  return { args, files: [{ path: config, content }] };
}

// Databases of the server itself: DB_NAMES=* leaves them out.
const SYSTEM_DATABASES = new Set(['admin', 'config', 'local']);
// The variable that carries the connection string (password inside) from our env to mongosh's script.
const URI_VARIABLE = 'PLANB_MONGODB_URI';

// A mongodb:// URI for mongosh, with the credentials percent-encoded; it travels in the env only.
export function connectionUri(db: DbConfig): string {
  const credentials = db.username === undefined ? '' : `${encodeURIComponent(db.username)}${db.password === undefined ? '' : `:${encodeURIComponent(db.password)}`}@`;
  const tls = encrypts(db);
  const options = new URLSearchParams({
    ...(tls && { tls: 'true' }),
    ...(tls && db.tls === 'require' && { tlsInsecure: 'true' }),
    ...(db.tlsCaFile && { tlsCAFile: db.tlsCaFile }),
  }).toString();
  const host = (db.host ?? '').includes(':') ? `[${db.host}]` : (db.host ?? '');
  return `mongodb://${credentials}${host}:${db.port ?? 27017}/${options ? `?${options}` : ''}`;
}

// A script for mongosh that connects with the URI from its env and prints one value per line.
function mongoshQuery<T>(db: DbConfig, what: string, script: string, parse: (stdout: string) => T): Probe<T> {
  return {
    what,
    tools: ['mongosh'],
    command: ({ tool }) => ({
      file: tool,
      // --nodb: connect inside the script, so the password never reaches argv.
      args: ['--nodb', '--quiet', '--norc', '--eval', `const client = new Mongo(process.env.${URI_VARIABLE}); ${script}`],
      env: { [URI_VARIABLE]: connectionUri(db) },
      files: [],
    }),
    parse,
  };
}

// mongorestore reads the `mongodump --archive` stream on stdin. Counts need mongosh, which the image
// does not ship: configuration refuses them.
const restorer = {
  formats: ['archive'],
  countUnsupported: 'the image has no mongod or mongosh',
  tools: () => ['mongorestore'],

  command(db, { secretsDir, tool, force }) {
    const { args, files } = mongoConnection(db, join(secretsDir, 'mongorestore.yaml'));
    const only = db.name && !db.allDatabases ? [`--nsInclude=${db.name}.*`] : [];
    // --drop: replace collections the archive holds instead of failing on duplicate keys.
    return { file: tool, args: [...args, ...only, ...(force ? ['--drop'] : []), ...db.extraArgs, '--archive'], env: {}, files };
  },

  count() {
    return Promise.reject(new DumpError('counting mongodb collections needs mongosh, which this image does not ship', { kind: 'missing-tool', stage: 'restore' }));
  },
} satisfies Restorer;

export const mongodb = {
  tools: () => ['mongodump'],
  restoreTool: 'mongorestore',
  restorer,
  scratch: 'mongod and mongosh are not part of this image',
  defaultPort: 27017,
  extension: () => '.archive',

  validate(db) {
    const problems: string[] = [];
    if (!db.host) problems.push('DB_HOST is required for mongodb');
    if (db.allDatabases && db.name) problems.push('DB_NAME and DB_ALL_DATABASES=true exclude each other');
    return [...unsafeValues(db), ...problems];
  },

  command(db, { secretsDir, tool }) {
    const { args, files } = mongoConnection(db, join(secretsDir, 'mongodump.yaml'));
    return { file: tool, args: [...args, ...(db.name && !db.allDatabases ? [`--db=${db.name}`] : []), ...db.extraArgs, '--archive'], env: {}, files };
  },

  // authorizedDatabases: only those this user can read, as mongodump would need.
  discover: (db) =>
    mongoshQuery(
      db,
      'listDatabases',
      "client.getDB('admin').adminCommand({ listDatabases: 1, nameOnly: true, authorizedDatabases: true }).databases.forEach((d) => print(d.name));",
      (stdout) => lines(stdout).filter((name) => !SYSTEM_DATABASES.has(name)),
    ),

  // BSON bytes of the documents, uncompressed: about what mongodump writes.
  size: (db) =>
    db.name && !db.allDatabases
      ? mongoshQuery(db, 'dbStats dataSize', `print(String(client.getDB(${JSON.stringify(db.name)}).stats().dataSize));`, (stdout) => wholeNumber(lines(stdout).at(-1)))
      : mongoshQuery(db, 'listDatabases totalSize', "print(String(client.getDB('admin').adminCommand({ listDatabases: 1 }).totalSize));", (stdout) => wholeNumber(lines(stdout).at(-1))),

  classify(stderr) {
    if (/Authentication failed|not authorized|auth error|SCRAM/i.test(stderr)) return 'auth';
    if (/unknown option|unrecognized (flag|option)|error parsing command line|flag provided but not defined|invalid option/i.test(stderr)) return 'invalid';
    if (/server selection error|connection refused|no reachable servers|context deadline exceeded|i\/o timeout|no such host/i.test(stderr)) return 'unreachable';
    return 'failed';
  },

  completeness: () =>
    edgeCheck({
      scope: 'stream',
      head: MAGIC.length,
      tail: TERMINATOR.length,
      judge: (head, tail) => {
        if (!head.equals(MAGIC)) return `the output is not a mongodump archive: it starts with ${printable(head)}`;
        return tail.equals(TERMINATOR) ? undefined : 'the archive lacks its terminator (ff ff ff ff): mongodump stopped before the end';
      },
    }),
} satisfies DumpEngine;
