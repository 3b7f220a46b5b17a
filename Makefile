# Set-up and checks. `make demo` and `make test` work on a fresh Debian 12 machine with Node.js 20.
NODE_BIN := node_modules/.bin
CKPT := node dist/cli/ckpt.js
DEMO := demo-layout

.PHONY: deps build lint typecheck schemas demo test-deps test test-unit test-e2e e2e-root bench clean

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

deps: node_modules/.package-lock.json

build: deps
	$(NODE_BIN)/tsc -p tsconfig.json
	node scripts/bundle.mjs
	chmod +x dist/cli/ckpt.js

lint: deps
	$(NODE_BIN)/eslint .

typecheck: deps
	$(NODE_BIN)/tsc -p tsconfig.test.json

# Regenerates schemas/ from the zod schemas.
schemas: build
	node scripts/schemas.mjs

demo: build
	rm -rf $(DEMO)
	$(CKPT) build examples/counter-checkpoint.tar.zst oci:$(DEMO):counter
	$(CKPT) inspect oci:$(DEMO):counter --tree

test-deps:
	bash scripts/install-test-deps.sh

# Everything but the end-to-end restores: unit and integration tests against a real registry,
# skopeo, umoci, buildah and podman (installed by test-deps).
test-unit: build lint typecheck
	$(NODE_BIN)/vitest run

# Real CRIU and Podman in a cached Debian 13 root (test/e2e/README.md); needs root.
e2e-root:
	test/e2e/root.sh

test-e2e: build
	$(NODE_BIN)/vitest run --config vitest.e2e.config.ts

# Every test, after installing what they need; CI runs this.
test: test-deps
	$(MAKE) test-unit
	$(MAKE) test-e2e

# Speed and memory against the buildah recipe, oras, podman, zstd and curl (bench/README.md).
# 1 GiB x 3 runs plus a 4 GiB peak-RSS pass: 9-12 min on 2 cores; needs root and the e2e root.
BENCH_RSS_SIZES ?= 4G
bench: build test-deps
	bash test/e2e/root.sh >/dev/null
	$(NODE_BIN)/tsc -p bench/tsconfig.json
	BENCH_RSS_SIZES=$(BENCH_RSS_SIZES) node node_modules/.cache/ckpt-bench/run.js

clean:
	rm -rf dist $(DEMO) coverage
