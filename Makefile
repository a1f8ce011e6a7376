# logs-distributor: every task a developer or CI runs.
# `make test` is what CI runs (.ci/run): format check, clippy, every test.

CARGO ?= cargo
LISTEN ?= 0.0.0.0:8080

.PHONY: help build run test fmt lint clean bench

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

build: ## Release build of the binary (target/release/logs-distributor)
	$(CARGO) build --release --locked

run: ## Build and run the service on $(LISTEN) with the built-in simulated analyzers
	$(CARGO) run --release --locked -- --listen $(LISTEN)

test: ## Format check, clippy -D warnings, every test (starts a real kube-apiserver, headless Chromium)
	scripts/test.sh

.PHONY: test-browser

test-browser: ## The status page in headless Chromium (installs chromium and playwright-core once)
	scripts/browser-test.sh

fmt: ## Format the code (every crate of the workspace, and the fuzz targets)
	$(CARGO) fmt --all
	rustfmt --edition 2021 fuzz/fuzz_targets/*.rs fuzz/examples/*.rs

lint: ## Format check and clippy with warnings as errors
	@scripts/lint.sh

.PHONY: fuzz

fuzz: ## Fuzz the ingest parser, NDJSON splitter, records splitter, WAL decoder and HTTP/1.1 answer reader, 60 s each
	scripts/fuzz.sh

bench: ## Throughput and latency on loopback (release build); prints a table
	scripts/bench.py

clean: ## Remove build output and the local data directory
	$(CARGO) clean
	rm -rf data

.PHONY: envtest-up envtest-down

envtest-up: ## Start a real kube-apiserver + etcd on loopback (builds once into ~/.cache); prints the kubeconfig
	@scripts/envtest.sh up

envtest-down: ## Stop the envtest control plane and remove its run directory
	@scripts/envtest.sh down

.PHONY: manifests chart-test

manifests: ## Regenerate manifests/ from the Helm chart (and refresh the chart's copies of crds/ and deploy/ files)
	@scripts/chart-test.sh generate

chart-test: ## Helm chart + manifests: lint, schema, drift, server-side dry runs, a live 40/30/20/10 split (builds helm once)
	scripts/chart-test.sh
