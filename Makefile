# berth build and test entry points.
#
#   make build      build bin/berth
#   make test       install test dependencies, start Docker Engine, run all tests
#   make test-unit  fast tests only (end-to-end tests skip under -short)
#   make bench      run the benchmarks (./bench)
#   make image      build the container image (IMAGE=berth:$(VERSION))

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

# The container image. The Dockerfile has no Go build stage and expects the
# binary prebuilt here: no base image (golang, distroless...) can be pulled
# where berth is built, and a FROM scratch image needs nothing but a static
# binary (CGO_ENABLED=0), the host's CA certificates (S3 over TLS) and an
# empty /data. This target prepares those in $(IMAGE_CONTEXT)/bin/image/ and
# runs docker build with $(IMAGE_CONTEXT) as the context (.dockerignore sends
# only bin/image/). Override VERSION, IMAGE, IMAGE_CONTEXT or DOCKER:
#   make image VERSION=1.2.0 IMAGE=registry.example.com/berth/berth:1.2.0
VERSION ?= $(shell git describe --tags --always 2>/dev/null || echo dev)
IMAGE ?= berth:$(VERSION)
IMAGE_CONTEXT ?= .
DOCKER ?= docker
CA_CERTS ?= /etc/ssl/certs/ca-certificates.crt

.PHONY: image
image:
	@test -n "$(IMAGE_CONTEXT)" || { echo "IMAGE_CONTEXT is empty" >&2; exit 1; }
	mkdir -p "$(IMAGE_CONTEXT)/bin/image/data"
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" \
		-o "$(IMAGE_CONTEXT)/bin/image/berth" ./cmd/berth
	cp "$(CA_CERTS)" "$(IMAGE_CONTEXT)/bin/image/ca-certificates.crt"
	$(DOCKER) build -f Dockerfile -t "$(IMAGE)" "$(IMAGE_CONTEXT)"
