/**
 * The URL of the compiled worker module `path` (relative to `src/`, without extension). Node runs
 * only JavaScript in a worker thread, so where ckpt itself runs from TypeScript sources (the tests
 * run `src/` through vitest), the worker comes from the build in `dist/`: `make build` first.
 * The CLI bundle (dist/cli/ckpt.js) calls this from one directory below `dist/` too, so the same
 * relative path finds the workers tsc wrote.
 */
export function workerUrl(path: string): URL {
  const here = new URL(import.meta.url);
  const url = new URL(`../${path}.js`, here);
  if (!here.pathname.endsWith('.ts')) return url;
  const at = url.pathname.lastIndexOf('/src/');
  return new URL(`file://${url.pathname.slice(0, at)}/dist/${url.pathname.slice(at + '/src/'.length)}`);
}
