# berth build and test entry points.
#
#   make build      build bin/berth
#   make test       install test dependencies, start Docker Engine, run all tests
#   make test-unit  fast tests only (end-to-end tests skip under -short)
#   make bench      run the benchmarks (./bench)

BERTH_TOOLS_DIR ?= $(HOME)/.cache/berth-tools
export BERTH_TOOLS_DIR

GO ?= go

.PHONY: build test test-unit bench

build:
	$(GO) build -o bin/berth ./cmd/berth

test:
	bash scripts/test-deps.sh
	bash scripts/dockerd.sh
	$(GO) test -count=1 -timeout 20m ./cmd/... ./internal/...
	PATH="$(BERTH_TOOLS_DIR)/bin:$$PATH" $(GO) test -count=1 -v -timeout 40m ./test/...

test-unit:
	$(GO) test -short ./...

bench:
	$(GO) run ./bench
