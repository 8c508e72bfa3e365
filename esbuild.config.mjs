// Bundles src/ into one file, dist/main.js, that runs with `node dist/main.js` and no node_modules beside it.
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';

const pkg = JSON.parse(await readFile(new URL('./package.json', import.meta.url), 'utf8'));

await build({
  // verify.js: the callback verifier a control plane imports, without the job's cloud SDKs.
  entryPoints: { main: 'src/main.ts', ...(existsSync('src/callback/verify.ts') && { verify: 'src/callback/verify.ts' }) },
  outdir: 'dist',
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'esm',
  sourcemap: 'linked',
  legalComments: 'linked',
  logLevel: 'warning',
  define: { PLANB_VERSION: JSON.stringify(pkg.version) },
  // Some CommonJS dependencies call require() on Node built-ins; an ESM bundle has no require of its own.
  banner: { js: "import { createRequire as __planbCreateRequire } from 'node:module'; const require = __planbCreateRequire(import.meta.url);" },
});
