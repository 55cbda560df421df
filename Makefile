# The two commands a newcomer needs: `make up` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

LISTEN ?= 127.0.0.1:3000
# Extra Spin variables, the Spin way: VARIABLES="--variable log_level=debug".
# SPIN_VARIABLE_<NAME> environment variables work too.
VARIABLES ?=
COMPONENTS := orders-create orders-get healthz openapi images-resize docs
TEST_GUESTS := runner-test-guest
WASM := --target wasm32-wasip2
RUNNER := target/release/runner
# Every native build selects the same packages and features, so Cargo resolves
# one feature set and compiles wasmtime once for the runner, the tests and the
# tools (a narrower `-p runner` would unify differently and rebuild it all).
NATIVE := --release -p kit -p runner -p component-tests -p imaging-bench --features kit/imaging
SPIN := $(shell command -v spin 2>/dev/null)
# The HTTP-level component suite (tests/suite/), run again on real Spin.
COMPONENT_TESTS := --test suite

# The instance settings `make up` serves with, on either engine; the bench
# and the cluster use the same (exported). Spin 4.1 lets one instance of a
# WASI 0.3 component serve 16 requests at once by default; under load the
# host then sometimes sends an answer's head before its body (the body
# waits for the instance's other requests to give way), and since Spin sets
# no TCP_NODELAY the body waits for the client's delayed ACK: about 2% of
# answers took 40 ms more (p99 45 ms at c=32). One request per instance at a
# time (still up to 128 per instance in turn) gives p99 10-16 ms at the same
# throughput (real Spin, `make bench BENCH_ENGINE=spin`, README: Performance).
UP_FLAGS ?= --max-instance-concurrent-reuse-count 1
export UP_FLAGS

# What Spin's pooling allocator keeps resident of a freed instance's memory
# and tables (Spin's defaults: 2 MiB and 512 KiB, read from these variables;
# the runner reads them too). With one request per instance at a time, each
# scenario of the bench leaves dozens of freed slots, each holding its
# component's whole small heap: 0 returns them to the kernel. Peak RSS of
# `spin up` over `make bench` 493-502 -> 322-333 MiB, no route slower
# beyond the run-to-run spread (four runs against three, bench/README.md).
SPIN_WASMTIME_LINEAR_MEMORY_KEEP_RESIDENT ?= 0
SPIN_WASMTIME_TABLE_KEEP_RESIDENT ?= 0
export SPIN_WASMTIME_LINEAR_MEMORY_KEEP_RESIDENT SPIN_WASMTIME_TABLE_KEEP_RESIDENT

# The development-only token secret `make up` creates when none is given.
DEV_SECRET := .spin/jwt_secret
# Exported to the runner, spin and the token tool: SPIN_VARIABLE_JWT_SECRET wins.
WITH_SECRET = SPIN_VARIABLE_JWT_SECRET="$${SPIN_VARIABLE_JWT_SECRET:-$$(cat $(DEV_SECRET) 2>/dev/null)}"
TTL ?= 3600

.PHONY: help test-quick test-otel prereqs build components components-otel up-otel docs-assets runner test test-spin test-postgres test-browser test-contract check-deploy cluster bench bench-postgres bench-tools up check-config dev-secret token deny fmt lint clean size

## build: every route component (release, wasm32-wasip2) and the local runner
build: components runner

## prereqs: the wasm target and the C toolchain, installed when missing
prereqs:
	@tools/prereqs.sh

components: prereqs docs-assets
	cargo build --profile component $(WASM) $(addprefix -p ,$(COMPONENTS))

## components-otel: the components with their own spans (feature kit/otel,
## Spin's wasi:otel), and target/otel/spin.toml serving them; they start only
## under `spin up --experimental-wasi-otel` (`make up-otel`)
components-otel: prereqs docs-assets
	cargo build --profile component-otel $(WASM) --features kit/otel $(addprefix -p ,$(COMPONENTS))
	@mkdir -p target/otel
	sed 's#^source = "target/wasm32-wasip2/component/#source = "../wasm32-wasip2/component-otel/#' spin.toml > target/otel/spin.toml
	@test "$$(grep -c '^source = "../wasm32-wasip2/component-otel/' target/otel/spin.toml)" = "$$(grep -c '^source = ' spin.toml)" \
		|| { echo "target/otel/spin.toml: a component source was not rewritten" >&2; exit 1; }

