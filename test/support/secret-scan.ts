// The check behind "secrets never appear in any output": every run of the bundled job (runJob)
// registers the secrets its environment holds (each secret variable and the content of its X_FILE),
// and everything the run writes (stdout, stderr) and every callback body a test receiver gets while
// the run is alive is scanned for them. A secret counts when it appears whole, as the job's own
// scrubbing defines it (src/redact.ts): shorter ones than it scrubs are not looked for.
import assert from 'node:assert/strict';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { secretVariables } from '../../src/config.ts';
import { MIN_SCRUBBED_SECRET_LENGTH, scrubSecrets } from '../../src/redact.ts';

const active = new Map<symbol, readonly string[]>();
const callbackLeaks: string[] = [];

// The secret values an environment gives the job: each secret variable, each X_FILE's content, and
// the words and lines of each value (CALLBACK_SECRET may list several; a password may hold a newline).
export function secretsOf(env: Readonly<Record<string, string>>): string[] {
  const values = secretVariables().flatMap((name) => {
    const file = env[`${name}_FILE`];
    return [env[name], file ? smallFile(file)?.replace(/\r?\n$/, '') : undefined];
  });
  return [...new Set(values.filter((value): value is string => typeof value === 'string')
    .flatMap((value) => [value, ...value.split(/\s+/), ...value.split(/\r?\n/)])
    .filter((value) => value.length >= MIN_SCRUBBED_SECRET_LENGTH))];
}

// Marks a run's secrets as live until the returned function is called.
export function registerRun(secrets: readonly string[]): () => void {
  const key = Symbol('run');
  active.set(key, secrets);
  return () => active.delete(key);
}

// Called by the test webhook receiver for every body it receives.
export function scanCallbackBody(body: string): void {
  const leaked = found(body, [...active.values()].flat());
  if (leaked.length > 0) callbackLeaks.push(`callback body holds ${JSON.stringify(leaked)}: ${body.slice(0, 500)}`);
}

// Fails when a run's output, or any callback body received so far, holds one of its secrets.
export function assertNoSecrets(outputs: Readonly<Record<string, string>>, secrets: readonly string[]): void {
  const problems = [...callbackLeaks.splice(0)];
  for (const [source, text] of Object.entries(outputs)) {
    const leaked = found(text, secrets);
    if (leaked.length > 0) {
      const line = text.split('\n').find((candidate) => found(candidate, leaked).length > 0) ?? '';
      problems.push(`${source} holds ${JSON.stringify(leaked)}: ${line.slice(0, 500)}`);
    }
  }
  assert.deepEqual(problems, [], 'a secret appeared in the output of the job');
}

// Secrets found whole in `text`, as typed or as JSON escapes them (log lines and bodies are JSON).
function found(text: string, secrets: readonly string[]): string[] {
  return secrets.filter((secret) => [secret, JSON.stringify(secret).slice(1, -1)].some((form) => scrubSecrets(text, [form]) !== text));
}

// A regular file's content, if it is small; undefined otherwise (a FIFO or a device is never read).
function smallFile(path: string): string | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const stat = fstatSync(fd);
    if (!stat.isFile() || stat.size > 1024 * 1024) return undefined;
    const buffer = Buffer.alloc(stat.size);
    const length = readSync(fd, buffer, 0, buffer.length, 0);
    return buffer.subarray(0, length).toString('utf8');
  } catch {
    return undefined; // a missing file: the job says so itself
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
