// Bundles the job as it is in the working tree into another file, to compare a change against the
// current build side by side: `node test/bench/bundle.ts /tmp/before.js`, change the code, then
// `npm run bench -- --variants=…` with {"id": "before", "bundle": "/tmp/before.js"}.
import { build } from 'esbuild';
import { resolve } from 'node:path';

const outfile = process.argv[2];
if (!outfile) throw new Error('usage: node test/bench/bundle.ts OUTFILE');
const root = new URL('../../', import.meta.url).pathname;
await build({
  entryPoints: [resolve(root, 'src/main.ts')],
  outfile: resolve(outfile),
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'esm',
  logLevel: 'warning',
  define: { PLANB_VERSION: JSON.stringify('bench') },
  // The same banner as esbuild.config.mjs: some CommonJS dependencies call require() on built-ins.
  banner: { js: "import { createRequire as __planbCreateRequire } from 'node:module'; const require = __planbCreateRequire(import.meta.url);" },
});
