// The encryption stage: age v1 to public keys (X25519 recipients, `age1…`), after compression. The
// reference `age` CLI runs as a child process, off the JavaScript thread, the same way a CLI compressor
// does; its STREAM format encrypts 64 KiB chunks, so its memory stays flat whatever the dump's length.
// The job holds only public keys: nothing it has can decrypt what it wrote. Also the decryption stage a
// restore uses, with an identity file it reads itself. Why the CLI and not a JavaScript implementation:
// docs/encryption.md (measured figures in BENCHMARKS.md).
import { spawn } from 'node:child_process';
import { Duplex } from 'node:stream';
import { EncryptionError, StoppedError } from '../errors.ts';
import { which } from '../which.ts';

// Extension the encryption adds to the key, after the compression's.
export const ENCRYPTED_EXTENSION = '.age';

// The CLI's name on PATH (Debian package `age`).
export const AGE_CLI = 'age';

// age's X25519 recipient: Bech32 with human-readable part `age`, a 32-byte key, and the checksum.
const RECIPIENT_HRP = 'age';
const RECIPIENT_KEY_BYTES = 32;
const BECH32_CHARSET = 'qpzry9x8gf2tvdw0s3jn54khce6mua7l';
const BECH32_GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3] as const;
const BECH32_CHECKSUM_LENGTH = 6;
// How much of the CLI's stderr to keep for an error message.
const STDERR_TAIL_BYTES = 2048;

// A running age child, as a pipeline stage.
export type AgeStage = {
  // Plain bytes in, encrypted bytes out (or the reverse when decrypting).
  stage: Duplex;
  // What does the work, for the log: `age 1.1.1 to 2 recipients`.
  describe: string;
  // Resolves when age exited 0; rejects with an EncryptionError otherwise (a StoppedError after kill()).
  exited: Promise<void>;
  // Stops it at once (after a failure elsewhere).
  kill(): void;
};

// Splits a BACKUP_ENCRYPTION_RECIPIENTS value (spaces or newlines; `#` starts a comment, as in age's
// recipients files) into recipients, and says what is wrong with each one that is not an age key.
// Never echoes more than the start of a bad entry: someone may paste a secret key here by mistake.
export function parseRecipients(text: string): { recipients: string[]; problems: string[] } {
  const entries = text
    .split('\n')
    .map((line) => line.replace(/#.*$/, ''))
    .flatMap((line) => line.split(/\s+/))
    .filter((entry) => entry !== '');
  const problems: string[] = [];
  for (const [index, entry] of entries.entries()) {
    if (entry.toUpperCase().startsWith('AGE-SECRET-KEY-')) {
      problems.push(`entry #${index + 1} is an age SECRET key: give the job only public keys (age1…, from age-keygen -y)`);
    } else if (!isAgeRecipient(entry)) {
      problems.push(`entry #${index + 1} ("${entry.slice(0, 8)}…") is not an age X25519 public key (age1 followed by 58 Bech32 characters)`);
    }
  }
  return { recipients: [...new Set(entries)], problems };
}

// Whether `text` is an age X25519 recipient: `age1` + Bech32 data of a 32-byte key with a valid checksum.
export function isAgeRecipient(text: string): boolean {
  // Bech32 is either all lower or all upper case; age writes lower case.
  if (text !== text.toLowerCase() && text !== text.toUpperCase()) return false;
  const lower = text.toLowerCase();
  const separator = lower.lastIndexOf('1');
  if (lower.slice(0, separator) !== RECIPIENT_HRP) return false;
  const values = [...lower.slice(separator + 1)].map((char) => BECH32_CHARSET.indexOf(char));
  if (values.some((value) => value < 0) || values.length < BECH32_CHECKSUM_LENGTH) return false;
  if (bech32Polymod([...expandHrp(RECIPIENT_HRP), ...values]) !== 1) return false;
  const data = values.slice(0, -BECH32_CHECKSUM_LENGTH);
  const bits = data.length * 5;
  // 32 bytes are 256 bits: 52 groups of 5, the last 4 bits padding that must be zero.
  return Math.floor(bits / 8) === RECIPIENT_KEY_BYTES && bits - RECIPIENT_KEY_BYTES * 8 < 5 && (data.at(-1)! & ((1 << (bits % 8)) - 1)) === 0;
}

function expandHrp(hrp: string): number[] {
  const codes = [...hrp].map((char) => char.charCodeAt(0));
  return [...codes.map((code) => code >> 5), 0, ...codes.map((code) => code & 31)];
}

function bech32Polymod(values: readonly number[]): number {
  let checksum = 1;
  for (const value of values) {
    const top = checksum >>> 25;
    checksum = ((checksum & 0x1ffffff) << 5) ^ value;
    for (const [bit, generator] of BECH32_GENERATOR.entries()) {
      if ((top >>> bit) & 1) checksum ^= generator;
    }
  }
  return checksum >>> 0;
}

// Starts `age` encrypting to `recipients`. The recipients go in argv: they are public keys.
export function startEncryptor(recipients: readonly string[], path: string): AgeStage {
  const args = recipients.flatMap((recipient) => ['-r', recipient]);
  return startAge(args, path, 'encrypt', `age to ${recipients.length} recipient${recipients.length === 1 ? '' : 's'}`);
}

// Starts `age -d` with the identities in `identityFile` (RESTORE_IDENTITY_FILE): encrypted bytes in,
// plain bytes out. age reads the file itself: the secret key never enters this process. A stream that
// none of the identities can open, or that was cut short or altered, makes `exited` reject.
export function createAgeDecryptor(identityFile: string, path: string): AgeStage {
  return startAge(['-d', '-i', identityFile], path, 'decrypt', `age -d with identities from ${identityFile}`);
}

function startAge(args: string[], path: string, direction: 'encrypt' | 'decrypt', describe: string): AgeStage {
  const cli = which([AGE_CLI], path);
  if (!cli) {
    throw new EncryptionError(`${AGE_CLI} is not on PATH; this image cannot ${direction} (install the age package)`, { kind: 'missing-tool', stage: direction });
  }
  const child = spawn(cli.file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: path } });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    stderr = (stderr + text).slice(-STDERR_TAIL_BYTES);
  });
  const stderrClosed = new Promise<void>((resolve) => child.stderr.once('close', resolve));
  // Set when kill() stopped age because something else failed: its exit is then not a failure of its own.
  let stopped = false;
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', (error) => reject(new EncryptionError(`${AGE_CLI} could not start: ${error.message}`, { kind: 'failed', stage: direction }, { cause: error })));
    // 'exit', not 'close': after a failure elsewhere the pipes may never close on their own.
    child.once('exit', (code, signal) => {
      if (code === 0) return resolve();
      // Killed by kill(): not a failure of its own. An exit code means age ended by itself, even if
      // kill() came too late to matter.
      if (stopped && code === null) return reject(new StoppedError(direction, AGE_CLI));
      void stderrClosed.then(() => reject(ageFailure(direction, code, signal, stderr)));
    });
  });
  // A failure of the stage is reported through `exited`; the pipeline's own copy stays quiet.
  exited.catch(() => undefined);
  return {
    stage: Duplex.from({ writable: child.stdin, readable: child.stdout }),
    describe,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) {
        stopped = true;
        child.kill('SIGKILL');
      }
      child.stdin.destroy();
      child.stdout.destroy();
    },
  };
}

