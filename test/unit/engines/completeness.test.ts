// Each engine's completeness check against byte fixtures: real tool output where this machine can
// make it (two RDB files written by redis 7.0), built bytes elsewhere. Every fixture is also fed in
// small pieces, so that a mark split across chunks is still seen.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { crc64Jones } from '../../../src/engines/crc64-jones.ts';
import { scanner } from '../../../src/engines/marks.ts';
import { ENGINES } from '../../../src/engines/registry.ts';
import type { DbConfig, DbType } from '../../../src/engines/types.ts';

const fixture = (name: string) => readFileSync(new URL(`../../fixtures/dumps/${name}`, import.meta.url));

function db(type: DbType, overrides: Partial<DbConfig> = {}): DbConfig {
  return { type, host: 'h', port: 1, name: 'shop', username: 'u', password: undefined, tls: undefined, tlsCaFile: undefined, allDatabases: false, extraArgs: [], sqliteQuickCheck: true, ...overrides };
}

// The verdict for `bytes` fed in one piece and in pieces of every size up to 13 bytes; all must agree.
function verdict(config: DbConfig, bytes: Buffer | string): string | undefined {
  const data = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
  const whole = ENGINES[config.type].completeness(config);
  whole.write(data);
  const expected = whole.verdict();
  for (let size = 1; size <= 13; size++) {
    const pieces = ENGINES[config.type].completeness(config);
    for (let at = 0; at < data.length; at += size) pieces.write(data.subarray(at, at + size));
    assert.equal(pieces.verdict(), expected, `pieces of ${size} bytes`);
  }
  return expected;
}

describe('crc64 (Jones, reflected) as Redis computes it', () => {
  test('gives the published check value for "123456789"', () => {
    const crc = crc64Jones();
    crc.update(Buffer.from('123456789'));
    assert.equal(crc.value(), 0xe9c6d914c4b8d9can);
  });

  test('matches the checksum redis-server wrote at the end of a real RDB file', () => {
    const rdb = fixture('redis-7.0-file.rdb');
    const crc = crc64Jones();
    crc.update(rdb.subarray(0, rdb.length - 8));
    assert.equal(crc.value(), rdb.readBigUInt64LE(rdb.length - 8));
  });

  test('continues from a value as if fed in one go', () => {
    const crc = crc64Jones();
    crc.update(Buffer.from('1234'));
    const rest = crc64Jones(crc.value());
    rest.update(Buffer.from('56789'));
    assert.equal(rest.value(), 0xe9c6d914c4b8d9can);
  });
});

describe('redis: RDB magic, EOF opcode and CRC-64', () => {
  const file = fixture('redis-7.0-file.rdb');
  const stdout = fixture('redis-7.0-stdout.rdb');

  test('a real RDB file and a real redis-cli --rdb - stream (with its 40-byte $EOF mark) pass', () => {
    assert.equal(verdict(db('redis'), file), undefined);
    assert.equal(verdict(db('redis'), stdout), undefined);
  });

  test('bytes that are not an RDB fail, naming what they start with', () => {
    assert.match(verdict(db('redis'), 'ERR unknown command\n') ?? '', /not an RDB file: it starts with "ERR unkno"/);
  });

  test('an RDB cut short fails, wherever it was cut', () => {
    for (const cut of [1, 8, 9, 40, 49, 100]) assert.match(verdict(db('redis'), file.subarray(0, file.length - cut)) ?? '', /cut off|checksum/, `cut ${cut}`);
  });

  test('a flipped byte in the middle fails on the checksum', () => {
    const damaged = Buffer.from(file);
    damaged[100] = (damaged[100] ?? 0) ^ 0x01;
    assert.match(verdict(db('redis'), damaged) ?? '', /checksum does not match/);
  });

  test('a zero checksum (checksums off on the server) is accepted', () => {
    const off = Buffer.from(file);
    off.writeBigUInt64LE(0n, off.length - 8);
    assert.equal(verdict(db('redis'), off), undefined);
  });
});

