// The verifier as a control plane gets it: `import { verifyCallback } from 'planb-backup/verify'`
// resolves through package.json `exports` to a small bundle with TypeScript types and no cloud SDK.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { build } from 'esbuild';
import { newSecret } from '../../unit/callback/reports.ts';

const run = promisify(execFile);
const ROOT = new URL('../../../', import.meta.url).pathname;
const NODE = join(ROOT, 'node_modules/.bin/node');
const TSC = join(ROOT, 'node_modules/.bin/tsc');
// The verifier is a few hundred lines of our code on node:crypto; 20 KB leaves room, an SDK would not fit.
const MAX_VERIFY_BUNDLE_BYTES = 20_000;
// Strings that appear in the cloud SDKs and the job's own modules, never in the verifier.
const FOREIGN = ['@aws-sdk', 'aws-sdk', '@google-cloud', '@azure', 'pino', 'envalid', 'execa', 'sendCallback', 'loadConfig'];

// Every module the bundle still imports at run time: only node built-ins are allowed.
function imports(bundle: string): string[] {
  return [...bundle.matchAll(/(?:from\s*|import\s*\(?\s*|require\s*\(\s*)["']([^"']+)["']/g)].map((match) => match[1] ?? '');
}

// Bundles src/callback/verify.ts the way esbuild.config.mjs does, emits its declarations with
// tsconfig.verify.json, and lays both out as an installed package beside a consumer project.
async function installedPackage(): Promise<{ dir: string; inputs: string[]; bundle: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'planb-verify-'));
  const pkg = join(dir, 'consumer/node_modules/planb-backup');
  await mkdir(join(pkg, 'dist'), { recursive: true });
  const result = await build({
    entryPoints: { verify: join(ROOT, 'src/callback/verify.ts') },
    outdir: join(pkg, 'dist'),
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'esm',
    metafile: true,
    logLevel: 'silent',
  });
  await run(TSC, ['-p', join(ROOT, 'tsconfig.verify.json'), '--outDir', join(pkg, 'dist')]);
  await cp(join(ROOT, 'package.json'), join(pkg, 'package.json'));
  await writeFile(join(dir, 'consumer/package.json'), JSON.stringify({ name: 'control-plane', type: 'module', private: true }));
  await symlink(join(ROOT, 'node_modules/@types'), join(dir, 'consumer/node_modules/@types'));
  return { dir, inputs: Object.keys(result.metafile.inputs), bundle: await readFile(join(pkg, 'dist/verify.js'), 'utf8') };
}

let installed: Awaited<ReturnType<typeof installedPackage>>;
before(async () => {
  installed = await installedPackage();
});
after(() => rm(installed.dir, { recursive: true, force: true }));

test('the verifier bundle holds only the verifier, the signer and node built-ins, and stays tiny', () => {
  const { inputs, bundle } = installed;
  assert.deepEqual(inputs.map((input) => relative(ROOT, join(ROOT, input))).sort(), ['src/callback/sign.ts', 'src/callback/verify.ts']);
  assert.ok(Buffer.byteLength(bundle) < MAX_VERIFY_BUNDLE_BYTES, `${Buffer.byteLength(bundle)} bytes`);
  for (const word of FOREIGN) assert.ok(!bundle.includes(word), `the verifier bundle mentions ${word}`);
  assert.deepEqual(imports(bundle).filter((name) => !name.startsWith('node:')), []);
});

test('a control plane imports planb-backup/verify by name, with types, and verifies a callback', async () => {
  const consumer = join(installed.dir, 'consumer');
  const secret = newSecret();
  await writeFile(
    join(consumer, 'receive.ts'),
    `import { createHmac } from 'node:crypto';
import { verifyCallback, WebhookVerificationError, type CallbackPayload } from 'planb-backup/verify';
import { verifyCallback as fromRoot } from 'planb-backup';

const secret = ${JSON.stringify(secret)};
const body = JSON.stringify({ type: 'backup.failed', timestamp: new Date().toISOString(), data: { runId: 'r1' } });
const id = 'msg_r1';
const timestamp = Math.floor(Date.now() / 1000);
const signature = createHmac('sha256', Buffer.from(secret.slice(6), 'base64')).update(\`\${id}.\${timestamp}.\${body}\`).digest('base64');
const headers = { 'webhook-id': id, 'webhook-timestamp': String(timestamp), 'webhook-signature': \`v1,\${signature}\` };

const payload: CallbackPayload = verifyCallback(body, headers, secret);
if (payload.type === 'backup.failed') {
  // @ts-expect-error a failed callback's object is optional (only a failed verification names one): proves the types are real, not any
  const key: string = payload.data.object?.key;
  void key;
}
let rejected = '';
try {
  fromRoot(body + ' ', headers, [secret]);
} catch (error) {
  if (error instanceof WebhookVerificationError) rejected = error.reason;
}
console.log(JSON.stringify({ type: payload.type, rejected }));
`,
  );
  await writeFile(
    join(consumer, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2024', strict: true, noEmit: true, types: ['node'], erasableSyntaxOnly: true },
      files: ['receive.ts'],
    }),
  );
  await run(TSC, ['-p', join(consumer, 'tsconfig.json')]).catch((error: Error & { stdout?: string }) =>
    assert.fail(`type-check of the consumer failed:\n${error.stdout ?? error.message}`),
  );
  const { stdout } = await run(NODE, [join(consumer, 'receive.ts')], { cwd: consumer });
  assert.deepEqual(JSON.parse(stdout), { type: 'backup.failed', rejected: 'signature' });
});

test('the built dist/verify.js (npm run build) is as small and as clean as the fresh bundle', async (t) => {
  const built = join(ROOT, 'dist/verify.js');
  if (!existsSync(built)) {
    if (process.env.CI) assert.fail('dist/verify.js is missing: run npm run build first');
    t.skip('dist/verify.js is missing: run `npm run build` to check the shipped bundle');
    return;
  }
  const bundle = await readFile(built, 'utf8');
  assert.ok((await stat(built)).size < MAX_VERIFY_BUNDLE_BYTES, `${(await stat(built)).size} bytes`);
  for (const word of FOREIGN) assert.ok(!bundle.includes(word), `dist/verify.js mentions ${word}`);
  assert.deepEqual(imports(bundle).filter((name) => !name.startsWith('node:')), []);
});
