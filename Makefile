# The two commands a newcomer needs: `make up` and `make test`.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c

LISTEN ?= 127.0.0.1:3000
# Extra Spin variables, the Spin way: VARIABLES="--variable log_level=debug".
# SPIN_VARIABLE_<NAME> environment variables work too.
VARIABLES ?=
COMPONENTS := orders-create orders-get healthz openapi
TEST_GUESTS := runner-test-guest
WASM := --target wasm32-wasip2
RUNNER := target/release/runner
SQLITE_MIGRATIONS := $(foreach f,$(sort $(wildcard migrations/sqlite/*.sql)),--sqlite @$(f))
SPIN := $(shell command -v spin 2>/dev/null)

.PHONY: build components runner test up check-config fmt lint clean

## build: every route component (release, wasm32-wasip2) and the local runner
build: components runner

components:
	cargo build --profile component $(WASM) $(addprefix -p ,$(COMPONENTS))

runner:
	cargo build --release -p runner

## test: native unit tests, then every component through the runner
test: components
	cargo build --profile component $(WASM) $(addprefix -p ,$(TEST_GUESTS))
	cargo test --release -p kit -p runner -p component-tests

## check-config: refuse a bad config before serving, naming every bad variable
check-config: runner
	$(RUNNER) check --from spin.toml --config-schema schemas/config.json $(VARIABLES)

## up: build, check the config, serve on $(LISTEN) (spin when installed)
up: build check-config
ifneq ($(SPIN),)
	spin up --from spin.toml --listen $(LISTEN) $(SQLITE_MIGRATIONS) $(VARIABLES)
else
	$(RUNNER) up --from spin.toml --listen $(LISTEN) $(SQLITE_MIGRATIONS) $(VARIABLES)
endif

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --release -p kit -p runner -p component-tests --all-targets -- -D warnings
	cargo clippy --profile component $(WASM) $(addprefix -p ,$(COMPONENTS) $(TEST_GUESTS)) -- -D warnings

clean:
	cargo clean
	rm -rf .spin