runner:
	cargo build $(NATIVE)

## docs-assets: Swagger UI for the docs component, from npm (package-lock.json)
docs-assets: handlers/docs/web/node_modules/.package-lock.json

handlers/docs/web/node_modules/.package-lock.json: handlers/docs/web/package-lock.json
	npm ci --prefix handlers/docs/web --ignore-scripts --no-audit --no-fund

## help: this list
help:
	@awk '/^## [a-z-]+:/ { sub(/^## /, ""); printf "\n  make %s\n", $$0; next } /^## / { sub(/^## /, "    "); print }' $(MAKEFILE_LIST)

## test-quick: the quick loop: kit's native tests (the contract, orders on
## SQLite, imaging, route consistency) and the runner's unit tests; seconds
## once built, no components, no engines
test-quick:
	cargo test $(NATIVE) --lib --test orders_sqlite --test image_budget --test route_consistency

## test: native unit tests, the runner's own tests, and the component suite
## over HTTP on the runner and on real `spin up` (when `spin` is on PATH),
## first on SQLite, then on a throwaway PostgreSQL server; then the docs page
## in Chromium, schemathesis, the deploy/ checks and the 3-replica cluster
test: components
	@tools/prereqs.sh postgres
	@rm -f target/skipped-suites.txt
	cargo build --profile component $(WASM) $(addprefix -p ,$(TEST_GUESTS))
	cargo test $(NATIVE)
	$(MAKE) --no-print-directory test-spin
	$(MAKE) --no-print-directory test-postgres
	$(MAKE) --no-print-directory test-browser
	$(MAKE) --no-print-directory test-otel
	$(MAKE) --no-print-directory test-contract
	$(MAKE) --no-print-directory check-deploy
	$(MAKE) --no-print-directory cluster
	@if [ -s target/skipped-suites.txt ]; then \
	  echo "make test: passed, but $$(wc -l < target/skipped-suites.txt) suite(s) did not run:"; \
	  sed 's/^/  /' target/skipped-suites.txt; fi

## test-spin: the component suite on real `spin up` (SQLite), and the check
## that the runner answers every request of a corpus as Spin does
test-spin: components
ifneq ($(SPIN),)
	@echo "Spin pass: $$(spin --version)"
	TEST_ENGINE=spin cargo test $(NATIVE) --no-fail-fast $(COMPONENT_TESTS) -- --include-ignored --skip outage_gives_503
else
	@tools/skipped.sh "the Spin pass of the component suite (no spin on PATH)"
endif

# The same tests with a server: the component suite and the runner's
# PostgreSQL tests switch to it (the rest just runs again, without
# rebuilding), then the component suite on real Spin.
# The outage test stops the shared server, so it runs alone, after the rest
# (run beside them it turned another test's request into a 503).
OUTAGE := postgres_outage::outage_gives_503_and_service_recovers
test-postgres: components
ifneq ($(SPIN),)
	tests/postgres.sh sh -c 'cargo test $(NATIVE) --no-fail-fast -- --include-ignored --skip $(OUTAGE) && \
	  cargo test $(NATIVE) $(COMPONENT_TESTS) -- --include-ignored --exact $(OUTAGE) && \
	  TEST_ENGINE=spin cargo test $(NATIVE) --no-fail-fast $(COMPONENT_TESTS) -- --include-ignored --skip $(OUTAGE) && \
	  TEST_ENGINE=spin cargo test $(NATIVE) $(COMPONENT_TESTS) -- --include-ignored --exact $(OUTAGE)'
else
	tests/postgres.sh sh -c 'cargo test $(NATIVE) --no-fail-fast -- --include-ignored --skip runner_and_spin_answer_alike --skip $(OUTAGE) && \
	  cargo test $(NATIVE) $(COMPONENT_TESTS) -- --include-ignored --exact $(OUTAGE)'
	@tools/skipped.sh "the Spin pass of the component suite on PostgreSQL (no spin on PATH)"
endif

