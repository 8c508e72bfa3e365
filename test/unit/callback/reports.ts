// Run reports and secrets shared by the callback tests.
import { randomBytes } from 'node:crypto';
import type { CallbackConfig } from '../../../src/config.ts';
import { createLogger, type Logger } from '../../../src/log.ts';
import type { RunReport } from '../../../src/report.ts';

// A fresh Standard Webhooks secret (24 random bytes, the minimum).
export function newSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

// Values that must never reach a payload or a log line.
export const DB_PASSWORD = 'db-pw-Zq8xK2vN7rT';
export const STORAGE_KEY = 'storage-key-Hf3mW9pLq4Ye';
export const GATEWAY_KEY = 'gateway-api-key-Rt5uX1cB8nM';
export const URL_TOKEN = 'url-token-Jk2sD6fG0hV';

// A backup that was stored.
export function succeededReport(overrides: Partial<RunReport> = {}): RunReport {
  return {
    operation: 'backup',
    runId: '20250102T030405Z-0a1b2c3d',
    status: 'succeeded',
    exitCode: 0,
    exitName: 'OK',
    database: { type: 'postgresql', host: 'db.internal', name: 'shop' },
    dumpTool: { name: 'pg_dump', version: '17.2' },
    object: {
      storageType: 'local',
      bucket: '/backups',
      key: 'nightly/postgresql-shop-20250102T030405Z-0a1b2c3d.dump.zst',
      url: 'file:///backups/nightly/postgresql-shop-20250102T030405Z-0a1b2c3d.dump.zst',
      bytes: 123_456,
      sha256: 'a'.repeat(64),
      compression: 'zstd',
    },
    rawBytes: 987_654,
    startedAt: new Date('2025-01-02T03:04:05.000Z'),
    finishedAt: new Date('2025-01-02T03:04:09.250Z'),
    durations: { totalMs: 4250, prepareMs: 120, streamMs: 4100 },
    error: undefined,
    platform: {},
    ...overrides,
  };
}

// A backup whose dump failed; nothing was stored.
export function failedReport(overrides: Partial<RunReport> = {}): RunReport {
  return succeededReport({
    status: 'failed',
    exitCode: 65,
    exitName: 'DUMP_FAILED',
    object: undefined,
    error: { stage: 'dump', code: 'DUMP_FAILED', message: 'pg_dump exited with code 1: server closed the connection unexpectedly' },
    ...overrides,
  });
}

// A callback configuration for `url` with the given secrets.
export function callbackConfig(url: string, secrets: readonly string[], overrides: Partial<CallbackConfig> = {}): CallbackConfig {
  return { url, secrets, timeoutMs: 5000, retries: 5, headers: {}, ...overrides };
}

// A logger that keeps its JSON lines in memory, to assert on and to scan for secrets.
export function capturingLogger(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const destination = { write: (line: string) => void lines.push(line) };
  return { log: createLogger({ level: 'trace', base: {}, destination }), lines };
}
