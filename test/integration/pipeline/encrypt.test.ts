// The age stages against the reference `age` CLI and the age authors' TypeScript library, as two
// independent implementations: what the encryptor writes opens with both, what the CLI wrote opens
// through the decryptor, and a wrong identity or a damaged object fails with a clear error.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Decrypter } from 'age-encryption';
import { EncryptionError } from '../../../src/errors.ts';
import { exitNameFor } from '../../../src/exit-codes.ts';
import { createAgeDecryptor, isAgeRecipient, parseRecipients, startEncryptor, type AgeStage } from '../../../src/pipeline/encrypt.ts';
import { findBinary, requireBinaries } from '../../support/require-binary.ts';

const run = promisify(execFile);
// age's STREAM chunk: plaintexts around and across it exercise the last-chunk flag.
const CHUNK = 64 * 1024;

let dir: string;
let path: string;
// Two key pairs made by age-keygen: [identity file, public key].
let alice: { identityFile: string; recipient: string; secret: string };
let bob: { identityFile: string; recipient: string; secret: string };

async function keyPair(name: string): Promise<{ identityFile: string; recipient: string; secret: string }> {
  const identityFile = join(dir, `${name}.key`);
  await run('age-keygen', ['-o', identityFile]);
  const secret = (await readFile(identityFile, 'utf8')).split('\n').find((line) => line.startsWith('AGE-SECRET-KEY-')) ?? '';
  const { stdout } = await run('age-keygen', ['-y', identityFile]);
  return { identityFile, recipient: stdout.trim(), secret };
}

// Runs bytes through a stage and returns its output once age exited; rejects with age's failure.
async function through(stage: AgeStage, input: Buffer): Promise<Buffer> {
  const output = buffer(stage.stage);
  await Promise.all([pipeline(Readable.from([input]), stage.stage).catch(() => undefined), stage.exited]);
  return output;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'planb-age-'));
  const age = findBinary('age');
  path = age ? dirname(age) : '/usr/bin';
  if (findBinary('age-keygen') === undefined) return;
  alice = await keyPair('alice');
  bob = await keyPair('bob');
});
after(() => rm(dir, { recursive: true, force: true }));

describe('age recipients', () => {
  test('keys from age-keygen are recipients; a changed character, a secret key or another key type is not', (t) => {
    if (!requireBinaries(t, ['age-keygen'])) return;
    assert.ok(isAgeRecipient(alice.recipient));
    assert.ok(isAgeRecipient(alice.recipient.toUpperCase()), 'Bech32 may be all upper case');
    const flipped = alice.recipient.slice(0, 20) + (alice.recipient[20] === 'q' ? 'p' : 'q') + alice.recipient.slice(21);
    assert.equal(isAgeRecipient(flipped), false, 'the checksum catches a typo');
    assert.equal(isAgeRecipient(alice.recipient.slice(0, -1)), false);
    assert.equal(isAgeRecipient(alice.secret), false);
    assert.equal(isAgeRecipient('ssh-ed25519'), false);
    assert.deepEqual(parseRecipients(`${alice.recipient}\n${bob.recipient} # bob\n`), { recipients: [alice.recipient, bob.recipient], problems: [] });
  });
});