## test-browser: the API reference page in headless Chromium (Debian's), on
## each engine: no console errors, every route shown; keeps docs/api-reference.png
test-browser: components runner
ifneq ($(wildcard /usr/bin/chromium),)
	npm ci --prefix tests/browser --ignore-scripts --no-audit --no-fund
	tools/serve.sh runner sh -c 'node tests/browser/docs.mjs "$$BASE" docs/api-reference.png'
ifneq ($(SPIN),)
	tools/serve.sh spin sh -c 'node tests/browser/docs.mjs "$$BASE" target/api-reference-spin.png'
else
	@tools/skipped.sh "the API reference page on Spin (no spin on PATH)"
endif
else
	@tools/skipped.sh "the API reference page in Chromium (no /usr/bin/chromium: tools/prereqs.sh browser)"
endif

## test-otel: one trace per request at a real OTLP/HTTP receiver on loopback,
## from real `spin up`, of the default build and of the otel build: the sent
## traceparent on Spin's spans, the guest's spans under them, the same ids
## on the request's log lines, no secret or body value in any attribute
test-otel: components components-otel target/otel-venv/ready
ifneq ($(SPIN),)
	UP_FLAGS="$(UP_FLAGS)" target/otel-venv/bin/python tests/otel/check.py
else
	@tools/skipped.sh "the trace test (no spin on PATH)"
endif
	@tools/skipped.sh "the trace test on the runner (it exports no telemetry: runner/README.md)"

target/otel-venv/ready: tests/otel/requirements.txt
	python3 -m venv target/otel-venv
	target/otel-venv/bin/pip install --quiet --disable-pip-version-check -r tests/otel/requirements.txt
	touch $@

## test-contract: schemathesis against the served /openapi.json (every check,
## every phase, two users), on the runner and on real Spin
test-contract: components runner
	tools/schemathesis/run.sh runner
ifneq ($(SPIN),)
	tools/schemathesis/run.sh spin
else
	@tools/skipped.sh "schemathesis on Spin (no spin on PATH)"
endif

## check-deploy: the deploy/ files: yamllint, the SpinApp CRD (when given),
## the scale-out rule, variables, and the commands the docs show
check-deploy: target/deploy-venv/.installed
	target/deploy-venv/bin/python deploy/check.py
	target/deploy-venv/bin/python deploy/check.py --self-test

target/deploy-venv/.installed: deploy/requirements.txt
	rm -rf target/deploy-venv
	python3 -m venv target/deploy-venv
	target/deploy-venv/bin/pip install --quiet --disable-pip-version-check -r deploy/requirements.txt
	touch $@

