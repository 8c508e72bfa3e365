// Bundles src/ into one file, dist/main.js, that runs with `node dist/main.js` and no node_modules beside it.
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';

const pkg = JSON.parse(await readFile(new URL('./package.json', import.meta.url), 'utf8'));
// `>=24` in package.json: the bundle refuses older Node.js itself (src/require-node.ts).
const minNodeMajor = Number(/\d+/.exec(pkg.engines.node)?.[0]);

// Node's own modules become require() calls made when the importing module first runs, instead of
// `import { x } from 'node:y'` lines that Node links before any code runs: on an older Node.js a
// missing export (createZstdCompress) would otherwise end the process with a SyntaxError before
// src/require-node.ts could say what is wrong.
const builtins = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));
const lazyBuiltins = {
  name: 'lazy-builtins',
  setup(build) {
    build.onResolve({ filter: /^[a-z0-9:_/]+$/ }, (args) => {
      if (!builtins.has(args.path) && !args.path.startsWith('node:')) return undefined;
      // Inside the shim itself the require() is the real one.
      if (args.namespace === 'lazy-builtin') return { path: args.path, external: true };
      return { path: args.path, namespace: 'lazy-builtin' };
    });
    build.onLoad({ filter: /.*/, namespace: 'lazy-builtin' }, (args) => ({ contents: `module.exports = require(${JSON.stringify(args.path)});`, loader: 'js' }));
  },
};

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
  define: { PLANB_VERSION: JSON.stringify(pkg.version), PLANB_MIN_NODE_MAJOR: String(minNodeMajor) },
  plugins: [lazyBuiltins],
  // Some CommonJS dependencies call require() on Node built-ins; an ESM bundle has no require of its own.
  banner: { js: "import { createRequire as __planbCreateRequire } from 'node:module'; const require = __planbCreateRequire(import.meta.url);" },
});
