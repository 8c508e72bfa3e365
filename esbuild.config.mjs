// Bundles src/ into one file, dist/main.js, that runs with `node dist/main.js` and no node_modules beside it.
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';

const pkg = JSON.parse(await readFile(new URL('./package.json', import.meta.url), 'utf8'));

await build({
  // verify.js: the callback verifier a control plane imports, without the job's cloud SDKs.
  entryPoints: { main: 'src/main.ts', verify: 'src/callback/verify.ts' },
  outdir: 'dist',
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'esm',
  sourcemap: 'linked',
  legalComments: 'linked',
  logLevel: 'warning',
  // Keep class names: the GCS SDK's HTTP client checks `signal.constructor.name === 'AbortSignal'`.
  keepNames: true,
  // A dependency (tr46, via node-fetch) requires Node's deprecated built-in punycode, which prints a
  // DeprecationWarning on stderr; the npm package of the same code replaces it.
  alias: { punycode: 'punycode/' },
  define: { PLANB_VERSION: JSON.stringify(pkg.version) },
  // Some CommonJS dependencies call require() on Node built-ins; an ESM bundle has no require of its own.
  banner: { js: "import { createRequire as __planbCreateRequire } from 'node:module'; const require = __planbCreateRequire(import.meta.url);" },
});