# The Node.js service the app replaces: when it is here (and node and the
# PostgreSQL server binaries are), the bench runs it beside the app in the
# same run, on a throwaway PostgreSQL server (fsync on), as it always runs.
BENCH_NODE_DIR ?= ../shared/node-baseline
NODE_BASELINE := $(and $(wildcard $(BENCH_NODE_DIR)/server.js),$(wildcard /usr/lib/postgresql/*/bin/initdb),$(shell command -v node 2>/dev/null))

## bench: every route under load on loopback (wrk), beside a no-op component and
## the Node.js service (same run, same scenarios, when BENCH_NODE_DIR holds it);
## table on stdout, bench/results/latest.json. SMOKE=1: ~1 s per scenario.
## BENCH_ENGINE=spin serves with `spin up` (see bench/bench.py).
bench: build bench-tools $(if $(SPIN),components-otel)
ifneq ($(NODE_BASELINE),)
	TEST_PG_FSYNC=on tests/postgres.sh sh -c 'SMOKE="$(SMOKE)" BENCH_NODE_DATABASE_URL="$$TEST_DATABASE_URL" python3 bench/bench.py'
else
	SMOKE="$(SMOKE)" python3 bench/bench.py
endif

## bench-postgres: the same with the orders in a throwaway PostgreSQL server
## (durable commits: fsync on), started and removed by tests/postgres.sh
bench-postgres: build bench-tools
	TEST_PG_FSYNC=on tests/postgres.sh sh -c 'SMOKE="$(SMOKE)" BENCH_DATABASE_URL="$$TEST_DATABASE_URL" python3 bench/bench.py'

## size: where each component's code goes, by crate (a build that keeps
## symbol names, in target/size; tools/wasm_size.py reads its name section)
size: prereqs docs-assets
	CARGO_TARGET_DIR=target/size cargo build --profile component --config 'profile.component.strip=false' --target wasm32-wasip2 $(addprefix -p ,$(COMPONENTS))
	@for c in $(subst -,_,$(COMPONENTS)); do python3 tools/wasm_size.py target/size/wasm32-wasip2/component/$$c.wasm 12; echo; done

## cluster: REPLICAS (3) `spin up` replicas behind HAProxy on one PostgreSQL:
## idempotency across replicas, SIGKILL, drained stop, rolling restart under
## write load; CLUSTER_BENCH=1 adds throughput at 1..REPLICAS replicas
cluster: components
	@tools/prereqs.sh postgres haproxy
	REPLICAS="$(REPLICAS)" CLUSTER_BENCH="$(CLUSTER_BENCH)" cluster/run.sh

bench-tools:
	cargo build --profile component $(WASM) -p bench-noop

## check-config: refuse a bad config before serving, naming every bad variable
check-config: runner dev-secret
	$(WITH_SECRET) $(RUNNER) check --from spin.toml --app-config $(VARIABLES)

## dev-secret: a development-only jwt_secret in .spin/ when none is given
dev-secret:
	@if [ -z "$${SPIN_VARIABLE_JWT_SECRET:-}" ] && [ ! -s $(DEV_SECRET) ]; then \
	  mkdir -p .spin; (umask 077; head -c 48 /dev/urandom | base64 | tr -d "\n" > $(DEV_SECRET)); \
	  echo "Created a development-only jwt_secret in $(DEV_SECRET) (never use it in production)"; fi

## up: build, check the config, serve on $(LISTEN) (spin when installed); the
## app migrates its database itself on first use
up: build check-config
ifneq ($(SPIN),)
	$(WITH_SECRET) spin up --from spin.toml --listen $(LISTEN) $(UP_FLAGS) $(VARIABLES)
else
	$(WITH_SECRET) $(RUNNER) up --from spin.toml --listen $(LISTEN) $(UP_FLAGS) $(VARIABLES)
endif

## up-otel: `make up` with the components' own spans, on real Spin only
## (--experimental-wasi-otel); export OTEL_EXPORTER_OTLP_ENDPOINT first
up-otel: components-otel check-config
ifneq ($(SPIN),)
	$(WITH_SECRET) spin up --from target/otel/spin.toml --experimental-wasi-otel --listen $(LISTEN) $(UP_FLAGS) $(VARIABLES)
else
	@echo "make up-otel: needs spin on PATH (the runner does not link wasi:otel: runner/README.md)" >&2; exit 2
endif

## token: a bearer token for SUB=<uuid> (default: the README's demo user),
## signed with the local secret. (Not USER: the shell sets that to a login.)
SUB ?= 0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e
token:
	@$(WITH_SECRET) python3 tools/token.py --user "$(SUB)" --ttl $(TTL)

## deny: every dependency under a permissive licence (needs cargo-deny:
## cargo install cargo-deny --locked)
deny:
	cargo deny check licenses

fmt:
	cargo fmt --all

## lint: rustfmt, and clippy with warnings denied on every crate, native and
## wasm. CI sets RUSTC_WORKSPACE_WRAPPER=tools/clippy-rustc: then clippy runs
## inside the real release builds, whose artifacts `make test` reuses.
lint: docs-assets
	cargo fmt --all -- --check
ifeq ($(notdir $(RUSTC_WORKSPACE_WRAPPER)),clippy-rustc)
	@echo "lint: clippy runs inside the real builds (RUSTC_WORKSPACE_WRAPPER=$(RUSTC_WORKSPACE_WRAPPER))"
	cargo build $(NATIVE) --all-targets
	cargo build --profile component $(WASM) $(addprefix -p ,$(COMPONENTS))
	cargo build --profile component $(WASM) $(addprefix -p ,$(TEST_GUESTS))
else
	cargo clippy $(NATIVE) --all-targets -- -D warnings
	cargo clippy --profile component $(WASM) $(addprefix -p ,$(COMPONENTS) $(TEST_GUESTS)) -- -D warnings
endif

clean:
	cargo clean
	rm -rf .spin
