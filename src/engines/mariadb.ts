// DB_TYPE=mariadb: mariadb-dump (MariaDB ≥ 11 deprecates the mysqldump name), falling back to mysqldump;
// restored with the mariadb client, verified in a throw-away mariadbd (all built by mysql.ts).
import { mysqlFamily } from './mysql.ts';

export const mariadb = mysqlFamily({ tools: ['mariadb-dump', 'mysqldump'], clients: ['mariadb', 'mysql'], servers: ['mariadbd', 'mysqld'], mariadbClient: true });
