// DB_TYPE → engine. Adding a type to DB_TYPES without a line here fails the type-check.
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
import type { DbType, DumpEngine } from './types.ts';

export const ENGINES = { postgresql, mysql, mariadb, mongodb, redis, sqlite, etcd, arangodb, cassandra, mssql } as const satisfies Record<DbType, DumpEngine>;
