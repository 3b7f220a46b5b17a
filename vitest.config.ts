import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/e2e/**', 'node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // The CLI caches builds; tests keep theirs out of the user's home.
    env: { CKPT_CACHE_DIR: new URL('node_modules/.cache/ckpt-test', import.meta.url).pathname },
  },
});
