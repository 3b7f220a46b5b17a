// Bundles the CLI into dist/cli/ckpt.js (the package's bin), a small entry, and the
// dist/cli/ckpt-main.js it imports. Node then reads and compiles two files instead of resolving and
// loading a few hundred, which is most of what a short command costs: an unchanged re-push takes
// ~0.5 s instead of ~0.65 s. The library (dist/index.js) stays as tsc wrote it.
import { dirname, join } from 'node:path';
import { build } from 'esbuild';

// A native addon: loaded from node_modules at run time.
const external = ['zstd-napi'];
// The CommonJS dependencies (undici, commander, tar-stream) call require() for Node's modules.
const banner = { js: "import { createRequire as __ckptCreateRequire } from 'node:module';\nconst require = __ckptCreateRequire(import.meta.url);" };
// Every command compiles the bundle before it does anything: without whitespace and comments it is
// a third smaller, and all ASCII (a comment's "’" made V8 read the whole source as two-byte). The
// names stay, for stack traces and profiles; licences go to a .LEGAL.txt beside each bundle. The
// source maps (chained through tsc's to src/) cost nothing unless asked for: with
// `node --enable-source-maps` a stack trace names src/ lines instead of column 90000 of line 1.
const minify = { minifyWhitespace: true, minifySyntax: true, legalComments: 'external', sourcemap: true };

// zod's namespace carries its error messages in 63 languages (300 KB of the CLI bundle), which
// `export * as locales` keeps from tree shaking. ckpt reports in English only, and never reads
// z.locales (which holds only the English one here).
const englishOnly = {
  name: 'zod-english-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /node_modules[\\/]zod[\\/]/.test(args.importer) ? { path: join(dirname(args.importer), '../locales/en.js') } : undefined,
    );
  },
};
const common = { bundle: true, platform: 'node', format: 'esm', target: 'node20', banner, logLevel: 'warning', plugins: [englishOnly], ...minify };

// Beside main.js: worker-url.ts resolves the workers against its own module's URL, which in each
// bundle is that file's, and one directory below dist/ the same relative path finds them.
await build({ ...common, entryPoints: ['dist/cli/main.js'], outfile: 'dist/cli/ckpt-main.js', external });

// start.js starts a pull's workers, then imports main.js: in the bundle, the one above, which Node
// compiles only then.
await build({
  ...common,
  entryPoints: ['dist/cli/start.js'],
  outfile: 'dist/cli/ckpt.js',
  external,
  plugins: [
    englishOnly,
    {
      name: 'main-bundle',
      setup(b) {
        b.onResolve({ filter: /^\.\/main\.js$/ }, () => ({ path: './ckpt-main.js', external: true }));
      },
    },
  ],
});

// Each worker thread's module is bundled over the one tsc wrote, for the library and the CLI
// alike: a worker starts a fresh Node and loads its module graph anew, and a pull starts one per
// large layer. Bundled, three zstd workers take 0.27 CPU-seconds to start instead of 0.34. Built
// from the sources, so that running this twice gives the same files.
await build({
  ...common,
  entryPoints: ['src/unpack/zstd-worker.ts', 'src/image/page-worker.ts'],
  outdir: 'dist',
  outbase: 'src',
  allowOverwrite: true,
  external,
});
