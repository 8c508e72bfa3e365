// DB_TYPE=mariadb: mariadb-dump (MariaDB ≥ 11 deprecates the mysqldump name), falling back to mysqldump.
import { mysqlFamily } from './mysql.ts';

export const mariadb = mysqlFamily(['mariadb-dump', 'mysqldump'], true);
