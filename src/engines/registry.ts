// DB_TYPE → engine: one import and one entry per type. DB_TYPES and DbType are read from this map.
import { arangodb } from './arangodb.ts';
import { cassandra } from './cassandra.ts';
import { etcd } from './etcd.ts';
import { mariadb } from './mariadb.ts';
import { mongodb } from './mongodb.ts';
import { mssql } from './mssql.ts';
import { mysql } from './mysql.ts';
import { postgresql } from './postgresql.ts';
import { redis } from './redis.ts';
import { sqlite } from './sqlite.ts';
import type { DumpEngine } from './types.ts';

const engines = { postgresql, mysql, mariadb, mongodb, redis, sqlite, etcd, arangodb, cassandra, mssql } as const satisfies Record<string, DumpEngine>;

// Canonical database types (`postgres` is accepted as an alias of `postgresql` in config.ts).
export type DbType = keyof typeof engines;
// Every engine, seen through what all of them provide.
export const ENGINES: Readonly<Record<DbType, DumpEngine>> = engines;
// The same, as a list for configuration choices and tests, in the order of ENGINES.
export const DB_TYPES = Object.keys(ENGINES) as readonly DbType[];
