// DB_TYPE → restorer. Adding a type to DB_TYPES without a line here fails the type-check.
import type { DbType } from '../engines/types.ts';
import { etcd } from './etcd.ts';
import { mongodb } from './mongodb.ts';
import { mariadb, mysql } from './mysql.ts';
import { postgresql } from './postgresql.ts';
import { redis } from './redis.ts';
import { sqlite } from './sqlite.ts';
import type { Restorer } from './types.ts';
import { arangodb, cassandra, mssql } from './unsupported.ts';

export const RESTORERS: Readonly<Record<DbType, Restorer>> = { postgresql, mysql, mariadb, mongodb, redis, sqlite, etcd, arangodb, cassandra, mssql };
