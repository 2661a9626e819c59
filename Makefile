# Herald: run `make help` for the targets.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

GO       ?= go
TOOL     := $(GO) tool -modfile=tools/go.mod
BUF      := $(TOOL) buf
GENERATED := gen internal/apidoc/herald.swagger.json
OPENAPI_LINT := tools/openapi

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/herald
	$(GO) build -o bin/herald ./cmd/herald

.PHONY: install
install: ## Install herald with go install: into $(go env GOBIN), or else $(go env GOPATH)/bin
	$(GO) install ./cmd/herald
	@dir="$$($(GO) env GOBIN)"; gopath="$$($(GO) env GOPATH)"; [ -n "$$dir" ] || dir="$${gopath%%:*}/bin"; \
	  echo "installed $$dir/herald"; \
	  case ":$$PATH:" in *":$$dir:"*) ;; *) \
	    echo "$$dir is not on your PATH: add it (e.g. in ~/.profile) with"; \
	    echo "  export PATH=\"$$dir:\$$PATH\"";; esac

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

.PHONY: soak
soak: ## Soak a herald for SOAK_DURATION (default 30m; e.g. 2m, 4h): resources sampled into SOAK_OUT (default soak-out), fails on growth
	$(GO) build -o bin/herald ./cmd/herald
	$(GO) build -o bin/herald-soak ./cmd/herald-soak
	bin/herald-soak --herald bin/herald --duration $(SOAK_DURATION) --out $(SOAK_OUT) $(SOAKFLAGS)

SOAK_DURATION ?= 30m
SOAK_OUT      ?= soak-out

.PHONY: lint
lint: $(OPENAPI_LINT)/node_modules/.package-lock.json ## Lint protos (buf lint, buf format), Go (gofmt, go vet) and the served OpenAPI document (Redocly)
	$(BUF) lint
	$(BUF) format --diff --exit-code
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	  echo "redocly lint: the document served at GET /v1/openapi.json"; \
	  $(GO) run ./internal/apidoc/cmd/print-openapi > "$$dir/openapi.json"; \
	  REDOCLY_SUPPRESS_UPDATE_NOTICE=true $(OPENAPI_LINT)/node_modules/.bin/redocly lint \
	    --config $(OPENAPI_LINT)/redocly.yaml "$$dir/openapi.json"

# The OpenAPI linter, pinned by its lockfile; installed again when that changes.
$(OPENAPI_LINT)/node_modules/.package-lock.json: $(OPENAPI_LINT)/package.json $(OPENAPI_LINT)/package-lock.json
	npm ci --prefix $(OPENAPI_LINT) --ignore-scripts --no-audit --no-fund
	@touch $@

.PHONY: generate
generate: ## Regenerate gen/ and the OpenAPI description from proto/
	rm -rf $(GENERATED)
	$(BUF) generate

.PHONY: check-generate
check-generate: generate ## Fail if generated code is stale
	@if [ -n "$$(git status --porcelain -- $(GENERATED))" ]; then \
	  echo "generated files are stale; run make generate and commit:"; \
	  git status --porcelain -- $(GENERATED); exit 1; fi
