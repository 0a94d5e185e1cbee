# chainbroker developer commands. Everything runs through the Go toolchain:
# buf and the protoc plugins are `go tool` entries pinned in go.mod.

GO        ?= go
TESTFLAGS ?=

.PHONY: all run build test test-ts generate-ts test-py generate-py fuzz interop soak bench-go lint generate check-generated fmt bench clean

all: build

## run: start the sandbox (domain A :8181, domain B :8282, broker REST :8080 / gRPC :9090)
run:
	$(GO) run ./cmd/chainbroker sandbox $(ARGS)

## build: build the binary into bin/
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/chainbroker ./cmd/chainbroker

## test: lint, check generated code is fresh, then every test with the race detector
## (the Redis suites start their own redis-server; it must be on PATH)
test: lint check-generated
	$(GO) test -race -count=1 $(TESTFLAGS) ./...

## lint: gofmt, go vet, staticcheck, buf lint
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/') 2>/dev/null); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) tool buf lint

## generate: regenerate gen/ from proto/ (then `make generate-ts` for clients/ts/src/gen and
## `make generate-py` for clients/python/gen, which CI also checks)
generate:
	$(GO) tool buf generate

## check-generated: fail when gen/ differs from what proto/ generates
check-generated: generate
	@if [ -n "$$(git status --porcelain -- gen/)" ]; then \
	  echo "gen/ is stale: run 'make generate' and commit the result"; git status --porcelain -- gen/; exit 1; fi

## test-ts: TypeScript client: npm ci, check clients/ts/src/gen is fresh, tsc, end-to-end test against the sandbox
test-ts:
	bash clients/ts/test.sh

## generate-ts: regenerate clients/ts/src/gen (needs node and npm)
generate-ts:
	cd clients/ts && npm ci --no-audit --no-fund && npm run generate

## test-py: Python client: check clients/python/gen is fresh, then its unittests against the sandbox
## (needs Debian's protobuf-compiler, protobuf-compiler-grpc, python3-grpcio, python3-protobuf, openssl)
test-py:
	bash clients/python/test.sh

## generate-py: regenerate clients/python/gen (needs protoc and grpc_python_plugin:
## apt-get install protobuf-compiler protobuf-compiler-grpc)
generate-py:
	$(GO) tool buf generate --template clients/python/buf.gen.yaml

## interop: chains through Ory Hydra v2.3.0 as domain B and MinIO's STS
## (docs/interop.md). Hydra and MinIO are built into interop/.bin, again only when
## their go.mod or go.sum change (in a fresh clone the Go build cache makes that a
## few seconds).
## -mod=mod lets interop/go.mod follow the main module's requirements by itself.
interop: interop/.bin/hydra interop/.bin/minio
	cd interop && $(GO) vet -mod=mod ./... && \
	  HYDRA_BIN=$(CURDIR)/interop/.bin/hydra MINIO_BIN=$(CURDIR)/interop/.bin/minio \
	  $(GO) test -mod=mod -count=1 $(TESTFLAGS) ./...

interop/.bin/hydra: interop/hydra/go.mod interop/hydra/go.sum
	cd interop/hydra && $(GO) build -trimpath -tags sqlite \
	  -ldflags "-X github.com/ory/hydra/v2/driver/config.Version=$$($(GO) list -m -f '{{.Version}}' github.com/ory/hydra/v2)" \
	  -o ../.bin/hydra github.com/ory/hydra/v2

# MinIO (an AWS-STS-compatible server), pinned in interop/minio/go.mod; cached as
# Hydra is: 5 minutes or more cold on 2 cores, seconds with a warm Go build cache.
interop/.bin/minio: interop/minio/go.mod interop/minio/go.sum
	cd interop/minio && $(GO) build -trimpath -o ../.bin/minio github.com/minio/minio

## fuzz: every fuzz target for FUZZTIME each (default 15s)
fuzz:
	bash .ci/fuzz

## bench: the end-to-end benchmark (cmd/chainbench): broker vs direct baseline at
## concurrency 1..256, separate processes, Redis; rewrites docs/performance.md
bench:
	$(GO) run ./cmd/chainbench $(ARGS)

## bench-go: Go benchmarks of the hot pieces
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## soak: steady load at concurrency 64 for SOAK_DURATION (default 2m) through
## slow/down/back phases of domain A and a Redis restart (docs/reliability.md)
soak:
	SOAK_DURATION=$${SOAK_DURATION:-2m} SOAK_CONCURRENCY=$${SOAK_CONCURRENCY:-64} \
	  $(GO) test -tags soak -run TestSoakLong -v -count=1 -timeout 30m ./internal/soak/

clean:
	rm -rf bin