describe('age stages', () => {
  for (const size of [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17, 5 * 1024 * 1024]) {
    test(`${size} bytes encrypted to two recipients decrypt with the age CLI for each, and with the TypeScript library`, async (t) => {
      if (!requireBinaries(t, ['age', 'age-keygen'])) return;
      const plain = randomBytes(size);
      const encryptor = startEncryptor([alice.recipient, bob.recipient], path);
      assert.equal(encryptor.describe, 'age to 2 recipients');
      const sealed = await through(encryptor, plain);
      assert.match(sealed.subarray(0, 22).toString('latin1'), /^age-encryption\.org\/v1\n/);
      if (size >= 16) assert.ok(!sealed.includes(plain.subarray(0, 16)), 'the plaintext does not show');
      const file = join(dir, `sealed-${size}.age`);
      await writeFile(file, sealed);
      for (const person of [alice, bob]) {
        const { stdout } = await run('age', ['-d', '-i', person.identityFile, file], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
        assert.ok(stdout.equals(plain), `the age CLI opens it with ${person.recipient}`);
      }
      const decrypter = new Decrypter();
      decrypter.addIdentity(bob.secret);
      assert.ok(Buffer.from(await decrypter.decrypt(sealed)).equals(plain), 'the TypeScript library opens it too');
    });
  }

  test('what the age CLI encrypted decrypts through the decryptor stage', async (t) => {
    if (!requireBinaries(t, ['age', 'age-keygen'])) return;
    const plain = randomBytes(2 * 1024 * 1024 + 5);
    const input = join(dir, 'cli-plain');
    await writeFile(input, plain);
    await run('age', ['-r', alice.recipient, '-o', `${input}.age`, input]);
    const decryptor = createAgeDecryptor(alice.identityFile, path);
    assert.ok((await through(decryptor, await readFile(`${input}.age`))).equals(plain));
  });

  test('a wrong identity fails with a clear error that maps to a configuration exit', async (t) => {
    if (!requireBinaries(t, ['age', 'age-keygen'])) return;
    const sealed = await through(startEncryptor([alice.recipient], path), randomBytes(1000));
    const failure = await through(createAgeDecryptor(bob.identityFile, path), sealed).then(() => assert.fail('decrypted with the wrong key'), (error: unknown) => error);
    assert.ok(failure instanceof EncryptionError, String(failure));
    assert.equal(failure.kind, 'wrong-identity');
    assert.match(failure.message, /identity file holds none of the keys this backup was encrypted to/);
    assert.equal(failure.stage, 'decrypt');
    assert.equal(exitNameFor(failure), 'CONFIG');
    assert.ok(!failure.message.includes(bob.secret.slice(15)), 'the secret key is not in the message');
  });

  test('a truncated or altered object fails to decrypt instead of yielding a shorter dump', async (t) => {
    if (!requireBinaries(t, ['age', 'age-keygen'])) return;
    const sealed = await through(startEncryptor([alice.recipient], path), randomBytes(4 * CHUNK));
    // Cut at a chunk boundary: only the missing last-chunk flag tells it is short.
    const header = sealed.length - (4 * CHUNK + 4 * 16);
    for (const damaged of [sealed.subarray(0, header + 2 * (CHUNK + 16)), Buffer.concat([sealed.subarray(0, -1), Buffer.from([sealed.at(-1)! ^ 1])])]) {
      const failure = await through(createAgeDecryptor(alice.identityFile, path), damaged).then(() => assert.fail('decrypted a damaged object'), (error: unknown) => error);
      assert.ok(failure instanceof EncryptionError && failure.kind === 'corrupt', String(failure));
      assert.match(failure.message, /damaged, truncated or not an age file/);
    }
  });

  test('an identity file that cannot be read is named as the problem', async (t) => {
    if (!requireBinaries(t, ['age', 'age-keygen'])) return;
    const sealed = await through(startEncryptor([alice.recipient], path), Buffer.from('x'));
    const failure = await through(createAgeDecryptor(join(dir, 'missing.key'), path), sealed).catch((error: unknown) => error);
    assert.ok(failure instanceof EncryptionError && failure.kind === 'identity-file', String(failure));
    assert.match(failure.message, /could not read the identity file.*missing\.key/);
  });

  test('without age on PATH the stage refuses to start, before any byte flows', () => {
    assert.throws(() => startEncryptor(['age1x'], join(dir, 'empty-bin')), (error: unknown) => error instanceof EncryptionError && error.kind === 'missing-tool' && exitNameFor(error) === 'INTERNAL');
  });
});
