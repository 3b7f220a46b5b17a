// Bundles the CLI into one module (dist/cli/ckpt.js, the package's bin). Node then reads and
// compiles one file instead of resolving and loading a few hundred, which is most of what a short
// command costs: an unchanged re-push takes ~0.5 s instead of ~0.65 s. The library (dist/index.js)
// and the worker threads stay as tsc wrote them.
import { build } from 'esbuild';

await build({
  entryPoints: ['dist/cli/main.js'],
  // Beside main.js: worker-url.ts resolves the workers against its own module's URL, which in the
  // bundle is this file's, and one directory below dist/ the same relative path finds them.
  outfile: 'dist/cli/ckpt.js',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // A native addon: loaded from node_modules at run time.
  external: ['zstd-napi'],
  // The CommonJS dependencies (undici, commander, tar-stream) call require() for Node's modules.
  banner: { js: "import { createRequire as __ckptCreateRequire } from 'node:module';\nconst require = __ckptCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
