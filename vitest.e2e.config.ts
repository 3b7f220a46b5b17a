import { BaseSequencer, type TestSpecification } from 'vitest/node';
import { defineConfig } from 'vitest/config';

// The harness's own round trips (no ckpt) run first: when they fail, the ckpt round trips cannot
// say anything about ckpt.
class HarnessFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (f: TestSpecification) => (f.moduleId.endsWith('/test/e2e/roundtrip.test.ts') ? 0 : 1);
    return [...files].sort((a, b) => rank(a) - rank(b) || a.moduleId.localeCompare(b.moduleId));
  }
}

// End-to-end suite (test/e2e/): real CRIU and Podman in a Debian 13 root, a real registry.
// Runs as root, one file at a time in one fork (the root's Podman storage and its session lock
// are shared), with timeouts long enough for a first run that builds the root.
export default defineConfig({
  test: {
    include: ['test/e2e/**/*.test.ts'],
    globalSetup: ['test/e2e/global-setup.ts'],
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    sequence: { sequencer: HarnessFirst, concurrent: false, shuffle: false },
    testTimeout: 5 * 60_000,
    hookTimeout: 10 * 60_000,
    teardownTimeout: 2 * 60_000,
    retry: 0,
  },
});
