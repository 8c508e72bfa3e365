// DB_TYPE → engine. Adding a type to DB_TYPES without a line here fails the type-check.
import { mariadb } from './mariadb.ts';
import { mongodb } from './mongodb.ts';
import { mysql } from './mysql.ts';
import { postgresql } from './postgresql.ts';
import { redis } from './redis.ts';
import { sqlite } from './sqlite.ts';
import type { DbType, DumpEngine } from './types.ts';

export const ENGINES = { postgresql, mysql, mariadb, mongodb, redis, sqlite } as const satisfies Record<DbType, DumpEngine>;
