// The bundle the images ship: dist/main.js alone, in a folder with no node_modules anywhere above it,
// run by the pinned Node 24. Unconfigured, it must refuse to run with the config exit code and say
// why in one JSON log line, exactly as the image build's own check expects.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { EXIT_CODES } from '../../../src/exit-codes.ts';
import { ROOT } from '../../../deploy/images/render.ts';

const NODE = join(ROOT, 'node_modules/.bin/node');
const BUNDLE = join(ROOT, 'dist/main.js');

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'planb-bundle-'));
  if (existsSync(BUNDLE)) await copyFile(BUNDLE, join(dir, 'main.js'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

// The bundle is built by `npm run build` (the test command's pretest); without it there is nothing to run.
function requireBundle(t: TestContext): boolean {
  if (existsSync(BUNDLE)) return true;
  if (process.env.CI) throw new Error('dist/main.js is missing (CI is set, so this is a failure): run npm run build');
  t.skip('dist/main.js is missing: run npm run build');
  return false;
}

function runAlone(env: Record<string, string>, node = NODE, nodeArgs: string[] = []): { status: number | null; lines: Record<string, unknown>[]; stdout: string; stderr: string } {
  const result = spawnSync(node, [...nodeArgs, 'main.js'], { cwd: dir, env, encoding: 'utf8', timeout: 30_000 });
  const lines = result.stdout.split('\n').filter((line) => line.trim() !== '').map((line) => JSON.parse(line) as Record<string, unknown>);
  return { status: result.status, lines, stdout: result.stdout, stderr: result.stderr };
}

describe('dist/main.js on its own', () => {
  test('the folder it runs from has no node_modules anywhere above it', () => {
    for (let at = dir; at !== dirname(at); at = dirname(at)) assert.ok(!existsSync(join(at, 'node_modules')), `${at}/node_modules would hide a missing bundle dependency`);
  });

  test('with no environment at all it exits 78 and says what is missing in a JSON log line', (t) => {
    if (!requireBundle(t)) return;
    const { status, lines, stdout, stderr } = runAlone({});
    assert.equal(status, EXIT_CODES.CONFIG.code, `stdout: ${stdout}\nstderr: ${stderr}`);
    assert.equal(stderr, '', 'nothing but JSON on stdout');
    assert.equal(lines.length, 1, stdout);
    const [line] = lines;
    assert.equal(line?.severity, 'CRITICAL');
    assert.equal(line?.exitCode, EXIT_CODES.CONFIG.code);
    assert.match(String(line?.message), /DB_TYPE/);
  });

  test('with only DB_TYPE set, as the image sets it, it still exits 78: the image build check relies on it', (t) => {
    if (!requireBundle(t)) return;
    const { status, lines } = runAlone({ DB_TYPE: 'postgresql' });
    assert.equal(status, EXIT_CODES.CONFIG.code);
    assert.match(String(lines[0]?.message), /STORAGE_TYPE/);
    assert.doesNotMatch(String(lines[0]?.message), /DB_TYPE is required/);
  });

  // The image pins Node 24; someone may still run the file with an older node by hand.
  function assertRefusesOldNode(result: ReturnType<typeof runAlone>, version: string): void {
    assert.equal(result.status, EXIT_CODES.CONFIG.code, `stdout: ${result.stdout}\nstderr: ${result.stderr}`);
    assert.equal(result.stderr, '', 'no SyntaxError, nothing but JSON on stdout');
    assert.equal(result.lines.length, 1, result.stdout);
    assert.equal(result.lines[0]?.severity, 'CRITICAL');
    assert.equal(result.lines[0]?.exitCode, EXIT_CODES.CONFIG.code);
    assert.equal(result.lines[0]?.message, `Plan B needs Node.js 24 or later; this is Node.js ${version}. Run it with the image's node (or install Node.js 24).`);
  }

  test('an older Node.js (as process.versions says) gets one JSON line and exit 78 before anything runs', (t) => {
    if (!requireBundle(t)) return;
    const pretend = `data:text/javascript,Object.defineProperty(process.versions,'node',{value:'22.11.0'})`;
    assertRefusesOldNode(runAlone({ DB_TYPE: 'postgresql' }, NODE, ['--import', pretend]), '22.11.0');
  });

  test('a real older Node.js (the system node, when it is one) gets the same line, not a SyntaxError', (t) => {
    if (!requireBundle(t)) return;
    const system = ['/usr/bin/node', '/usr/local/bin/node'].find((path) => existsSync(path));
    const version = system === undefined ? undefined : spawnSync(system, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim();
    if (system === undefined || version === undefined || Number(version.split('.')[0]) >= 24) {
      t.skip('no Node.js older than 24 on this machine: the test above covers the check itself');
      return;
    }
    assertRefusesOldNode(runAlone({ DB_TYPE: 'postgresql' }, system), version);
  });
});
