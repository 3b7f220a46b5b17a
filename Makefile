# Set-up and checks. `make demo` and `make test` work on a fresh Debian 12 machine with Node.js 20.
NODE_BIN := node_modules/.bin
CKPT := node dist/cli/main.js
DEMO := demo-layout

.PHONY: deps build lint typecheck schemas check-schemas demo test test-unit test-e2e bench clean

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

deps: node_modules/.package-lock.json

build: deps
	$(NODE_BIN)/tsc -p tsconfig.json
	chmod +x dist/cli/main.js

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

# Everything but the end-to-end restores: unit, integration (real registry, skopeo, umoci).
test-unit: build test-deps lint typecheck
	$(NODE_BIN)/vitest run

test: test-unit

clean:
	rm -rf dist $(DEMO) coverage
