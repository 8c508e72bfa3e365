// The documentation stays navigable: the README stays a short overview, and every relative link in
// README.md and docs/ leads to a file (and heading) of this repository.
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';

const ROOT = resolve(import.meta.dirname, '../..');
// The README is the five-minute overview; the reference lives in docs/.
const README_MAX_BYTES = 12 * 1024;

async function markdownFiles(): Promise<string[]> {
  const docs = await readdir(join(ROOT, 'docs'), { recursive: true });
  return ['README.md', ...docs.filter((name) => name.endsWith('.md')).map((name) => join('docs', name))].toSorted();
}

// Markdown without fenced code blocks and inline code, where `[x](y)` and `#` are not links or headings.
function prose(markdown: string): string {
  return markdown.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, '').replace(/`[^`\n]*`/g, (code) => code.replace(/[[\]()#]/g, ' '));
}

// GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered.
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const result = new Set<string>();
  const withoutFences = markdown.replace(/^```[^\n]*\n[\s\S]*?^```$/gm, '');
  for (const [, heading = ''] of withoutFences.matchAll(/^#{1,6} +(.+?) *#*$/gm)) {
    const text = heading.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/[`*]/g, '');
    const slug = text.toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const count = seen.get(slug) ?? 0;
    seen.set(slug, count + 1);
    result.add(count === 0 ? slug : `${slug}-${count}`);
  }
  return result;
}

test('README.md stays under 12 KB', () => {
  const bytes = statSync(join(ROOT, 'README.md')).size;
  assert.ok(bytes <= README_MAX_BYTES, `README.md is ${bytes} bytes; move detail into docs/ (limit ${README_MAX_BYTES})`);
});

test('every relative link in README.md and docs/ resolves to a file and heading of the repository', async () => {
  const broken: string[] = [];
  const files = await markdownFiles();
  assert.ok(files.includes('docs/configuration.md'), 'the reference pages are found');
  for (const file of files) {
    const text = await readFile(join(ROOT, file), 'utf8');
    for (const [, target = ''] of prose(text).matchAll(/\]\(([^)\s]+)(?: "[^"]*")?\)/g)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:: not ours to check
      const [path = '', fragment] = target.split('#', 2);
      const destination = path === '' ? join(ROOT, file) : resolve(dirname(join(ROOT, file)), decodeURIComponent(path));
      const where = `${file}: ${target}`;
      if (relative(ROOT, destination).startsWith('..')) broken.push(`${where} leaves the repository`);
      else if (!existsSync(destination)) broken.push(`${where} does not exist`);
      else if (fragment !== undefined && destination.endsWith('.md') && !anchors(await readFile(destination, 'utf8')).has(fragment)) {
        broken.push(`${where} names no heading of ${relative(ROOT, destination)}`);
      }
    }
  }
  assert.deepEqual(broken, []);
});

test('the documentation cites nothing outside the repository: no tracker numbers, no notes files, no "this machine"', async () => {
  const found: string[] = [];
  for (const file of await markdownFiles()) {
    const text = await readFile(join(ROOT, file), 'utf8');
    for (const pattern of [/\bissues? #?\d+/gi, /\bFACTS\.md\b/g, /\bthis machine\b/gi]) {
      for (const match of text.matchAll(pattern)) found.push(`${file}: ${match[0]}`);
    }
  }
  assert.deepEqual(found, []);
});

test('heading anchors follow GitHub: punctuation dropped, spaces to hyphens, repeats numbered', () => {
  const slugs = anchors('# Plan B — a job\n## `docker run`\n## Testing an image (Docker host only)\n```sh\n# not a heading\n```\n## Logs\n## Logs\n');
  assert.deepEqual([...slugs], ['plan-b--a-job', 'docker-run', 'testing-an-image-docker-host-only', 'logs', 'logs-1']);
});