describe('postgresql', () => {
  test('a custom-format archive is judged by its PGDMP head only', () => {
    const check = ENGINES.postgresql.completeness(db('postgresql'));
    assert.equal(check.scope, 'head');
    assert.equal(verdict(db('postgresql'), 'PGDMP\x01\x10\x00\x04\x08anything'), undefined);
    assert.match(verdict(db('postgresql'), 'pg_dump: error: something') ?? '', /does not start with "PGDMP".*"pg_dump: error: "/);
    assert.match(verdict(db('postgresql'), '') ?? '', /does not start with "PGDMP"/);
  });

  const plain = '--\n-- PostgreSQL database dump\n--\nCREATE TABLE t ();\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n\n';
  test('a plain dump (--format=plain) needs its trailer, which may be followed by \\unrestrict', () => {
    const config = db('postgresql', { extraArgs: ['--format=plain'] });
    assert.equal(ENGINES.postgresql.completeness(config).scope, 'stream');
    assert.equal(verdict(config, plain), undefined);
    assert.match(verdict(config, plain.slice(0, 40)) ?? '', /lacks its final "-- PostgreSQL database dump complete"/);
  });

  test('pg_dumpall needs the cluster trailer, not only a database one', () => {
    const config = db('postgresql', { allDatabases: true, name: undefined });
    assert.match(verdict(config, plain) ?? '', /pg_dumpall's output lacks its final "-- PostgreSQL database cluster dump complete"/);
    assert.equal(verdict(config, `${plain}--\n-- PostgreSQL database cluster dump complete\n--\n\n`), undefined);
  });
});

describe('mysql and mariadb', () => {
  const complete = '-- MariaDB dump 10.19\nCREATE TABLE t (a int);\n/*!40101 SET SQL_MODE=@OLD_SQL_MODE */;\n\n-- Dump completed on 2026-12-01 22:39:59\n';
  test('a dump passes with its trailer, with or without the date', () => {
    for (const type of ['mysql', 'mariadb'] as const) {
      assert.equal(verdict(db(type), complete), undefined);
      assert.equal(verdict(db(type), complete.replace(/ on .*\n$/, '\n')), undefined);
    }
  });

  test('a dump without the trailer fails', () => {
    assert.match(verdict(db('mariadb'), complete.slice(0, 60)) ?? '', /lacks its final "-- Dump completed"/);
  });

  test('options that drop the trailer or write it after errors are refused at configuration', () => {
    for (const option of ['--skip-comments', '--compact', '--force']) {
      const problems = ENGINES.mariadb.validate(db('mariadb', { extraArgs: ['--no-data', option] }));
      assert.equal(problems.length, 1, option);
      assert.match(problems[0] ?? '', new RegExp(`DB_EXTRA_ARGS: ${option} is refused`));
    }
    assert.deepEqual(ENGINES.mysql.validate(db('mysql', { extraArgs: ['--skip-dump-date'] })), []);
  });
});

describe('mongodb', () => {
  const archive = Buffer.concat([Buffer.from([0x6d, 0xe2, 0x99, 0x81]), Buffer.from('prelude and collections'), Buffer.from([0xff, 0xff, 0xff, 0xff])]);
  test('an archive needs its magic number and terminator', () => {
    assert.equal(verdict(db('mongodb'), archive), undefined);
    assert.match(verdict(db('mongodb'), archive.subarray(0, archive.length - 2)) ?? '', /lacks its terminator/);
    assert.match(verdict(db('mongodb'), 'Failed: error connecting') ?? '', /not a mongodump archive/);
  });
});

describe('sqlite', () => {
  const complete = 'PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCREATE TABLE t(a);\nINSERT INTO t VALUES(1);\nCOMMIT;\n';
  test('a dump that ends in COMMIT with no error comments passes', () => {
    assert.equal(verdict(db('sqlite'), complete), undefined);
  });

  test('the shell\'s answer for a file that is not a database fails (what sqlite3 3.40 writes, exit 0)', () => {
    const notADatabase = 'PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n/**** ERROR: (26) file is not a database *****/\nROLLBACK; -- due to errors\n';
    assert.match(verdict(db('sqlite'), notADatabase) ?? '', /error into the dump, .*: \/\*\*\*\* ERROR: \(26\) file is not a database \*\*\*\*\*\/$/);
  });

  test('a corruption comment fails even when the dump ends in COMMIT', () => {
    const corrupt = complete.replace('INSERT', '/****** CORRUPTION ERROR *******/\nINSERT');
    assert.match(verdict(db('sqlite'), corrupt) ?? '', /CORRUPTION ERROR/);
  });

  test('ROLLBACK at the end fails, and so does a dump cut before COMMIT', () => {
    assert.match(verdict(db('sqlite'), complete.replace('COMMIT;', 'ROLLBACK; -- due to errors')) ?? '', /ends in ROLLBACK/);
    assert.match(verdict(db('sqlite'), complete.slice(0, -9)) ?? '', /does not end with COMMIT;/);
  });

  test('the error scan finds a comment split across chunks and keeps only a small window', () => {
    const scan = scanner(['/**** ERROR:']);
    scan.write(Buffer.from(`${'x'.repeat(100_000)}/**** ER`));
    assert.equal(scan.found(), undefined);
    scan.write(Buffer.from('ROR: (11) database disk image is malformed *****/\nmore'));
    assert.equal(scan.found(), '/**** ERROR: (11) database disk image is malformed *****/');
  });
});
