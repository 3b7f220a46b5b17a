import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { describe, expect, it, onTestFinished } from 'vitest';
import { build } from 'esbuild';
import { fixture, tempDir } from './helpers/tree.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

describe('the npm package', () => {
  it('ships the licence, the library, the CLI bundles, the workers, the schemas and the sources its maps name; not the modules tsc wrote for the CLI', async () => {
    // --ignore-scripts: prepack would rebuild dist/ under the other tests' feet.
    const { stdout } = await execa('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT });
    const [packed] = JSON.parse(stdout) as [{ files: { path: string }[] }];
    const files = packed.files.map((f) => f.path);
    for (const path of [
      'LICENSE',
      'README.md',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/cli/ckpt.js',
      'dist/cli/ckpt-main.js',
      'dist/image/page-worker.js',
      'dist/unpack/zstd-worker.js',
      'schemas/inspect.schema.json',
      'src/index.ts',
    ]) {
      expect(files, path).toContain(path);
    }
    expect(files.filter((f) => f.startsWith('dist/cli/') && !f.startsWith('dist/cli/ckpt'))).toEqual([]);
    expect(files.filter((f) => /^(test|bench|scripts)\//.test(f))).toEqual([]);
  });

  it('lets a project import its JSON Schemas and package.json through the package name', async () => {
    const app = await tempDir('ckpt-package-');
    await mkdir(join(app, 'node_modules'));
    await symlink(ROOT, join(app, 'node_modules', 'ckpt-image'));
    const script = `
      const schema = await import('ckpt-image/schemas/inspect.schema.json', { with: { type: 'json' } });
      const pkg = await import('ckpt-image/package.json', { with: { type: 'json' } });
      console.log(typeof schema.default, pkg.default.name);`;
    const { stdout } = await execa('node', ['--input-type=module', '-e', script], { cwd: app });
    expect(stdout.trim()).toBe('object ckpt-image');
  });

  it('bundled into an application, says its workers must stay files of their own, as a CkptError', async () => {
    // Under the checkout's node_modules, where the bundle still finds zstd-napi, a native addon no bundler takes in.
    await mkdir(join(ROOT, 'node_modules', '.cache'), { recursive: true });
    const app = await mkdtemp(join(ROOT, 'node_modules', '.cache', 'ckpt-bundled-'));
    onTestFinished(() => rm(app, { recursive: true, force: true }));
    const entry = join(app, 'entry.mjs');
    const script = `
      import { build } from ${JSON.stringify(join(ROOT, 'dist/index.js'))};
      await build(${JSON.stringify(fixture('podman-counter.tar'))}, ${JSON.stringify(`oci:${join(app, 'layout')}:v1`)}).catch((err) => console.log(err.constructor.name, err.code, err.message));`;
    await writeFile(entry, script);
    await build({ entryPoints: [entry], outfile: join(app, 'bundle.mjs'), bundle: true, platform: 'node', format: 'esm', external: ['zstd-napi'], logLevel: 'error', banner: { js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" } });
    const { stdout } = await execa('node', [join(app, 'bundle.mjs')], { cwd: ROOT });
    expect(stdout).toMatch(/^CkptError NOT_FOUND .*page-worker\.js: ckpt's worker module is missing: a bundler must leave ckpt-image external/);
  });
});