// Runs a small buffer (a facts sidecar) through an age stage and returns all of its output once age
// exited 0. The input is bounded by the caller, and age's output is within a few hundred bytes of it.
export async function throughAge(age: AgeStage, input: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of age.stage) chunks.push(chunk as Buffer);
  })();
  age.stage.end(input);
  const [output, exit] = await Promise.allSettled([collected, age.exited]);
  // age's own failure is the cause; the stream's (a write to an age that had exited) follows from it.
  if (exit.status === 'rejected') throw exit.reason;
  if (output.status === 'rejected') throw output.reason;
  return Buffer.concat(chunks);
}

// age's failure in words a person can act on; age's own line (`age: error: …`) follows.
function ageFailure(direction: 'encrypt' | 'decrypt', code: number | null, signal: NodeJS.Signals | null, stderr: string): EncryptionError {
  const detail = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('age: report unexpected'))
    .join('; ');
  const how = signal ? `killed by ${signal}` : `exit code ${code}`;
  if (direction === 'decrypt' && /no identity matched/i.test(detail)) {
    return new EncryptionError(
      `age could not decrypt: the identity file holds none of the keys this backup was encrypted to (${detail})`,
      { kind: 'wrong-identity', stage: direction, exitCode: code ?? undefined },
    );
  }
  if (direction === 'decrypt' && /^age: error: reading "/m.test(stderr)) {
    return new EncryptionError(`age could not read the identity file: ${detail}`, { kind: 'identity-file', stage: direction, exitCode: code ?? undefined });
  }
  if (direction === 'decrypt' && signal === null) {
    return new EncryptionError(`age could not decrypt (${how}): ${detail || 'no message'}; the object is damaged, truncated or not an age file`, {
      kind: 'corrupt',
      stage: direction,
      exitCode: code ?? undefined,
    });
  }
  return new EncryptionError(`age failed to ${direction} (${how})${detail ? `: ${detail}` : ''}`, { kind: 'failed', stage: direction, exitCode: code ?? undefined });
}
