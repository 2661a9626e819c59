# Herald: run `make help` for the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
TOOL     := $(GO) tool -modfile=tools/go.mod
BUF      := $(TOOL) buf
GENERATED := gen internal/apidoc/herald.swagger.json

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/herald
	$(GO) build -o bin/herald ./cmd/herald

.PHONY: run
run: ## Run Herald with the demo stream on the embedded broker (http://localhost:8080)
	$(GO) run ./cmd/herald serve --demo

.PHONY: test
test: ## Run all tests with the race detector (e2e/ drives Chromium and Node: see docs/sse-checklist.md)
	@bash e2e/check-clients.sh
	$(GO) test -race -shuffle=on -timeout 15m ./...

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 30s)
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $${FUZZTIME:-30s} $$pkg; \
	  done; \
	done

.PHONY: bench
bench: ## Run the Go micro-benchmarks (with allocations), then the load harness against its floor (flags: BENCHFLAGS=...)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	$(GO) build -o bin/herald-bench ./cmd/herald-bench
	bin/herald-bench $(BENCHFLAGS)

.PHONY: lint
lint: ## Lint protos (buf lint, buf format) and Go (gofmt, go vet)
	$(BUF) lint
	$(BUF) format --diff --exit-code
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: generate
generate: ## Regenerate gen/ and the OpenAPI description from proto/
	rm -rf $(GENERATED)
	$(BUF) generate

.PHONY: check-generate
check-generate: generate ## Fail if generated code is stale
	@if [ -n "$$(git status --porcelain -- $(GENERATED))" ]; then \
	  echo "generated files are stale; run make generate and commit:"; \
	  git status --porcelain -- $(GENERATED); exit 1; fi
